"""Fully connected networks of any depth, with the book's training techniques."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np

from course_lib._random import SeedLike
from course_lib.layers import Affine, BatchNormalization, Dropout, Relu, Sigmoid, SoftmaxWithLoss
from course_lib.models.injection import LayerFactories, layer_factories, with_param_names
from course_lib.models.network import Network

ACTIVATIONS = {"relu": Relu, "sigmoid": Sigmoid}


def init_scale(weight_init_std: float | str, fan_in: int) -> float:
    """Standard deviation of the initial weights of a layer with ``fan_in`` inputs.

    ``'relu'`` / ``'he'``: sqrt(2 / fan_in) (He et al.); ``'sigmoid'`` / ``'xavier'``:
    sqrt(1 / fan_in) (Glorot & Bengio); a number is used as is.
    """
    if isinstance(weight_init_std, str):
        name = weight_init_std.lower()
        if name in ("relu", "he"):
            return float(np.sqrt(2.0 / fan_in))
        if name in ("sigmoid", "xavier"):
            return float(np.sqrt(1.0 / fan_in))
        raise ValueError(
            f"weight_init_std {weight_init_std!r}: use 'relu'/'he', 'sigmoid'/'xavier' or a number"
        )
    return float(weight_init_std)


class MultiLayerNetExtend(Network):
    """(Affine - [BatchNorm] - activation - [Dropout]) x len(hidden_size_list) - Affine - Softmax.

    input_size: e.g. 784; hidden_size_list: e.g. [100, 100, 100]; output_size: e.g. 10.
    activation: 'relu' or 'sigmoid'. weight_init_std: 'relu'/'he', 'sigmoid'/'xavier' or a
    number. weight_decay_lambda: L2 strength. use_dropout / dropout_ration (the book's
    spelling; ``dropout_ratio`` is accepted too) / use_batchnorm as in the book.
    Parameters: ``W1, b1, ..., W{L}, b{L}`` and, with batch norm, ``gamma1, beta1, ...``.

    ``layers`` builds the network from other classes (the student's own), by kind:
    ``{"Affine": ..., "Relu": ..., "Sigmoid": ..., "BatchNormalization": ..., "Dropout": ...,
    "SoftmaxWithLoss": ...}``; kinds left out use :mod:`course_lib.layers` (see
    :mod:`course_lib.models.injection`). All dropout layers share the network's generator.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size_list: Sequence[int],
        output_size: int,
        activation: str = "relu",
        weight_init_std: float | str = "relu",
        weight_decay_lambda: float = 0,
        use_dropout: bool = False,
        dropout_ration: float = 0.5,
        use_batchnorm: bool = False,
        *,
        dropout_ratio: float | None = None,
        dtype: Any = np.float32,
        seed: SeedLike = None,
        layers: LayerFactories | None = None,
    ) -> None:
        super().__init__(dtype=dtype, seed=seed)
        make = layer_factories(layers, _DEFAULT_LAYERS, type(self).__name__)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r}: use 'relu' or 'sigmoid'")
        ratio = dropout_ration if dropout_ratio is None else dropout_ratio
        self.input_size = input_size
        self.hidden_size_list = list(hidden_size_list)
        self.output_size = output_size
        self.hidden_layer_num = len(self.hidden_size_list)
        self.use_dropout = use_dropout
        self.use_batchnorm = use_batchnorm
        self.weight_decay_lambda = weight_decay_lambda

        sizes = [input_size, *self.hidden_size_list, output_size]
        for idx in range(1, len(sizes)):
            fan_in, fan_out = sizes[idx - 1], sizes[idx]
            W = self._init_weight((fan_in, fan_out), init_scale(weight_init_std, fan_in))
            affine = make["Affine"](W, self._zeros(fan_out))
            self.layers[f"Affine{idx}"] = with_param_names(affine, ("W", "b"))
            if idx == len(sizes) - 1:
                break
            if use_batchnorm:
                gamma = np.ones(fan_out, dtype=self.dtype)
                bn = make["BatchNormalization"](gamma, self._zeros(fan_out))
                self.layers[f"BatchNorm{idx}"] = with_param_names(bn, ("gamma", "beta"))
            self.layers[f"Activation_function{idx}"] = make[ACTIVATIONS[activation].__name__]()
            if use_dropout:
                self.layers[f"Dropout{idx}"] = make["Dropout"](ratio, seed=self.rng)
        self.last_layer = make["SoftmaxWithLoss"]()
        self._collect_params()


class MultiLayerNet(MultiLayerNetExtend):
    """(Affine - activation) x len(hidden_size_list) - Affine - Softmax, with weight decay.

    The book's ``MultiLayerNet(input_size, hidden_size_list, output_size,
    activation='relu', weight_init_std='relu', weight_decay_lambda=0)``: a
    :class:`MultiLayerNetExtend` without dropout and batch normalization, whose
    arguments it takes but ``use_dropout``, ``dropout_ration`` and ``use_batchnorm``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            bound = _BOOK_SIGNATURE.bind(self, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(
                f"MultiLayerNet: {exc} (dropout and batch normalization: MultiLayerNetExtend)"
            ) from None
        super().__init__(*bound.args[1:], **bound.kwargs)


_EXTENDED = inspect.signature(MultiLayerNetExtend.__init__)
_BOOK_SIGNATURE = _EXTENDED.replace(
    parameters=[
        p
        for name, p in _EXTENDED.parameters.items()
        if name not in ("use_dropout", "dropout_ration", "use_batchnorm", "dropout_ratio")
    ]
)
MultiLayerNet.__init__.__signature__ = _BOOK_SIGNATURE  # type: ignore[attr-defined]


_DEFAULT_LAYERS = {
    "Affine": Affine,
    "Relu": Relu,
    "Sigmoid": Sigmoid,
    "BatchNormalization": BatchNormalization,
    "Dropout": Dropout,
    "SoftmaxWithLoss": SoftmaxWithLoss,
}
