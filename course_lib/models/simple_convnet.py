"""The simple convolutional network of the book's chapter 7."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from course_lib._random import SeedLike
from course_lib.layers import Affine, Convolution, Pooling, Relu
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
    ) -> None:
        super().__init__(dtype=dtype, seed=seed)
        cp = {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1, **(conv_param or {})}
        fn, fs, pad, stride = cp["filter_num"], cp["filter_size"], cp["pad"], cp["stride"]
        C, H, W = input_dim
        conv_h = conv_output_size(H, fs, stride, pad)
        conv_w = conv_output_size(W, fs, stride, pad)
        pool_out = fn * (conv_h // 2) * (conv_w // 2)

        self.layers["Conv1"] = Convolution(
            self._init_weight((fn, C, fs, fs), weight_init_std),
            self._zeros(fn),
            stride,
            pad,
            input_grad=False,  # the images need no gradient
        )
        self.layers["Relu1"] = Relu()
        self.layers["Pool1"] = Pooling(pool_h=2, pool_w=2, stride=2)
        self.layers["Affine1"] = Affine(
            self._init_weight((pool_out, hidden_size), weight_init_std), self._zeros(hidden_size)
        )
        self.layers["Relu2"] = Relu()
        self.layers["Affine2"] = Affine(
            self._init_weight((hidden_size, output_size), weight_init_std), self._zeros(output_size)
        )
        self._collect_params()
