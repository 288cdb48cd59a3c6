"""Compiled, parallel kernels for the layers' hot loops (Numba). Import through ``kernels.fast()``.

Each kernel does one of the NumPy reference's element-wise steps in a single
pass over memory, split over the threads of :mod:`course_lib.threads`; matrix
products stay with BLAS. They give the reference's values: the same operations
in the same dtype and order (no fast-math, so no fused multiply-adds), except
where noted. Layouts are channels-last, ``(N, H, W, C)``, as in the layers.

* ``relu_forward`` / ``relu_backward``: ``max(x, 0)`` and the book's mask
  ``x <= 0`` in one pass; ``dout`` where the mask is False, ``dout * 0`` where True.
* ``maxpool_forward`` / ``maxpool_backward``: the window maximum and the offset of
  its first occurrence (int8, -1 for a NaN window, whose gradient is 0 as in the
  reference); the gradient goes back to that offset.
* ``im2col`` / ``grey_patches``: the convolution's patch matrix, zero padding
  included (no padded copy of the image); ``col2im``: adds the patch gradients
  back into the image (the adjoint); ``add_bias``: ``out += b`` row by row. These
  four are serial: the convolution gives each thread its own blocks of images
  (:func:`course_lib.threads.run_shares`), a block being too little work to split.
* ``adam``: Adam's three updates of one parameter in one pass.

Inner loops run over 1-D slices from index 0: Numba then knows no index is
negative, drops its wrap-around checks and vectorises the loop (4-15x here).

Compiled on first use for the dtypes met, cached on disk (``cache=True``, folder:
``course_lib.kernels.cache_dir()``), so later processes load them in milliseconds.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import numba as nb
import numpy as np
from numba import prange

__all__ = [
    "adam",
    "add_bias",
    "col2im",
    "grey_patches",
    "im2col",
    "maxpool_backward",
    "maxpool_forward",
    "relu_backward",
    "relu_forward",
]


def _parallel(f: Callable) -> Callable:
    """Compile ``f`` twice, lazily: parallel for float32 arrays (training), serial otherwise.

    float64 is what gradient checks use, on small inputs: a serial kernel is as fast
    there and compiles about three times faster than a parallel one (Numba's parfor
    passes), which keeps the first use of a chapter short. With one thread the serial
    kernel runs too, on the calling thread: a parallel kernel would hand its work to
    a pool thread and wait for it to be scheduled (measured: 0.56 ms of work took
    6.8 ms of wall time on a busy machine). Both are cached on disk under their own names.
    """
    parallel = nb.njit(parallel=True, cache=True, nogil=True)(f)
    copy = types.FunctionType(f.__code__, f.__globals__, f.__name__ + "_serial")
    copy.__qualname__ = f.__qualname__ + "_serial"
    copy.__doc__ = f.__doc__
    serial = nb.njit(cache=True, nogil=True)(copy)

    def run(first, *args):
        wide = first.dtype == np.float32 and nb.get_num_threads() > 1
        return (parallel if wide else serial)(first, *args)

    run.__name__, run.__qualname__, run.__doc__ = f.__name__, f.__qualname__, f.__doc__
    run.parallel, run.serial = parallel, serial
    return run


#: The convolution's kernels run on one block of images at a time, each thread its own
#: blocks (``threads.run_shares``): they are compiled serial only.
_serial = nb.njit(cache=True, nogil=True)

#: Elements per task of the flat element-wise kernels (a few pages each).
CHUNK = 1 << 14


@_parallel
def relu_forward(x, out, mask):  # pragma: no cover - compiled
    """x, out, mask: 1-D (the same memory order). out = max(x, 0) as np.maximum; mask = x <= 0."""
    n = x.size
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        xs, os, ms = x[lo:hi], out[lo:hi], mask[lo:hi]
        for i in range(hi - lo):
            v = xs[i]
            ms[i] = v <= 0
            # as np.maximum(v, zeros): NaN stays NaN, -0.0 becomes 0.0
            os[i] = v if (v > 0 or v != v) else 0


@_parallel
def relu_backward(dout, mask, dx):  # pragma: no cover - compiled
    """1-D arrays: dx = dout * ~mask (a blocked position gives dout * 0: 0, -0 or NaN)."""
    n = dout.size
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        ds, ms, xs = dout[lo:hi], mask[lo:hi], dx[lo:hi]
        for i in range(hi - lo):
            d = ds[i]
            xs[i] = d * 0 if ms[i] else d


@_parallel
def maxpool_forward(x, ph, pw, s, out, arg):  # pragma: no cover - compiled
    """x: (N, H, W, C) -> out, arg: (N, OH, OW, C); arg = window offset of the first maximum."""
    N, OH, OW, C = out.shape
    for n in prange(N):
        for oh in range(OH):
            for ow in range(OW):
                o = out[n, oh, ow]
                a = arg[n, oh, ow]
                first = x[n, oh * s, ow * s]
                for c in range(C):
                    o[c] = first[c]
                    a[c] = 0
                for i in range(ph):
                    for j in range(pw):
                        if i == 0 and j == 0:
                            continue
                        k = i * pw + j
                        xs = x[n, oh * s + i, ow * s + j]
                        for c in range(C):  # selects, not branches: the loop vectorises
                            v = xs[c]
                            m = o[c]
                            take = v > m or v != v  # NaN wins, as in np.maximum
                            o[c] = v if take else m
                            a[c] = k if take else a[c]
                for c in range(C):
                    if o[c] != o[c]:  # NaN window: no gradient, as in the reference
                        a[c] = -1


@_parallel
def maxpool_backward(dout, arg, ph, pw, s, tiles, dx):  # pragma: no cover - compiled
    """dout, arg: (N, OH, OW, C); dx: (N, H, W, C) written whole (``tiles``: windows tile it)."""
    N, OH, OW, C = dout.shape
    for n in prange(N):
        if not tiles:
            dx[n] = 0
        for oh in range(OH):
            for ow in range(OW):
                d = dout[n, oh, ow]
                a = arg[n, oh, ow]
                for i in range(ph):
                    for j in range(pw):
                        k = i * pw + j
                        g = dx[n, oh * s + i, ow * s + j]
                        if tiles:
                            for c in range(C):
                                g[c] = d[c] if a[c] == k else 0
                        else:
                            for c in range(C):
                                if a[c] == k:
                                    g[c] += d[c]


@_serial
def im2col(img, FH, FW, s, p, OH, OW, col):  # pragma: no cover - compiled
    """img: (n, H, W, C) unpadded -> col: (n*OH*OW, FH*FW*C), patch order (fh, fw, c), zeros outside."""
    n, H, W, C = img.shape
    for r in range(n * OH):
        b = r // OH
        oh = r % OH
        for ow in range(OW):
            row = col[r * OW + ow]
            for i in range(FH):
                y = oh * s + i - p
                for j in range(FW):
                    xx = ow * s + j - p
                    dst = row[(i * FW + j) * C : (i * FW + j + 1) * C]
                    if 0 <= y < H and 0 <= xx < W:
                        src = img[b, y, xx]
                        for c in range(C):
                            dst[c] = src[c]
                    else:
                        for c in range(C):
                            dst[c] = 0


@_serial
def grey_patches(img, FH, FW, s, p, OH, OW, colT):  # pragma: no cover - compiled
    """img: (N, H, W) -> colT[k, n*OH*OW + oh*OW + ow] for k = (fh, fw) < FH*FW; zeros outside."""
    N, H, W = img.shape
    for t in range(FH * FW * N):
        k = t // N
        b = t % N
        i = k // FW
        j = k % FW
        dst_img = colT[k, b * OH * OW : (b + 1) * OH * OW]
        for oh in range(OH):
            y = oh * s + i - p
            dst = dst_img[oh * OW : (oh + 1) * OW]
            if y < 0 or y >= H:
                for ow in range(OW):
                    dst[ow] = 0
                continue
            src = img[b, y]
            for ow in range(OW):
                xx = ow * s + j - p
                dst[ow] = src[xx] if 0 <= xx < W else 0


@_serial
def col2im(dcol, FH, FW, s, p, OH, OW, dimg):  # pragma: no cover - compiled
    """dcol: (n*OH*OW, FH*FW*C) -> dimg: (n, H, W, C) = the sum of every patch's share (written whole).

    A patch's kernel row ``i`` covers ``FW`` neighbouring pixels of one image row, which
    are ``FW * C`` neighbouring numbers of dimg: each is added as one run (the columns
    outside the image left out), 25-37% faster than pixel by pixel.
    """
    n, H, W, C = dimg.shape
    flat = dimg.reshape(n, H, W * C)
    RW = FW * C
    for b in range(n):
        dimg[b] = 0
        for oh in range(OH):
            for ow in range(OW):
                row = dcol[(b * OH + oh) * OW + ow]
                x0 = ow * s - p
                j0 = max(0, -x0)
                j1 = min(FW, W - x0)
                if j1 <= j0:
                    continue
                for i in range(FH):
                    y = oh * s + i - p
                    if y < 0 or y >= H:
                        continue
                    src = row[i * RW + j0 * C : i * RW + j1 * C]
                    dst = flat[b, y, (x0 + j0) * C : (x0 + j1) * C]
                    for k in range(src.size):
                        dst[k] += src[k]


@_serial
def add_bias(out, b):  # pragma: no cover - compiled
    """out: (rows, FN) += b: (FN,)."""
    rows, FN = out.shape
    step = max(1, CHUNK // max(FN, 1))
    for c in range((rows + step - 1) // step):
        for r in range(c * step, min(rows, (c + 1) * step)):
            o = out[r]
            for f in range(FN):
                o[f] += b[f]


@_parallel
def adam(p, g, m, v, one_minus_b1, one_minus_b2, lr_t, eps):  # pragma: no cover - compiled
    """1-D, in place: m += (1-b1)(g-m); v += (1-b2)(g²-v); p -= lr_t m / (sqrt(v) + eps).

    The scalars come in the parameters' dtype, so the arithmetic is the reference's.
    """
    n = p.size
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        ps, gs, ms, vs = p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi]
        for i in range(hi - lo):
            gi = gs[i]
            mi = ms[i] + one_minus_b1 * (gs[i] - ms[i])
            vi = vs[i] + one_minus_b2 * (gi * gi - vs[i])
            ms[i] = mi
            vs[i] = vi
            ps[i] -= lr_t * mi / (np.sqrt(vi) + eps)
