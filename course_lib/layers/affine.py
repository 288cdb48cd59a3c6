"""The fully connected layer."""

from __future__ import annotations

import numpy as np

from course_lib.layers.base import Layer


class Affine(Layer):
    """``out = x @ W + b``.

    W: (D, M), b: (M,). x: (N, D) or (N, d1, d2, ...) with ``d1 * d2 * ... == D``
    (images are flattened per sample) -> out: (N, M). ``backward`` returns dx in
    the shape x had and stores ``dW`` (D, M) and ``db`` (M,).
    """

    param_names = ("W", "b")
    cache_names = ("x", "original_x_shape")

    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        self.W = W
        self.b = b
        self.x: np.ndarray | None = None
        self.original_x_shape: tuple[int, ...] | None = None
        self.dW: np.ndarray | None = None
        self.db: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        flat = x.reshape(x.shape[0], -1)
        self._cache(x=flat, original_x_shape=x.shape)
        return flat @ self.W + self.b

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self._require_cache(self.x)
        dx = dout @ self.W.T
        self.dW = self.x.T @ dout
        self.db = dout.sum(axis=0)
        return dx.reshape(self.original_x_shape)
