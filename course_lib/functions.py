"""Activation and loss functions (the book's ``common/functions.py``), numerically stable.

Every function works on a single sample ``(D,)`` or on a batch ``(N, D)`` and
computes in the dtype of its input (float64 in, float64 out).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "cross_entropy_error",
    "identity_function",
    "numerical_diff",
    "relu",
    "relu_grad",
    "sigmoid",
    "sigmoid_grad",
    "softmax",
    "softmax_loss",
    "step_function",
    "sum_squared_error",
]


def identity_function(x: np.ndarray) -> np.ndarray:
    """Return ``x`` unchanged (the output activation of regression)."""
    return x


def step_function(x: np.ndarray) -> np.ndarray:
    """Heaviside step: 1 where ``x > 0``, else 0 (integer array of ``x``'s shape)."""
    return np.asarray(np.asarray(x) > 0, dtype=int)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic sigmoid ``1 / (1 + exp(-x))``, without overflow for large ``|x|``.

    Uses ``exp(-|x|)``, which never overflows, and picks the matching form for
    each sign of ``x``.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def sigmoid_grad(x: np.ndarray) -> np.ndarray:
    """Derivative of :func:`sigmoid` at ``x``: ``s * (1 - s)``."""
    s = sigmoid(x)
    return (1.0 - s) * s


def relu(x: np.ndarray) -> np.ndarray:
    """Rectified linear unit ``max(0, x)``."""
    return np.maximum(x, 0)


def relu_grad(x: np.ndarray) -> np.ndarray:
    """Derivative of :func:`relu` (taken as 1 at 0, like the book)."""
    x = np.asarray(x)
    return (x >= 0).astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64)


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis.

    x: (D,) or (N, D) logits -> probabilities of the same shape, rows summing to 1.
    Subtracting the row maximum first keeps ``exp`` finite for logits of any size
    (±1e4 and beyond).
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    z = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=-1, keepdims=True)


def _as_label_indices(y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Return integer class indices ``(N,)`` for one-hot ``(N, C)`` or label ``(N,)`` targets."""
    t = np.asarray(t)
    if t.size == y.size and y.shape[-1] > 1:  # one-hot
        return t.reshape(y.shape).argmax(axis=-1)
    return t.reshape(-1).astype(np.intp, copy=False)


def cross_entropy_error(y: np.ndarray, t: np.ndarray, delta: float = 1e-7) -> float:
    """Mean cross-entropy of predicted probabilities against targets, as in the book.

    y: (C,) or (N, C) probabilities (e.g. the output of :func:`softmax`).
    t: one-hot of ``y``'s shape, or integer labels (N,) (also (N, 1) or a scalar).
    Returns the batch mean of ``-log(y[label] + delta)``; the small ``delta``
    (the book's 1e-7) keeps a probability of 0 from giving ``log(0)``, so the result
    is always finite (at most ``-log(delta)``, about 16.1). For losses straight from
    logits, :func:`softmax_loss` is exact and finite for logits of any size.
    """
    y = np.asarray(y)
    if y.ndim == 1:
        y = y.reshape(1, -1)
    labels = _as_label_indices(y, t)
    n = y.shape[0]
    return float(-np.sum(np.log(y[np.arange(n), labels] + delta)) / n)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """``log(softmax(x))`` over the last axis, computed without forming ``softmax`` first."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    z = x - np.max(x, axis=-1, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def softmax_loss(x: np.ndarray, t: np.ndarray) -> float:
    """Cross-entropy of ``softmax(x)`` against ``t``, via a stable log-softmax.

    x: (C,) or (N, C) logits; t: one-hot or integer labels. Finite for any finite logits.
    """
    x = np.asarray(x)
    if x.ndim == 1:
        x = x.reshape(1, -1)
    labels = _as_label_indices(x, t)
    logp = log_softmax(x)
    return float(-np.mean(logp[np.arange(x.shape[0]), labels]))


def sum_squared_error(y: np.ndarray, t: np.ndarray) -> float:
    """Half the sum of squared differences, ``0.5 * sum((y - t) ** 2)``."""
    return float(0.5 * np.sum((np.asarray(y) - np.asarray(t)) ** 2))


def numerical_diff(f: Callable[[float], float], x: float, h: float = 1e-4) -> float:
    """Central difference ``(f(x + h) - f(x - h)) / (2 h)``, error O(h²)."""
    return (f(x + h) - f(x - h)) / (2 * h)
