"""The fully connected layer."""

from __future__ import annotations

import numpy as np

from course_lib import kernels, threads
from course_lib.layers.base import Layer

#: Products of at least this many multiply-adds are split over the threads by rows
#: (compiled path, more than one thread); smaller ones run on the calling thread.
SHARE_MIN = 1 << 22


def _threaded() -> bool:
    """The compiled path on several threads: this layer's products avoid 2-thread BLAS calls.

    A 2-thread OpenBLAS call leaves OpenBLAS's second thread spinning for work for
    about 0.1 s, through the rest of the step, on the core that the convolution's and
    the kernels' threads need: measured, a DeepConvNet step cost 195 ms of CPU on 2
    threads against 108 ms with OpenBLAS at 1 thread (docs/performance.md). So on
    the compiled path BLAS runs on one thread inside the layers and the layers share
    out their products themselves (:func:`course_lib.threads.run_shares`).
    """
    return threads.threads() > 1 and kernels.active() == "numba"


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
        if _threaded():
            out = _by_rows(flat, self.W)
            out += self.b
            return out
        return flat @ self.W + self.b

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self._require_cache(self.x)
        if _threaded():
            dx = _by_rows(dout, self.W.T)
            self.dW = _by_rows(self.x.T, dout)
        else:
            dx = dout @ self.W.T
            self.dW = self.x.T @ dout
        self.db = dout.sum(axis=0)
        return dx.reshape(self.original_x_shape)


def _by_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` (2-D) with one-thread BLAS, its rows shared over the threads when large."""
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))

    def work(rows: range) -> None:
        np.matmul(a[rows.start : rows.stop], b, out=out[rows.start : rows.stop])

    if a.shape[0] * a.shape[1] * b.shape[1] >= SHARE_MIN:
        threads.run_shares(work, range(a.shape[0]))  # one-thread BLAS in every share
    else:
        with threads.single_threaded_blas():
            work(range(a.shape[0]))
    return out
