"""Softmax followed by the cross-entropy loss, as one layer (its backward is simple)."""

from __future__ import annotations

import numpy as np

from course_lib.functions import log_softmax
from course_lib.layers.base import Layer


class SoftmaxWithLoss(Layer):
    """Mean cross-entropy of ``softmax(x)`` against targets ``t``.

    x: (N, C) logits; t: (N, C) one-hot (or any probability rows) or (N,)
    integer labels. ``forward`` returns the loss, a float that is finite for any
    finite logits (it uses a log-softmax); ``backward(dout=1)`` returns
    ``dout * (softmax(x) - t) / N`` with ``t`` one-hot.
    """

    def __init__(self) -> None:
        self.loss: float | None = None
        self.y: np.ndarray | None = None  # softmax output (N, C)
        self.t: np.ndarray | None = None  # targets as given

    def forward(self, x: np.ndarray, t: np.ndarray) -> float:
        if x.ndim == 1:
            x = x.reshape(1, -1)
        t = np.asarray(t)
        n = x.shape[0]
        logp = log_softmax(x)
        self.y = np.exp(logp)
        if t.size == x.size and x.shape[1] > 1:  # one-hot or soft targets
            self.t = t.reshape(x.shape)
            self.loss = float(-np.sum(self.t * logp) / n)
        else:  # integer labels (N,), (N, 1) or a scalar
            self.t = t.reshape(-1).astype(np.intp, copy=False)
            self.loss = float(-np.mean(logp[np.arange(n), self.t]))
        return self.loss

    def backward(self, dout: float | np.ndarray = 1) -> np.ndarray:
        n = self.y.shape[0]
        if self.t.ndim == 2:
            dx = self.y - self.t
        else:
            dx = self.y.copy()
            dx[np.arange(n), self.t] -= 1
        return dx * (dout / n)
