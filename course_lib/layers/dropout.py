"""Dropout (Srivastava et al., 2014), in the book's form."""

from __future__ import annotations

import numpy as np

from course_lib._random import SeedLike, as_generator
from course_lib.layers.base import Layer


class Dropout(Layer):
    """Drop each unit with probability ``dropout_ratio`` while training.

    x: any shape -> out: same shape. In training, ``out = x * mask`` with a fresh
    random mask; at test time, ``out = x * (1 - dropout_ratio)`` so expected
    activations match (the book's convention, not "inverted" dropout).
    Randomness comes from ``seed`` (an int or a ``np.random.Generator``).
    """

    cache_names = ("mask",)

    def __init__(self, dropout_ratio: float = 0.5, seed: SeedLike = None) -> None:
        self.dropout_ratio = dropout_ratio
        self.rng = as_generator(seed)
        self.mask: np.ndarray | None = None

    def forward(self, x: np.ndarray, train_flg: bool = True) -> np.ndarray:
        if train_flg:
            mask = self.rng.random(x.shape, dtype=np.float32) >= self.dropout_ratio
            self._cache(mask=mask)
            return x * mask
        self._cache(mask=None)
        return x * (1.0 - self.dropout_ratio)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self._require_cache(self.mask)
        return dout * self.mask
