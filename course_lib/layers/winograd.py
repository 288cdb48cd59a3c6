"""Winograd's F(2x2, 3x3): a 3x3 convolution with 2.25 times fewer multiplications.

Used by :class:`~course_lib.layers.Convolution` on the compiled path for 3x3 filters
with stride 1 and several input channels in float32 (DeepConvNet's five 3x3 layers):
:func:`applies`. The NumPy layer (im2col and one matrix product) stays the reference.

Each 2x2 block of outputs ("tile") is computed from the 4x4 block of input pixels
under it (Lavin and Gray, *Fast Algorithms for Convolutional Neural Networks*, 2016):

    Y = A^T [ (G g G^T) * (B^T d B) ] A        (* elementwise, per channel pair)

with ``d`` the 4x4 input tile, ``g`` a 3x3 filter and the small constant matrices
``B^T`` (4x4), ``G`` (4x3), ``A^T`` (2x4). Summed over input channels, the elementwise
product at each of the 16 tile positions is a matrix product
``(tiles, C) @ (C, FN)``: 16 products per block of images, each 9/4 times smaller than
the im2col product, which OpenBLAS runs at full speed (measured: docs/performance.md).
The backward pass uses the adjoints of the same linear maps:

    dM = A dY A^T,  dU = V^T dM  (so dW = G^T dU G),  dV = dM U^T,  dx = B dV B^T

The tile transforms are serial kernels (:mod:`course_lib.kernels`); like the
convolution's patch copies, each thread runs its own blocks of images
(:func:`course_lib.threads.run_shares`) with one-thread BLAS.
"""

from __future__ import annotations

import numpy as np

from course_lib import threads
from course_lib.layers.base import image_blocks, reused

__all__ = ["applies", "backward", "filter_transform", "filter_transform_adjoint", "forward"]

#: The filter transform G (4x3) of F(2x2, 3x3); its entries are exact in binary.
G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
#: ``G g G^T`` for a flattened 3x3 filter ``g``: row (i, j), column (k, l) is G[i, k] G[j, l].
GG = np.kron(G, G)  # (16, 9)


def applies(W: np.ndarray, stride: int, dtype: np.dtype) -> bool:
    """Whether a convolution with filters W (FN, C, FH, FW) runs as Winograd F(2x2, 3x3).

    3x3 filters, stride 1, more than one input channel (one channel has its own
    patch path), float32 (training; float64, which gradient checks use, stays on
    the exact patch path).
    """
    _, C, FH, FW = W.shape
    return FH == FW == 3 and stride == 1 and C > 1 and dtype == np.float32


def filter_transform(W: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """W: (FN, C, 3, 3) -> U: (16, C, FN), ``G g G^T`` of every filter (computed in float64)."""
    FN, C = W.shape[:2]
    U = W.reshape(FN * C, 9).astype(np.float64) @ GG.T  # (FN * C, 16): one small product
    return np.ascontiguousarray(U.reshape(FN, C, 16).transpose(2, 1, 0), dtype=dtype)


def filter_transform_adjoint(dU: np.ndarray) -> np.ndarray:
    """dU: (16, C, FN) -> dW: (FN, C, 3, 3) = ``G^T dU G`` (the gradient through the transform)."""
    _, C, FN = dU.shape
    dW = GG.T @ dU.reshape(16, C * FN).astype(np.float64)  # (9, C * FN)
    return np.ascontiguousarray(dW.reshape(3, 3, C, FN).transpose(3, 2, 0, 1), dtype=dU.dtype)


def _tiles(OH: int, OW: int) -> tuple[int, int]:
    """Tiles per column and row: every output in one 2x2 tile (the last may hang over)."""
    return (OH + 1) // 2, (OW + 1) // 2


def _blocks(
    N: int, tiles: int, C: int, FN: int, dtype: np.dtype, block_bytes: int
) -> list[tuple[int, int]]:
    """The blocks of images (:func:`image_blocks`) by the bytes of an image's transformed tiles."""
    return image_blocks(N, 16 * tiles * (C + FN) * dtype.itemsize, block_bytes)


def forward(
    fast, img: np.ndarray, W: np.ndarray, b: np.ndarray, pad: int, out: np.ndarray, block_bytes: int
) -> None:
    """out (N, OH, OW, FN) = the convolution of img (N, H, W, C), filters W, bias b, stride 1.

    ``img`` and ``out`` are C-contiguous, channels-last, of W's dtype.
    """
    N, OH, OW, FN = out.shape
    C = img.shape[3]
    TH, TW = _tiles(OH, OW)

    def work(share: list[tuple[int, int]]) -> None:  # serial kernels, 1-thread BLAS
        V = M = None
        for start, n in share:
            V = reused(V, (16, n * TH * TW, C), out.dtype)
            M = reused(M, (16, n * TH * TW, FN), out.dtype)
            fast.wino_input(img[start : start + n], pad, TH, TW, V)
            np.matmul(V, U, out=M)
            fast.wino_output(M, TH, TW, b, out[start : start + n])

    with threads.single_threaded_blas():  # a 2-thread OpenBLAS ran this product 100x slower
        U = filter_transform(W, out.dtype)
    threads.run_shares(work, _blocks(N, TH * TW, C, FN, out.dtype, block_bytes))


def backward(
    fast,
    img: np.ndarray,
    dout: np.ndarray,
    W: np.ndarray,
    pad: int,
    dimg: np.ndarray | None,
    block_bytes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of :func:`forward`: returns dW (FN, C, 3, 3) and db (FN,); fills dimg.

    img: (N, H, W, C) the forward input; dout: (N, OH, OW, FN); dimg: (N, H, W, C) to
    be written whole, or None when no input gradient is needed. All C-contiguous, of
    W's dtype. Each thread sums the ``dU`` and ``db`` of its own blocks.
    """
    N, OH, OW, FN = dout.shape
    C = img.shape[3]
    dtype = dout.dtype
    TH, TW = _tiles(OH, OW)
    blocks = _blocks(N, TH * TW, C, FN, dtype, block_bytes)
    ones = np.ones(blocks[0][1] * OH * OW, dtype=dtype)

    def work(share: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        dU, db = np.zeros((16, C, FN), dtype=dtype), np.zeros(FN, dtype=dtype)
        part = np.empty_like(dU)
        V = dM = None
        for start, n in share:
            V = reused(V, (16, n * TH * TW, C), dtype)
            dM = reused(dM, (16, n * TH * TW, FN), dtype)
            d = dout[start : start + n]
            fast.wino_input(img[start : start + n], pad, TH, TW, V)
            fast.wino_output_adjoint(d, TH, TW, dM)
            dU += np.matmul(V.transpose(0, 2, 1), dM, out=part)
            db += ones[: n * OH * OW] @ d.reshape(-1, FN)
            if dimg is not None:  # V is done with: its buffer takes dV
                np.matmul(dM, U_T, out=V)
                fast.wino_input_adjoint(V, pad, TH, TW, dimg[start : start + n])
        return dU, db  # this thread's sums

    with threads.single_threaded_blas():  # the filter transform (see forward)
        U = filter_transform(W, dtype)
    U_T = np.ascontiguousarray(U.transpose(0, 2, 1))  # (16, FN, C)
    dU, db = (sum(parts) for parts in zip(*threads.run_shares(work, blocks), strict=True))
    with threads.single_threaded_blas():
        return filter_transform_adjoint(dU), db
