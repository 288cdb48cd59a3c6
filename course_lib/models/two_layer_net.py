"""The two-layer network of the book's chapters 4 and 5."""

from __future__ import annotations

from typing import Any

import numpy as np

from course_lib._random import SeedLike
from course_lib.layers import Affine, Relu
from course_lib.models.network import Network


class TwoLayerNet(Network):
    """Affine - ReLU - Affine - Softmax.

    Parameters ``W1`` (input_size, hidden_size), ``b1`` (hidden_size,),
    ``W2`` (hidden_size, output_size), ``b2`` (output_size,); weights drawn from
    N(0, weight_init_std²). x: (N, input_size) or images (N, C, H, W) -> scores (N, output_size).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        weight_init_std: float = 0.01,
        *,
        dtype: Any = np.float32,
        seed: SeedLike = None,
    ) -> None:
        super().__init__(dtype=dtype, seed=seed)
        self.layers["Affine1"] = Affine(
            self._init_weight((input_size, hidden_size), weight_init_std), self._zeros(hidden_size)
        )
        self.layers["Relu1"] = Relu()
        self.layers["Affine2"] = Affine(
            self._init_weight((hidden_size, output_size), weight_init_std), self._zeros(output_size)
        )
        self._collect_params()
