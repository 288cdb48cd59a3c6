"""The finale of chapter 6: a network for the ``DigitPad`` whose every line the student wrote.

The layers come from the student's own notebooks through :mod:`course_lib.mine` (``Convolution``
and ``Pooling`` of chapter 4, ``Affine``, ``Relu`` and ``SoftmaxWithLoss`` of chapter 2,
``Dropout`` of chapter 3), each falling back to the reference with a notice. The weights come
from the network the student trained and saved, looked for in this order:

- ``<workspace>/ch05_deep_networks/deep_convnet_mine.npz``: a ``DeepConvNet()``, which chapter 5
  saves after its full-mode training;
- ``<workspace>/ch04_convolutional_networks/simple_convnet.npz``: a ``SimpleConvNet()``, which
  chapter 4 saves after its full-mode training.

(``net.save_params(<file>)`` next to the chapter's notebook; both models with their default sizes.)
When neither file is there (or it does not fit), the course's pretrained ``mnist-cnn`` weights
are put into the same architecture built from the student's layers, with a notice saying so.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SAVED_NETWORKS", "SavedNetwork", "my_layers", "my_network", "pretrained_with_layers"]


@dataclass(frozen=True)
class SavedNetwork:
    """A network a chapter saves into its workspace folder for the finale."""

    chapter: str
    file_name: str
    model: str  # a class of course_lib.models, built with its default sizes
    kinds: tuple[str, ...]  # the layer kinds built from the student's classes


_CONV_KINDS = ("Convolution", "Pooling", "Affine", "Relu", "SoftmaxWithLoss")

#: where the finale looks for the student's own trained network, best first
SAVED_NETWORKS: tuple[SavedNetwork, ...] = (
    SavedNetwork("ch05_deep_networks", "deep_convnet_mine.npz", "DeepConvNet", (*_CONV_KINDS, "Dropout")),
    SavedNetwork("ch04_convolutional_networks", "simple_convnet.npz", "SimpleConvNet", _CONV_KINDS),
)  # fmt: skip


def my_layers(kinds: tuple[str, ...] = _CONV_KINDS) -> dict[str, Any]:
    """``{kind: the student's class}`` through :func:`course_lib.mine.load` (notices included)."""
    from course_lib import mine

    return {kind: mine.load(kind) for kind in kinds}


def pretrained_with_layers(
    layers: Mapping[str, Callable[..., Any]], name: str = "mnist-cnn", *, dtype: Any = np.float32
) -> Any:
    """The pretrained network ``name`` rebuilt from other layer classes, with its weights.

    ``layers``: kind -> class (``Convolution``, ``Pooling``, ``Affine``, ``Relu``; kinds left
    out are course_lib's), each built with the book's arguments: ``Convolution(W, b, stride,
    pad)``, ``Pooling(pool_h, pool_w, stride)``, ``Affine(W, b)``, ``Relu()``. Returns a
    :class:`course_lib.models.Sequential`: ``predict(x (N, 1, 28, 28)) -> (N, 10)`` scores.
    """
    import course_lib.layers as course_layers
    from course_lib.models import Sequential
    from course_lib.models.injection import with_param_names
    from course_lib.pretrained import info, load

    make = {k: getattr(course_layers, k) for k in ("Convolution", "Pooling", "Affine", "Relu")}
    make.update(layers)
    weights = load(name, dtype=dtype).params
    built: OrderedDict[str, Any] = OrderedDict()
    k = 0
    for i, spec in enumerate(info(name)["architecture"], start=1):
        kind = spec["type"]
        if kind in ("Convolution", "Affine"):
            k += 1
            W, b = weights[f"W{k}"].copy(), weights[f"b{k}"].copy()
            if kind == "Convolution":
                layer = make[kind](W, b, int(spec.get("stride", 1)), int(spec.get("pad", 0)))
            else:
                layer = make[kind](W, b)
            layer = with_param_names(layer, ("W", "b"))
        elif kind == "Pooling":
            size = int(spec["size"])
            layer = make[kind](size, size, int(spec.get("stride", size)))
        else:
            layer = make[kind]()
        built[f"{kind}{i}"] = layer
    return Sequential(built)


def _notice(text: str) -> None:
    print(f"course_lib.widgets.my_network: {text}", file=sys.stderr, flush=True)


def my_network(workspace: Path | None = None) -> tuple[Any, str]:
    """The student's own trained network, built from their layers: ``(model, description)``.

    Looks for :data:`SAVED_NETWORKS` in the workspace (default: :func:`course_lib.mine.workspace`);
    without one, the pretrained ``mnist-cnn`` in a network of the student's layers, with a
    notice. The model's ``predict`` takes ``(N, 1, 28, 28)`` images.
    """
    from course_lib import mine
    from course_lib import models as course_models

    folder = workspace if workspace is not None else mine.workspace()
    looked = []
    for saved in SAVED_NETWORKS:
        path = None if folder is None else folder / saved.chapter / saved.file_name
        looked.append(str(path) if path else f"<workspace>/{saved.chapter}/{saved.file_name}")
        if path is None or not path.is_file():
            continue
        try:
            net = getattr(course_models, saved.model)(seed=0, layers=my_layers(saved.kinds))
            net.load_params(path)
        except Exception as exc:  # a file that does not fit this model: say so, try the next
            _notice(f"cannot use {path} ({type(exc).__name__}: {exc})")
            continue
        return net, f"your {saved.model} from {path}, built from your layers"
    _notice(
        "no network of yours found (" + ", ".join(looked) + "): using the course's pretrained "
        "mnist-cnn weights in a network built from your layers"
    )
    net = pretrained_with_layers(my_layers(("Convolution", "Pooling", "Affine", "Relu")))
    return net, "the course's pretrained mnist-cnn weights in a network built from your layers"
