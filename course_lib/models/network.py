"""What every network shares: params, predict / loss / accuracy, backprop, saving.

A network is an ordered dict of layers followed by a loss layer, as in the
book. ``params`` maps names such as ``"W1"`` to the very arrays the layers
hold, so an optimizer updating ``params`` in place updates the layers too.
"""

from __future__ import annotations

import copy
import functools
import inspect
import os
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from course_lib._random import SeedLike, as_generator
from course_lib.gradcheck import _freeze_randomness, numerical_gradient
from course_lib.layers import SoftmaxWithLoss
from course_lib.layers.base import inference, recording

__all__ = ["Network", "ParamsFileError", "Sequential"]

PathLike = str | os.PathLike


class ParamsFileError(ValueError):
    """A parameter file that cannot be loaded into this network (format, names or shapes)."""


@functools.cache
def _takes_train_flg(forward: Any) -> bool:
    try:
        return "train_flg" in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False


def _forward_takes_train_flg(layer: Any) -> bool:
    """Whether ``layer.forward`` has a ``train_flg`` argument (looked up once per class)."""
    return _takes_train_flg(getattr(type(layer), "forward", layer.forward))


class Network:
    """Base of the models. Subclasses fill ``layers`` and call :meth:`_collect_params`.

    Attributes: ``params`` (name -> array), ``layers`` (OrderedDict name -> layer),
    ``last_layer`` (the loss layer), ``weight_decay_lambda`` (L2 strength on every ``W``).
    """

    params: dict[str, np.ndarray]
    layers: OrderedDict[str, Any]
    #: Samples per chunk in ``accuracy`` when no ``batch_size`` is given: bounds the memory of
    #: the activations (convolutional models lower it) while keeping matrix products large.
    eval_batch_size: int = 1000

    def __init__(self, *, dtype: Any = np.float32, seed: SeedLike = None) -> None:
        self.dtype = np.dtype(dtype)
        self.rng = as_generator(seed)
        self.params = {}
        self.layers = OrderedDict()
        self.last_layer: Any = SoftmaxWithLoss()
        self.weight_decay_lambda = 0.0
        self._param_refs: dict[str, tuple[str, str]] = {}
        self.last_loss: float | None = None

    # ------------------------------------------------------------------ building
    def _init_weight(self, shape: tuple[int, ...], std: float) -> np.ndarray:
        """Gaussian weights drawn in float64 (the same values whatever the dtype), then cast."""
        return (std * self.rng.standard_normal(shape)).astype(self.dtype)

    def _zeros(self, n: int) -> np.ndarray:
        return np.zeros(n, dtype=self.dtype)

    def _collect_params(self) -> None:
        """Name every layer parameter ``<attr><k>`` (W1, b1, W2, ...; gamma1, beta1, ...)."""
        counts: dict[str, int] = {}
        self.params = {}
        self._param_refs = {}
        for layer_name, layer in self.layers.items():
            for attr in getattr(layer, "param_names", ()):
                counts[attr] = counts.get(attr, 0) + 1
                key = f"{attr}{counts[attr]}"
                self.params[key] = getattr(layer, attr)
                self._param_refs[key] = (layer_name, attr)

    def _rebind(self) -> None:
        """Point the layers at the arrays now in ``params`` (after a copy or a cast)."""
        for key, (layer_name, attr) in self._param_refs.items():
            setattr(self.layers[layer_name], attr, self.params[key])

    # ------------------------------------------------------------------ inference
    def predict(self, x: np.ndarray, train_flg: bool = False) -> np.ndarray:
        """Scores before the softmax. x: (N, ...) -> (N, output_size).

        ``train_flg`` switches dropout and batch normalisation to training mode.
        Inference keeps no caches in ``course_lib``'s layers (a convolution's patch
        matrices are most of a forward pass's memory); called from :meth:`loss`, which
        records them, ``predict`` keeps what ``backward`` needs, as in the book.
        """
        with inference(unless_recording=True):
            for layer in self.layers.values():
                if _forward_takes_train_flg(layer):
                    x = layer.forward(x, train_flg)
                else:
                    x = layer.forward(x)
        return x

    def loss(self, x: np.ndarray, t: np.ndarray, train_flg: bool = False) -> float:
        """Mean cross-entropy of the batch plus the weight-decay term ``λ/2 Σ ||W||²``.

        The layers keep their caches, so ``backward`` can follow (see :meth:`gradient`).
        """
        with recording():
            y = self.predict(x, train_flg)
            return self.last_layer.forward(y, t) + self._weight_decay()

    def _weight_decay(self) -> float:
        if not self.weight_decay_lambda:
            return 0.0
        lam = self.weight_decay_lambda
        return float(
            sum(
                0.5 * lam * np.sum(np.square(p, dtype=np.float64))
                for k, p in self.params.items()
                if k.startswith("W")
            )
        )

    def accuracy(self, x: np.ndarray, t: np.ndarray, batch_size: int | None = None) -> float:
        """Fraction of correct predictions, evaluated ``batch_size`` samples at a time.

        x: (N, ...); t: (N,) labels or (N, C) one-hot. Memory stays bounded for any N
        (default chunk: the model's ``eval_batch_size``).
        """
        batch_size = batch_size or self.eval_batch_size
        t = np.asarray(t)
        if t.ndim != 1:
            t = np.argmax(t, axis=1)
        n = x.shape[0]
        if n == 0:
            raise ValueError("accuracy of an empty dataset is undefined")
        correct = 0
        for i in range(0, n, batch_size):
            y = self.predict(x[i : i + batch_size], train_flg=False)
            correct += int(np.sum(np.argmax(y, axis=1) == t[i : i + batch_size]))
        return correct / n

    def predict_proba(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Class probabilities (softmax of the scores), batched. x: (N, ...) -> (N, C)."""
        from course_lib.functions import softmax

        out = [
            softmax(self.predict(x[i : i + batch_size]).astype(np.float64))
            for i in range(0, x.shape[0], batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, 0))

    # ------------------------------------------------------------------ gradients
    def gradient(self, x: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        """Gradients of the loss by backpropagation, keyed like ``params``."""
        self.last_loss = self.loss(x, t, train_flg=True)
        dout = self.last_layer.backward(1)
        for layer in reversed(self.layers.values()):
            dout = layer.backward(dout)
        grads = {}
        for key, (layer_name, attr) in self._param_refs.items():
            g = getattr(self.layers[layer_name], "d" + attr)
            if self.weight_decay_lambda and key.startswith("W"):
                g = g + self.weight_decay_lambda * self.params[key]
            grads[key] = g
        return grads

    def numerical_gradient(self, x: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        """Gradients by centred differences (slow: two forward passes per parameter).

        Computed on a float64 copy of the network, with dropout replaying the same
        masks, and returned in the dtype of ``params``.
        """
        twin = self.astype(np.float64)
        x64 = np.asarray(x, dtype=np.float64)
        restore = _freeze_randomness(twin)

        def f(_: np.ndarray) -> float:
            restore()
            return twin.loss(x64, t, train_flg=True)

        return {
            key: numerical_gradient(f, value).astype(self.params[key].dtype)
            for key, value in twin.params.items()
        }

    # ------------------------------------------------------------------ dtype and copies
    def astype(self, dtype: Any) -> Network:
        """A copy of the network with parameters (and running statistics) in ``dtype``.

        The layers' caches of the last forward pass are not copied (they are None in the copy).
        """
        # deepcopy's memo maps an object to its copy: mapping each cache to None leaves it out
        memo: dict[int, Any] = {}
        for layer in self.layers.values():
            for name in getattr(layer, "cache_names", ()):
                value = getattr(layer, name, None)
                if isinstance(value, np.ndarray | list):
                    memo[id(value)] = None
        twin = copy.deepcopy(self, memo)
        twin.dtype = np.dtype(dtype)
        for key in twin.params:
            twin.params[key] = twin.params[key].astype(dtype)
        twin._rebind()
        for layer in twin.layers.values():
            for name in ("running_mean", "running_var"):
                if getattr(layer, name, None) is not None:
                    setattr(layer, name, getattr(layer, name).astype(dtype))
        return twin

    def count_params(self) -> int:
        """Total number of trainable parameters."""
        return int(sum(p.size for p in self.params.values()))

    # ------------------------------------------------------------------ saving
    def _buffers(self) -> dict[str, np.ndarray]:
        """Running statistics that exist so far, named ``<layer>.<attribute>``."""
        return {key: value for key, (value, _) in self._buffer_slots().items() if value is not None}

    def _buffer_slots(self) -> dict[str, tuple[np.ndarray | None, tuple[int, ...]]]:
        """Every running-statistics slot (even unset ones) with its value and expected shape."""
        slots = {}
        for layer_name, layer in self.layers.items():
            if not hasattr(layer, "running_mean"):
                continue
            shape = (int(np.size(layer.gamma)),)
            for name in ("running_mean", "running_var"):
                slots[f"{layer_name}.{name}"] = (getattr(layer, name), shape)
        return slots

    def save_params(self, file_name: PathLike = "params.npz") -> None:
        """Save parameters (and batch-norm running statistics) to an ``.npz`` file.

        The file is written exactly at ``file_name`` (no suffix is added), atomically.
        """
        path = os.fspath(file_name)
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **self.params, **self._buffers())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def load_params(self, file_name: PathLike = "params.npz") -> None:
        """Load parameters saved by :meth:`save_params` (``.npz``; pickles are refused).

        Every parameter must be present with the right shape; values are copied
        into the existing arrays (cast to their dtype), so layers and optimizers
        keep working. Raises :class:`ParamsFileError` naming what does not fit.
        """
        path = os.fspath(file_name)
        try:
            data = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise ParamsFileError(
                f"{path}: not an .npz parameter file ({exc}). course_lib never loads pickles, "
                "which can run arbitrary code; convert a pickled file once with "
                "`python scripts/convert_pickle_params.py SRC.pkl DST.npz`."
            ) from exc
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ParamsFileError(f"{path}: expected an .npz archive of named arrays")
        with data:
            arrays = {k: data[k] for k in data.files}
        self.set_params(arrays, source=path)

    def set_params(
        self, arrays: Mapping[str, np.ndarray], source: str = "the given arrays"
    ) -> None:
        """Copy named arrays into ``params`` (and buffers), checking names and shapes first."""
        missing = [k for k in self.params if k not in arrays]
        if missing:
            raise ParamsFileError(
                f"{source}: missing parameters {missing} for {type(self).__name__}"
            )
        slots = self._buffer_slots()
        unknown = [k for k in arrays if k not in self.params and k not in slots]
        if unknown:
            raise ParamsFileError(f"{source}: unknown entries {unknown} for {type(self).__name__}")
        for key, value in arrays.items():
            shape = self.params[key].shape if key in self.params else slots[key][1]
            if shape != value.shape:
                raise ParamsFileError(
                    f"{source}: {key} has shape {value.shape}, but this "
                    f"{type(self).__name__} needs {shape}"
                )
        for key, value in arrays.items():
            if key in self.params:
                self.params[key][...] = value
            else:
                layer_name, name = key.rsplit(".", 1)
                setattr(self.layers[layer_name], name, np.array(value, dtype=self.dtype))

    def __repr__(self) -> str:
        inner = "\n".join(f"  {name}: {layer!r}" for name, layer in self.layers.items())
        return f"{type(self).__name__}(\n{inner}\n)  # {self.count_params():,} parameters"


class Sequential(Network):
    """A network from a list of layers, e.g. ``Sequential([Affine(W1, b1), Relu(), Affine(W2, b2)])``.

    layers: layer objects (named ``<Class><i>``) or a mapping name -> layer.
    Parameters are named ``W1, b1, W2, ...`` (``gamma1, beta1, ...`` for batch
    norm) in order of appearance. ``loss_layer`` defaults to :class:`SoftmaxWithLoss`.
    The dtype is that of the first parameter (float32 if there is none).
    """

    def __init__(
        self,
        layers: Iterable[Any] | Mapping[str, Any],
        *,
        loss_layer: Any = None,
        weight_decay_lambda: float = 0.0,
        seed: SeedLike = None,
    ) -> None:
        super().__init__(seed=seed)
        if isinstance(layers, Mapping):
            self.layers = OrderedDict(layers)
        else:
            counts: dict[str, int] = {}
            for layer in layers:
                cls = type(layer).__name__
                counts[cls] = counts.get(cls, 0) + 1
                self.layers[f"{cls}{counts[cls]}"] = layer
        self.last_layer = loss_layer if loss_layer is not None else SoftmaxWithLoss()
        self.weight_decay_lambda = weight_decay_lambda
        self._collect_params()
        if self.params:
            self.dtype = next(iter(self.params.values())).dtype
