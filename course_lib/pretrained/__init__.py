"""Pretrained networks shipped inside the package.

Each model is two files in this folder: ``<name>.npz`` (the weights, no
pickle) and ``<name>.json`` (architecture, training recipe and measured
metrics). Load one with::

    import course_lib.pretrained
    net = course_lib.pretrained.load("mnist-cnn")   # a course_lib Sequential
    net.predict(x)                                  # x: (N, 1, 28, 28) in [0, 1]

The networks were trained by ``scripts/train_pretrained.py`` in the course
repository; ``info(name)`` returns the recipe and the measured accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from course_lib._random import SeedLike, as_generator

__all__ = ["PretrainedError", "available", "build_network", "info", "load"]

_HERE = Path(__file__).parent

#: Version of the JSON description format understood by :func:`load`.
FORMAT_VERSION = 1


class PretrainedError(ValueError):
    """A pretrained model that is unknown or whose files are damaged."""


def available() -> list[str]:
    """Names of the pretrained models shipped with this package."""
    return sorted(p.stem for p in _HERE.glob("*.json") if p.with_suffix(".npz").exists())


def info(name: str) -> dict[str, Any]:
    """The description of model ``name``: architecture, recipe and measured metrics."""
    path = _HERE / f"{name}.json"
    if not path.is_file():
        names = ", ".join(available()) or "none"
        raise PretrainedError(f"no pretrained model named {name!r}; available: {names}")
    with path.open(encoding="utf-8") as f:
        description = json.load(f)
    if description.get("format_version") != FORMAT_VERSION:
        raise PretrainedError(
            f"{path.name}: format_version {description.get('format_version')!r}, "
            f"this course_lib reads version {FORMAT_VERSION}"
        )
    return description


def build_network(
    architecture: list[dict[str, Any]],
    input_shape: tuple[int, int, int] = (1, 28, 28),
    *,
    dtype: Any = np.float32,
    seed: SeedLike = None,
) -> Any:
    """Build a :class:`course_lib.models.Sequential` from a list of layer specs.

    Specs (dicts with ``"type"``): ``Convolution`` (``filters``, ``size``, ``stride``,
    ``pad``), ``Pooling`` (``size``, ``stride``), ``Relu``, ``Flatten`` is implicit
    (Affine flattens), ``Affine`` (``units``). Weights get He initialisation
    (``sqrt(2 / fan_in)``) from ``seed``; biases start at zero.

    Args:
        architecture: the layer specs, in order.
        input_shape: ``(C, H, W)`` of one input image.
        dtype: parameter dtype.
        seed: int or ``np.random.Generator`` for the initial weights.

    Returns:
        the network; its ``params`` are named W1, b1, W2, ... in layer order.
    """
    from course_lib.layers import Affine, Convolution, Pooling, Relu
    from course_lib.models import Sequential

    rng = as_generator(seed)
    dtype = np.dtype(dtype)
    channels, height, width = (int(s) for s in input_shape)
    flat: int | None = None
    layers: list[Any] = []
    for i, spec in enumerate(architecture):
        kind = spec.get("type")
        if kind == "Convolution":
            filters, size = int(spec["filters"]), int(spec["size"])
            stride, pad = int(spec.get("stride", 1)), int(spec.get("pad", 0))
            fan_in = channels * size * size
            W = np.sqrt(2.0 / fan_in) * rng.standard_normal((filters, channels, size, size))
            layers.append(
                Convolution(W.astype(dtype), np.zeros(filters, dtype), stride=stride, pad=pad)
            )
            channels = filters
            height = (height + 2 * pad - size) // stride + 1
            width = (width + 2 * pad - size) // stride + 1
        elif kind == "Pooling":
            size, stride = int(spec["size"]), int(spec.get("stride", spec["size"]))
            layers.append(Pooling(size, size, stride=stride))
            height = (height - size) // stride + 1
            width = (width - size) // stride + 1
        elif kind == "Relu":
            layers.append(Relu())
        elif kind == "Affine":
            units = int(spec["units"])
            fan_in = flat if flat is not None else channels * height * width
            W = np.sqrt(2.0 / fan_in) * rng.standard_normal((fan_in, units))
            layers.append(Affine(W.astype(dtype), np.zeros(units, dtype)))
            flat = units
        else:
            raise PretrainedError(f"layer {i}: unknown layer type {kind!r}")
        if height < 1 or width < 1:
            raise PretrainedError(f"layer {i} ({kind}) shrinks the image to nothing")
    return Sequential(layers)


def load(name: str = "mnist-cnn", *, dtype: Any = np.float32) -> Any:
    """Load a pretrained network shipped with course_lib.

    Args:
        name: model name, see :func:`available` (``"mnist-cnn"``: a small CNN for
            28×28 MNIST-like digits, input ``(N, 1, 28, 28)`` in [0, 1]).
        dtype: dtype of the returned network's parameters.

    Returns:
        a :class:`course_lib.models.Sequential` with ``predict(x)`` → ``(N, 10)`` scores.
    """
    description = info(name)
    network = build_network(
        description["architecture"], tuple(description["input_shape"]), dtype=dtype, seed=0
    )
    path = _HERE / f"{name}.npz"
    if not path.is_file():
        raise PretrainedError(f"{name}: weights file {path.name} is missing from the package")
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: np.asarray(data[key], dtype=dtype) for key in data.files}
    network.set_params(arrays, source=path.name)
    return network
