"""The simple convolutional network of the book's chapter 7."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from course_lib._random import SeedLike
from course_lib.layers import Affine, Convolution, Pooling, Relu, SoftmaxWithLoss
from course_lib.models.injection import LayerFactories, layer_factories, with_param_names
from course_lib.models.network import Network
from course_lib.util import conv_output_size


class SimpleConvNet(Network):
    """Conv - ReLU - Pool(2x2) - Affine - ReLU - Affine - Softmax.

    input_dim: (C, H, W); conv_param: filter_num, filter_size, pad, stride.
    Parameters ``W1`` (FN, C, FS, FS), ``b1``; ``W2`` (FN * PH * PW, hidden_size), ``b2``;
    ``W3`` (hidden_size, output_size), ``b3``. x: (N, C, H, W) -> scores (N, output_size).

    ``Conv1`` is built with ``input_grad=False``: training needs no gradient of the
    images, so its ``backward`` stores ``dW`` and ``db`` and returns None (``gradient``
    is unchanged). Set ``net.layers["Conv1"].input_grad = True`` for the image gradient.

    ``layers`` builds the network from other classes (the student's own), by kind:
    ``{"Convolution": ..., "Pooling": ..., "Affine": ..., "Relu": ..., "SoftmaxWithLoss": ...}``;
    kinds left out use :mod:`course_lib.layers` (see :mod:`course_lib.models.injection`).
    Another ``Convolution`` class is built without ``input_grad``.
    """

    eval_batch_size = 500  # im2col patches of 500 images stay well under 100 MB

    def __init__(
        self,
        input_dim: tuple[int, int, int] = (1, 28, 28),
        conv_param: Mapping[str, int] | None = None,
        hidden_size: int = 100,
        output_size: int = 10,
        weight_init_std: float = 0.01,
        *,
        dtype: Any = np.float32,
        seed: SeedLike = None,
        layers: LayerFactories | None = None,
    ) -> None:
        super().__init__(dtype=dtype, seed=seed)
        make = layer_factories(layers, _DEFAULT_LAYERS, "SimpleConvNet")
        cp = {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1, **(conv_param or {})}
        fn, fs, pad, stride = cp["filter_num"], cp["filter_size"], cp["pad"], cp["stride"]
        C, H, W = input_dim
        conv_h = conv_output_size(H, fs, stride, pad)
        conv_w = conv_output_size(W, fs, stride, pad)
        pool_out = fn * (conv_h // 2) * (conv_w // 2)

        W1, b1 = self._init_weight((fn, C, fs, fs), weight_init_std), self._zeros(fn)
        if make["Convolution"] is Convolution:
            conv = Convolution(W1, b1, stride, pad, input_grad=False)  # images need no gradient
        else:
            conv = make["Convolution"](W1, b1, stride, pad)
        self.layers["Conv1"] = with_param_names(conv, ("W", "b"))
        self.layers["Relu1"] = make["Relu"]()
        self.layers["Pool1"] = make["Pooling"](pool_h=2, pool_w=2, stride=2)
        self.layers["Affine1"] = with_param_names(
            make["Affine"](
                self._init_weight((pool_out, hidden_size), weight_init_std),
                self._zeros(hidden_size),
            ),
            ("W", "b"),
        )
        self.layers["Relu2"] = make["Relu"]()
        self.layers["Affine2"] = with_param_names(
            make["Affine"](
                self._init_weight((hidden_size, output_size), weight_init_std),
                self._zeros(output_size),
            ),
            ("W", "b"),
        )
        self.last_layer = make["SoftmaxWithLoss"]()
        self._collect_params()


_DEFAULT_LAYERS = {
    "Convolution": Convolution,
    "Relu": Relu,
    "Pooling": Pooling,
    "Affine": Affine,
    "SoftmaxWithLoss": SoftmaxWithLoss,
}
