"""The 2-D convolution layer, as one matrix product over image patches.

This is the book's ``im2col`` convolution, arranged for speed:

* the image is read *channels-last*, ``(N, H, W, C)``, so that every patch row
  of ``col`` is built from ``FH`` runs of ``FW * C`` neighbouring numbers (the
  book's ``(N, C, H, W)`` order copies them one at a time);
* patches are a strided *view* of the padded image; the reshape into ``col``
  is the only copy, done a block of images at a time so that the rows are
  still in the CPU cache when the matrix product reads them (the backward pass
  works through the same blocks);
* the output is returned as an ``(N, FN, OH, OW)`` view of channels-last
  memory, so the next convolution (or pooling) reads it without a copy;
* the backward pass never builds the big ``dcol`` matrix: for each kernel
  offset ``(i, j)`` the gradient ``dout @ W[:, :, i, j]`` is added straight into
  the pixels that offset looked at (the same loop over kernel offsets as the
  book's ``col2im``); for one input channel a single product gives all offsets;
* ``db``, the sum of the output gradient over all positions, is a matrix-vector
  product (``ones @ d``, 6-19x faster than ``d.sum(axis=0)`` here);
* for one input channel (grey images) the patch matrix is built transposed, in
  long runs, with a row of ones that adds the bias in the forward product and
  gives ``db`` in the backward one.

Shapes and results are those of the book's layer; ``course_lib.util.im2col``
still lays patches out in the book's ``(C, FH, FW)`` order for teaching.

With the compiled kernels (:mod:`course_lib.kernels`, the default when Numba is
installed) the same algorithm runs with the element-wise steps in parallel
kernels: the patch copy (zero padding included, so the padded image is never
built), the bias add, and the input gradient as one product ``dcol = d @ W``
followed by a parallel scatter (``col2im``) of ``dcol`` into the image, image by
image. The matrix products are the same BLAS calls. The NumPy code below is the
reference both are tested against.

During inference (``Network.predict``) the layer keeps no patch matrices: each
block's rows are dropped (or their buffer reused) once multiplied.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from course_lib import kernels, threads
from course_lib.layers.base import Layer, keeps_caches

_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _pad_channels_last(img: np.ndarray, pad: int) -> np.ndarray:
    """img: (N, H, W, C) -> (N, H + 2 pad, W + 2 pad, C), zero border (no copy when pad == 0)."""
    if not pad:
        return img
    N, H, W, C = img.shape
    out = np.zeros((N, H + 2 * pad, W + 2 * pad, C), dtype=img.dtype)
    out[:, pad : pad + H, pad : pad + W, :] = img
    return out


def _reuse(old: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``old`` when it is a C-contiguous array of this shape and dtype, else a new empty one.

    A training step's patch matrices are as large as the activations (45 MB for
    DeepConvNet's second layer); overwriting the last step's instead of allocating
    fresh ones spares the operating system's page faults and zero-filling each step.
    """
    if old is not None and old.shape == shape and old.dtype == dtype and old.flags.c_contiguous:
        return old
    return np.empty(shape, dtype=dtype)


def _patches(img: np.ndarray, filter_h: int, filter_w: int, stride: int) -> np.ndarray:
    """Every receptive field of img (N, Hp, Wp, C) as a view (N, OH, OW, FH, FW, C); no copy."""
    win = sliding_window_view(img, (filter_h, filter_w), axis=(1, 2))  # (N, ., ., C, FH, FW)
    return win[:, ::stride, ::stride].transpose(0, 1, 2, 4, 5, 3)


class Convolution(Layer):
    """2-D convolution (cross-correlation, as in every deep-learning library).

    W: (FN, C, FH, FW) filters, b: (FN,). x: (N, C, H, W) -> out: (N, FN, OH, OW)
    with ``OH = (H + 2 pad - FH) // stride + 1`` (likewise OW).
    ``backward`` stores ``dW`` (FN, C, FH, FW) and ``db`` (FN,) and returns dx (N, C, H, W).
    Computes in the dtype of ``x`` and ``W``; ``x`` may have any memory layout.

    ``input_grad=False`` is for a network's first layer, whose input (the images)
    needs no gradient: ``backward`` then stores ``dW`` and ``db`` only and returns
    None, saving the dx computation (PyTorch skips it the same way).
    """

    param_names = ("W", "b")
    cache_names = ("cols",)

    #: Patch rows are built and multiplied for a block of images at a time, each block's
    #: rows (about this many bytes) still in the CPU cache when the product reads them.
    block_bytes = 2**20

    def __init__(
        self,
        W: np.ndarray,
        b: np.ndarray,
        stride: int = 1,
        pad: int = 0,
        *,
        input_grad: bool = True,
    ) -> None:
        self.W = W
        self.b = b
        self.stride = stride
        self.pad = pad
        self.input_grad = input_grad
        self.x_shape: tuple[int, int, int, int] | None = None
        self.cols: list[np.ndarray] | None = None  # per block: (n*OH*OW, FH*FW*C) patches
        self.dW: np.ndarray | None = None
        self.db: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        FN, C, FH, FW = self.W.shape
        N, _, H, W = x.shape
        K = FH * FW * C
        dtype = np.result_type(x, self.W)
        col_W = self.W.transpose(2, 3, 1, 0).reshape(K, FN)
        self.x_shape = x.shape
        fast = kernels.fast() if dtype in _FAST_DTYPES else None
        if fast is not None:
            OH = (H + 2 * self.pad - FH) // self.stride + 1
            OW = (W + 2 * self.pad - FW) // self.stride + 1
            return self._forward_compiled(fast, x.transpose(0, 2, 3, 1), col_W, OH, OW, dtype)

        img = _pad_channels_last(x.transpose(0, 2, 3, 1), self.pad)  # (N, Hp, Wp, C)
        patches = _patches(img, FH, FW, self.stride)  # (N, OH, OW, FH, FW, C) view
        OH, OW = patches.shape[1:3]

        keep = keeps_caches()
        out = np.empty((N, OH, OW, FN), dtype=dtype)
        if C == 1:  # grey images: one patch matrix, bias included (see _grey_patches)
            col = self._grey_patches(patches, dtype)  # (N*OH*OW, K + 1)
            W_and_b = np.concatenate([col_W, self.b.reshape(1, FN)]).astype(dtype, copy=False)
            np.matmul(col, W_and_b, out=out.reshape(-1, FN))
            cols = [col]
        else:
            per_block = max(1, self.block_bytes // (OH * OW * K * dtype.itemsize))
            cols = []
            for start in range(0, N, per_block):
                block = slice(start, start + per_block)
                col = patches[block].reshape(-1, K)  # (n*OH*OW, K): the one copy
                np.matmul(col, col_W, out=out[block].reshape(-1, FN))
                if keep:  # inference drops each block's rows once multiplied
                    cols.append(col)
            # The bias of one whole image as a row: NumPy adds long rows ~4x faster than
            # it broadcasts b over rows of only FN numbers (out += b).
            per_image = out.reshape(N, OH * OW * FN)
            per_image += np.tile(self.b, OH * OW)

        self._cache(cols=cols)
        return out.transpose(0, 3, 1, 2)

    def _forward_compiled(
        self, fast, img: np.ndarray, col_W: np.ndarray, OH: int, OW: int, dtype: np.dtype
    ) -> np.ndarray:
        """forward with the compiled kernels; img: (N, H, W, C) view of x, unpadded."""
        FN, C, FH, FW = self.W.shape
        N = img.shape[0]
        K, s, p = FH * FW * C, self.stride, self.pad
        img = np.ascontiguousarray(img, dtype=dtype)  # NHWC memory: copied only if not already
        out = np.empty((N, OH, OW, FN), dtype=dtype)
        keep = keeps_caches()
        spare = self.cols if keep and self.cols else []  # the last pass's buffers, reused
        grey = C == 1  # the transposed patch matrix with a row of ones, as above
        if grey:
            col_W = np.concatenate([col_W, self.b.reshape(1, FN)])
            spare = [c.T for c in spare]
        col_W = col_W.astype(dtype, copy=False)
        b = self.b.astype(dtype, copy=False)
        per_block = max(1, self.block_bytes // (OH * OW * (K + grey) * dtype.itemsize))
        starts = range(0, N, per_block)
        cols: list[np.ndarray] = [None] * len(starts) if keep else []

        def work(share: range) -> None:  # one thread's blocks; serial kernels, 1-thread BLAS
            buffer = None
            for start in share:
                n, i = min(per_block, N - start), start // per_block
                shape = (K + 1, n * OH * OW) if grey else (n * OH * OW, K)
                if keep:
                    buffer = _reuse(spare[i] if i < len(spare) else None, shape, dtype)
                elif buffer is None or buffer.shape != shape:
                    buffer = np.empty(shape, dtype=dtype)
                rows = out[start : start + n].reshape(-1, FN)
                if grey:
                    fast.grey_patches(img[start : start + n, ..., 0], FH, FW, s, p, OH, OW, buffer)
                    buffer[K] = 1
                    np.matmul(buffer.T, col_W, out=rows)  # the bias comes with the row of ones
                else:
                    fast.im2col(img[start : start + n], FH, FW, s, p, OH, OW, buffer)
                    np.matmul(buffer, col_W, out=rows)
                    fast.add_bias(rows, b)
                if keep:
                    cols[i] = buffer.T if grey else buffer

        with threads.single_threaded_blas():  # also with one share: no 2-thread BLAS call
            threads.run_shares(work, starts)
        self._cache(cols=cols)
        return out.transpose(0, 3, 1, 2)

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        self._require_cache(self.cols)
        FN, C, FH, FW = self.W.shape
        N, _, H, W = self.x_shape
        OH, OW = dout.shape[2:]
        p = self.pad
        d = dout.transpose(0, 2, 3, 1).reshape(N * OH * OW, FN)  # free for channels-last dout
        dtype = np.result_type(d, self.W)
        K = FH * FW * C

        fast = kernels.fast() if dtype in _FAST_DTYPES else None
        if fast is not None:
            dW, db, dimg = self._backward_compiled(fast, d, dtype)
        else:
            dW, dimg = self._backward_numpy(d, dtype)
        if dW.shape[1] > K:  # grey images: the column of ones gave the bias gradient
            self.db = dW[:, K].copy()
            dW = dW[:, :K]
        elif fast is not None:  # summed by the threads with dW (no 2-thread BLAS call)
            self.db = db
        else:  # the sum over rows, as a product: several times faster than d.sum(axis=0)
            self.db = np.ones(len(d), dtype=d.dtype) @ d
        self.dW = np.ascontiguousarray(dW.reshape(FN, FH, FW, C).transpose(0, 3, 1, 2))
        if dimg is None:
            return None
        if fast is not None:
            return dimg.transpose(0, 3, 1, 2)
        return dimg[:, p : p + H, p : p + W, :].transpose(0, 3, 1, 2)

    def _backward_numpy(
        self, d: np.ndarray, dtype: np.dtype
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """dW (FN, K or K + 1) and the padded image gradient (N, Hp, Wp, C) or None."""
        N, _, H, W = self.x_shape
        rows = len(d) // N  # OH * OW
        p = self.pad
        dW = np.zeros((self.W.shape[0], self.cols[0].shape[1]), dtype=dtype)
        dimg = None
        if self.input_grad:
            dimg = np.zeros((N, H + 2 * p, W + 2 * p, self.W.shape[1]), dtype=dtype)
        W_by_offset = self.W.transpose(2, 3, 0, 1).copy()  # (FH, FW, FN, C), contiguous blocks
        start = 0
        for col in self.cols:  # the blocks of images of forward, small enough for the cache
            n = len(col) // rows
            d_block = d[start * rows : (start + n) * rows]
            dW += d_block.T @ col
            if dimg is not None:
                self._add_input_grad(dimg[start : start + n], d_block, W_by_offset)
            start += n
        return dW, dimg

    def _backward_compiled(
        self, fast, d: np.ndarray, dtype: np.dtype
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """backward with the compiled kernels, the blocks shared out over the threads.

        Returns dW (FN, K or K + 1), db (FN,) and the image gradient (N, H, W, C) or
        None. Each thread sums its own blocks' ``dW`` and ``db``; the image gradient of a block is ``dcol =
        d @ W`` scattered back by ``col2im`` (the border skipped: no padded image).
        """
        FN, C, FH, FW = self.W.shape
        N, _, H, W = self.x_shape
        OH = (H + 2 * self.pad - FH) // self.stride + 1
        OW = (W + 2 * self.pad - FW) // self.stride + 1
        rows = OH * OW
        dimg = np.empty((N, H, W, C), dtype=dtype) if self.input_grad else None
        W_T = self.W.transpose(0, 2, 3, 1).reshape(FN, FH * FW * C).astype(dtype, copy=False)
        blocks, start = [], 0
        for col in self.cols:
            blocks.append((start, col))
            start += len(col) // rows
        sums: list[tuple[np.ndarray, np.ndarray]] = []
        ones = np.ones(max(len(c) for c in self.cols), dtype=dtype)

        def work(share: list[tuple[int, np.ndarray]]) -> None:  # serial kernels, 1-thread BLAS
            dW = np.zeros((FN, self.cols[0].shape[1]), dtype=dtype)
            db = np.zeros(FN, dtype=dtype)
            part, part_T, dcol = np.empty_like(dW), np.empty_like(dW.T), None
            for start, col in share:
                n = len(col) // rows
                d_block = d[start * rows : (start + n) * rows]
                if col.T.flags.c_contiguous:  # grey images: colT is stored; colT @ d is ~25% faster
                    dW += np.matmul(col.T, d_block, out=part_T).T
                else:
                    dW += np.matmul(d_block.T, col, out=part)
                db += ones[: len(d_block)] @ d_block
                if dimg is not None:
                    if dcol is None or len(dcol) != len(d_block):  # one buffer per thread
                        dcol = np.empty((len(d_block), FH * FW * C), dtype=dtype)
                    np.matmul(d_block, W_T, out=dcol)  # (n*OH*OW, K): every patch's gradient
                    s, p = self.stride, self.pad
                    fast.col2im(dcol, FH, FW, s, p, OH, OW, dimg[start : start + n])
            sums.append((dW, db))

        with threads.single_threaded_blas():  # also with one share: no 2-thread BLAS call
            threads.run_shares(work, blocks)
        dW, db = sums[0]
        for more_dW, more_db in sums[1:]:
            dW += more_dW
            db += more_db
        return dW, db, dimg

    @staticmethod
    def _grey_patches(patches: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """Patch matrix for one input channel, with a column of ones for the bias.

        patches: (N, OH, OW, FH, FW, 1) view -> (N*OH*OW, FH*FW + 1), stored transposed:
        row (i, j) of the (FH*FW + 1, N*OH*OW) array holds what kernel offset (i, j)
        sees in every output position, copied in runs of OW numbers (a patch row of
        one channel has only FW). The last row is ones, so the product with
        ``[W; b]`` adds the bias and the product with the output gradient gives ``db``.
        """
        N, OH, OW, FH, FW, _ = patches.shape
        K = FH * FW
        colT = np.empty((K + 1, N * OH * OW), dtype=dtype)
        colT[:K].reshape(FH, FW, N, OH, OW)[...] = patches[..., 0].transpose(3, 4, 0, 1, 2)
        colT[K] = 1
        return colT.T

    def _add_input_grad(self, dimg: np.ndarray, d: np.ndarray, W_by_offset: np.ndarray) -> None:
        """Add the gradient of a block of padded images, dimg: (n, Hp, Wp, C), in place.

        d: (n*OH*OW, FN), the output gradients of the block; W_by_offset: (FH, FW, FN, C).
        Offset (i, j) of the kernel read pixel (i + s*oh, j + s*ow) of the padded image for
        output (oh, ow) through the weights W[:, :, i, j]; the gradient goes back that way.
        """
        FH, FW, FN, C = W_by_offset.shape
        n, s = dimg.shape[0], self.stride
        OH = (dimg.shape[1] - FH) // s + 1
        OW = (dimg.shape[2] - FW) // s + 1
        if C == 1:  # grey images: one product gives every offset's gradient as a row
            rows = W_by_offset.reshape(FH * FW, FN) @ d.T  # (FH*FW, n*OH*OW)
        for i in range(FH):
            for j in range(FW):
                if C == 1:
                    grad = rows[i * FW + j].reshape(n, OH, OW, 1)
                else:
                    grad = (d @ W_by_offset[i, j]).reshape(n, OH, OW, C)
                dimg[:, i : i + s * OH : s, j : j + s * OW : s, :] += grad
