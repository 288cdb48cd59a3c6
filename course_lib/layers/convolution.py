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
installed) the same algorithm runs with compiled kernels for the copies: the patch
copy (zero padding included, so the padded image is never built), the bias add,
and the input gradient as one product ``dcol = d @ W`` followed by a scatter
(``col2im``) of ``dcol`` into the image. Each thread takes its own blocks of
images (:func:`course_lib.threads.run_shares`). The forward pass keeps the image,
not its patches: the backward pass builds each block's patches again while they
fit in the cache, cheaper than storing nine copies of the image and reading them
back. 3x3 filters with stride 1 in float32 run as Winograd's F(2x2, 3x3)
(:mod:`course_lib.layers.winograd`, 2.25x fewer multiplications). The NumPy code
below is the reference all of them are tested against.

During inference (``Network.predict``) the layer keeps no patch matrices: each
block's rows are dropped once multiplied.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from course_lib import kernels, threads
from course_lib.layers import winograd
from course_lib.layers.base import Layer, image_blocks, keeps_caches, reused

_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _pad_channels_last(img: np.ndarray, pad: int) -> np.ndarray:
    """img: (N, H, W, C) -> (N, H + 2 pad, W + 2 pad, C), zero border (no copy when pad == 0)."""
    if not pad:
        return img
    N, H, W, C = img.shape
    out = np.zeros((N, H + 2 * pad, W + 2 * pad, C), dtype=img.dtype)
    out[:, pad : pad + H, pad : pad + W, :] = img
    return out


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
    cache_names = ("cols", "img")

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
        self.cols: list[np.ndarray] | None = None  # NumPy path, per block: (n*OH*OW, K) patches
        self.img: np.ndarray | None = None  # compiled path: x as (N, H, W, C)
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

        self._cache(cols=cols, img=None)
        return out.transpose(0, 3, 1, 2)

    def _forward_compiled(
        self, fast, img: np.ndarray, col_W: np.ndarray, OH: int, OW: int, dtype: np.dtype
    ) -> np.ndarray:
        """forward with the compiled kernels; img: (N, H, W, C) view of x, unpadded.

        Keeps the image (channels-last), not its patch matrix: ``backward`` builds each
        block's patches again, in a buffer still in the CPU cache, which costs less than
        writing nine copies of the image to memory here and reading them back there.
        """
        FN, C, FH, FW = self.W.shape
        N = img.shape[0]
        K = FH * FW * C
        img = np.ascontiguousarray(img, dtype=dtype)  # NHWC memory: copied only if not already
        out = np.empty((N, OH, OW, FN), dtype=dtype)
        self._cache(cols=None, img=img)
        if winograd.applies(self.W, self.stride, dtype):
            W, b = self.W.astype(dtype, copy=False), self.b.astype(dtype, copy=False)
            winograd.forward(fast, img, W, b, self.pad, out, self.block_bytes)
            return out.transpose(0, 3, 1, 2)
        grey = C == 1  # the transposed patch matrix with a row of ones, as above
        if grey:
            col_W = np.concatenate([col_W, self.b.reshape(1, FN)])
        col_W = col_W.astype(dtype, copy=False)
        b = self.b.astype(dtype, copy=False)

        def work(share: range) -> None:  # one thread's blocks; serial kernels, 1-thread BLAS
            buffer = None
            for start, n in share:
                buffer = self._block_patches(fast, img, start, n, OH, OW, buffer)
                rows = out[start : start + n].reshape(-1, FN)
                if grey:
                    np.matmul(buffer.T, col_W, out=rows)  # the bias comes with the row of ones
                else:
                    np.matmul(buffer, col_W, out=rows)
                    fast.add_bias(rows, b)

        image_bytes = OH * OW * (K + grey) * dtype.itemsize  # one image's patch rows
        threads.run_shares(work, image_blocks(N, image_bytes, self.block_bytes))
        return out.transpose(0, 3, 1, 2)

    def _block_patches(
        self, fast, img: np.ndarray, start: int, n: int, OH: int, OW: int, buffer
    ) -> np.ndarray:
        """The patch matrix of images ``start:start + n`` of img (N, H, W, C), into ``buffer``.

        (n*OH*OW, FH*FW*C); for one channel (FH*FW + 1, n*OH*OW) with a last row of ones.
        ``buffer`` is reused when it has the shape, else a new one is returned.
        """
        FN, C, FH, FW = self.W.shape
        K, s, p = FH * FW * C, self.stride, self.pad
        shape = (K + 1, n * OH * OW) if C == 1 else (n * OH * OW, K)
        buffer = reused(buffer, shape, img.dtype)
        if C == 1:
            fast.grey_patches(img[start : start + n, ..., 0], FH, FW, s, p, OH, OW, buffer)
            buffer[K] = 1
        else:
            fast.im2col(img[start : start + n], FH, FW, s, p, OH, OW, buffer)
        return buffer

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        compiled = self.img is not None  # the forward pass ran the compiled kernels
        self._require_cache(self.img if compiled else self.cols)
        FN, C, FH, FW = self.W.shape
        N, _, H, W = self.x_shape
        OH, OW = dout.shape[2:]
        p = self.pad
        d = dout.transpose(0, 2, 3, 1).reshape(N * OH * OW, FN)  # free for channels-last dout
        dtype = np.result_type(d, self.W)
        K = FH * FW * C

        if compiled and winograd.applies(self.W, self.stride, dtype):
            d = np.ascontiguousarray(d.reshape(N, OH, OW, FN), dtype=dtype)  # d is channels-last
            dimg = np.empty((N, H, W, C), dtype=dtype) if self.input_grad else None
            filters, img = self.W.astype(dtype, copy=False), self.img.astype(dtype, copy=False)
            self.dW, self.db = winograd.backward(
                kernels.compiled(), img, d, filters, p, dimg, self.block_bytes
            )
            return None if dimg is None else dimg.transpose(0, 3, 1, 2)
        if compiled:
            dW, db, dimg = self._backward_compiled(kernels.compiled(), d, dtype)
        else:
            dW, dimg = self._backward_numpy(d, dtype)
        if dW.shape[1] > K:  # grey images: the column of ones gave the bias gradient
            self.db = dW[:, K].copy()
            dW = dW[:, :K]
        elif compiled:  # summed by the threads with dW (no 2-thread BLAS call)
            self.db = db
        else:  # the sum over rows, as a product: several times faster than d.sum(axis=0)
            self.db = np.ones(len(d), dtype=d.dtype) @ d
        self.dW = np.ascontiguousarray(dW.reshape(FN, FH, FW, C).transpose(0, 3, 1, 2))
        if dimg is None:
            return None
        if compiled:
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
        None. Each block's patches are built again from the kept image; each thread sums
        its own blocks' ``dW`` and ``db``; the image gradient of a block is ``dcol =
        d @ W`` scattered back by ``col2im`` (the border skipped: no padded image).
        """
        FN, C, FH, FW = self.W.shape
        N, _, H, W = self.x_shape
        OH = (H + 2 * self.pad - FH) // self.stride + 1
        OW = (W + 2 * self.pad - FW) // self.stride + 1
        rows, K, grey = OH * OW, FH * FW * C, C == 1
        img = self.img.astype(dtype, copy=False)
        dimg = np.empty((N, H, W, C), dtype=dtype) if self.input_grad else None
        W_T = self.W.transpose(0, 2, 3, 1).reshape(FN, K).astype(dtype, copy=False)
        blocks = image_blocks(N, rows * (K + grey) * dtype.itemsize, self.block_bytes)
        ones = np.ones(blocks[0][1] * rows, dtype=dtype)  # rows of the largest block

        def work(share: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
            dW = np.zeros((FN, K + grey), dtype=dtype)
            db = np.zeros(FN, dtype=dtype)
            part, part_T, col = np.empty_like(dW), np.empty_like(dW.T), None
            for start, n in share:
                col = self._block_patches(fast, img, start, n, OH, OW, col)
                d_block = d[start * rows : (start + n) * rows]
                if grey:  # colT is stored; colT @ d is ~25% faster
                    dW += np.matmul(col, d_block, out=part_T).T
                else:
                    dW += np.matmul(d_block.T, col, out=part)
                db += ones[: len(d_block)] @ d_block
                if dimg is not None:  # the patches are done with: their buffer takes dcol
                    dcol = col if not grey else np.empty((len(d_block), K), dtype=dtype)
                    np.matmul(d_block, W_T, out=dcol)  # (n*OH*OW, K): every patch's gradient
                    s, p = self.stride, self.pad
                    fast.col2im(dcol, FH, FW, s, p, OH, OW, dimg[start : start + n])
            return dW, db  # this thread's sums

        dW, db = (sum(parts) for parts in zip(*threads.run_shares(work, blocks), strict=True))
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
