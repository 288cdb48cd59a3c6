"""Batch normalisation (Ioffe & Szegedy, 2015)."""

from __future__ import annotations

import numpy as np

from course_lib.layers.base import Layer


class BatchNormalization(Layer):
    """Normalise each feature over the batch, then scale by ``gamma`` and shift by ``beta``.

    2-D input x: (N, D) with gamma, beta: (D,) normalises each of the D features.
    4-D input x: (N, C, H, W) normalises per channel over (N, H, W) when gamma has
    C entries (spatial batch norm, as in CNNs), or per activation when it has
    C * H * W entries (the book's convention). Training (``train_flg=True``) uses the
    batch statistics and updates the running ones with ``momentum``; inference uses
    the running statistics. ``backward`` stores ``dgamma`` and ``dbeta``.
    """

    param_names = ("gamma", "beta")
    cache_names = ("xn", "std")

    def __init__(
        self,
        gamma: np.ndarray,
        beta: np.ndarray,
        momentum: float = 0.9,
        running_mean: np.ndarray | None = None,
        running_var: np.ndarray | None = None,
        eps: float = 1e-6,
    ) -> None:
        self.gamma = gamma
        self.beta = beta
        self.momentum = momentum
        self.eps = eps
        self.running_mean = running_mean
        self.running_var = running_var
        self.input_shape: tuple[int, ...] | None = None
        self.xn: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.dgamma: np.ndarray | None = None
        self.dbeta: np.ndarray | None = None

    # (N, C, H, W) <-> (rows, features) for the chosen convention
    def _to_2d(self, x: np.ndarray) -> np.ndarray:
        if x.ndim == 2:
            return x
        N, C, H, W = x.shape
        if np.size(self.gamma) == C:
            return x.transpose(0, 2, 3, 1).reshape(-1, C)
        return x.reshape(N, -1)

    def _from_2d(self, y: np.ndarray) -> np.ndarray:
        if len(self.input_shape) == 2:
            return y
        N, C, H, W = self.input_shape
        if np.size(self.gamma) == C:
            return y.reshape(N, H, W, C).transpose(0, 3, 1, 2)
        return y.reshape(self.input_shape)

    def forward(self, x: np.ndarray, train_flg: bool = True) -> np.ndarray:
        self.input_shape = x.shape
        x2 = self._to_2d(x)
        if self.running_mean is None:
            self.running_mean = np.zeros(x2.shape[1], dtype=x2.dtype)
            self.running_var = np.zeros(x2.shape[1], dtype=x2.dtype)
        if train_flg:
            mu = x2.mean(axis=0)
            xc = x2 - mu
            var = np.mean(xc**2, axis=0)
            std = np.sqrt(var + self.eps)
            xn = xc / std
            self._cache(xn=xn, std=std)
            m = self.momentum
            self.running_mean = m * self.running_mean + (1 - m) * mu
            self.running_var = m * self.running_var + (1 - m) * var
        else:
            self._cache(xn=None, std=None)
            xn = (x2 - self.running_mean) / np.sqrt(self.running_var + self.eps)
        return self._from_2d(self.gamma.reshape(-1) * xn + self.beta.reshape(-1))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self._require_cache(self.xn)
        d2 = self._to_2d(dout)
        self.dbeta = d2.sum(axis=0).reshape(np.shape(self.beta))
        self.dgamma = (self.xn * d2).sum(axis=0).reshape(np.shape(self.gamma))
        dxn = self.gamma.reshape(-1) * d2
        # d/dx of (x - mean) / std, summed over the batch in closed form
        dx = (dxn - dxn.mean(axis=0) - self.xn * (dxn * self.xn).mean(axis=0)) / self.std
        return self._from_2d(dx)
