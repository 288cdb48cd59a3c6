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
* ``wino_input`` / ``wino_output`` and their adjoints: the four transforms of the
  Winograd F(2x2, 3x3) convolution (:mod:`course_lib.layers.winograd`), serial like the
  patch kernels. Their sums are rearranged (that is the algorithm), so their results
  agree with the reference to rounding, not bit for bit.
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
    "wino_input",
    "wino_input_adjoint",
    "wino_output",
    "wino_output_adjoint",
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
def wino_input(img, p, TH, TW, V):  # pragma: no cover - compiled
    """img: (n, H, W, C) unpadded -> V: (16, n*TH*TW, C), ``B^T d B`` of every 4x4 tile.

    Tile (b, ty, tx) starts at pixel (2 ty - p, 2 tx - p); pixels outside the image are 0.
    """
    n, H, W, C = img.shape
    d = np.empty((4, 4, C), dtype=img.dtype)
    t = np.empty((4, 4, C), dtype=img.dtype)
    tile = 0
    for b in range(n):
        for ty in range(TH):
            for tx in range(TW):
                y0 = 2 * ty - p
                x0 = 2 * tx - p
                for i in range(4):
                    y = y0 + i
                    for j in range(4):
                        x = x0 + j
                        dij = d[i, j]
                        if 0 <= y < H and 0 <= x < W:
                            src = img[b, y, x]
                            for c in range(C):
                                dij[c] = src[c]
                        else:
                            for c in range(C):
                                dij[c] = 0
                for j in range(4):  # t = B^T d (rows)
                    d0, d1, d2, d3 = d[0, j], d[1, j], d[2, j], d[3, j]
                    t0, t1, t2, t3 = t[0, j], t[1, j], t[2, j], t[3, j]
                    for c in range(C):
                        t0[c] = d0[c] - d2[c]
                        t1[c] = d1[c] + d2[c]
                        t2[c] = d2[c] - d1[c]
                        t3[c] = d1[c] - d3[c]
                for i in range(4):  # V = t B (columns)
                    s0, s1, s2, s3 = t[i, 0], t[i, 1], t[i, 2], t[i, 3]
                    v0, v1, v2, v3 = (
                        V[4 * i, tile],
                        V[4 * i + 1, tile],
                        V[4 * i + 2, tile],
                        V[4 * i + 3, tile],
                    )
                    for c in range(C):
                        v0[c] = s0[c] - s2[c]
                        v1[c] = s1[c] + s2[c]
                        v2[c] = s2[c] - s1[c]
                        v3[c] = s1[c] - s3[c]
                tile += 1


@_serial
def wino_output(M, TH, TW, bias, out):  # pragma: no cover - compiled
    """M: (16, n*TH*TW, FN) -> out: (n, OH, OW, FN) = A^T m A + bias of every tile (the part inside)."""
    n, OH, OW, FN = out.shape
    t = np.empty((2, 4, FN), dtype=out.dtype)
    tile = 0
    for b in range(n):
        for ty in range(TH):
            for tx in range(TW):
                for j in range(4):  # t = A^T m (rows)
                    m0, m1, m2, m3 = M[j, tile], M[4 + j, tile], M[8 + j, tile], M[12 + j, tile]
                    u0, u1 = t[0, j], t[1, j]
                    for f in range(FN):
                        u0[f] = m0[f] + m1[f] + m2[f]
                        u1[f] = m1[f] - m2[f] - m3[f]
                for r in range(2):
                    y = 2 * ty + r
                    if y >= OH:
                        continue
                    s0, s1, s2, s3 = t[r, 0], t[r, 1], t[r, 2], t[r, 3]
                    o0 = out[b, y, 2 * tx]
                    for f in range(FN):
                        o0[f] = s0[f] + s1[f] + s2[f] + bias[f]
                    if 2 * tx + 1 < OW:
                        o1 = out[b, y, 2 * tx + 1]
                        for f in range(FN):
                            o1[f] = s1[f] - s2[f] - s3[f] + bias[f]
                tile += 1


@_serial
def wino_output_adjoint(dout, TH, TW, dM):  # pragma: no cover - compiled
    """dout: (n, OH, OW, FN) -> dM: (16, n*TH*TW, FN) = A dy A^T of every tile (zeros outside)."""
    n, OH, OW, FN = dout.shape
    dy = np.empty((2, 2, FN), dtype=dout.dtype)
    u = np.empty((4, 2, FN), dtype=dout.dtype)
    tile = 0
    for b in range(n):
        for ty in range(TH):
            for tx in range(TW):
                for r in range(2):
                    for s in range(2):
                        y, x = 2 * ty + r, 2 * tx + s
                        g = dy[r, s]
                        if y < OH and x < OW:
                            src = dout[b, y, x]
                            for f in range(FN):
                                g[f] = src[f]
                        else:
                            for f in range(FN):
                                g[f] = 0
                for s in range(2):  # u = A dy (rows): A = [[1,0],[1,1],[1,-1],[0,-1]]
                    a, c = dy[0, s], dy[1, s]
                    u0, u1, u2, u3 = u[0, s], u[1, s], u[2, s], u[3, s]
                    for f in range(FN):
                        u0[f] = a[f]
                        u1[f] = a[f] + c[f]
                        u2[f] = a[f] - c[f]
                        u3[f] = -c[f]
                for i in range(4):  # dM = u A^T (columns)
                    a, c = u[i, 0], u[i, 1]
                    m0, m1, m2, m3 = (
                        dM[4 * i, tile],
                        dM[4 * i + 1, tile],
                        dM[4 * i + 2, tile],
                        dM[4 * i + 3, tile],
                    )
                    for f in range(FN):
                        m0[f] = a[f]
                        m1[f] = a[f] + c[f]
                        m2[f] = a[f] - c[f]
                        m3[f] = -c[f]
                tile += 1


@_serial
def wino_input_adjoint(dV, p, TH, TW, dimg):  # pragma: no cover - compiled
    """dV: (16, n*TH*TW, C) -> dimg: (n, H, W, C) = the sum of B dv B^T over the tiles (written whole)."""
    n, H, W, C = dimg.shape
    g = np.empty((4, 4, C), dtype=dimg.dtype)
    t = np.empty((4, 4, C), dtype=dimg.dtype)
    tile = 0
    for b in range(n):
        dimg[b] = 0
        for ty in range(TH):
            for tx in range(TW):
                for i in range(4):  # t = dv B^T (columns): the adjoint of V = t B
                    v0, v1, v2, v3 = (
                        dV[4 * i, tile],
                        dV[4 * i + 1, tile],
                        dV[4 * i + 2, tile],
                        dV[4 * i + 3, tile],
                    )
                    t0, t1, t2, t3 = t[i, 0], t[i, 1], t[i, 2], t[i, 3]
                    for c in range(C):
                        t0[c] = v0[c]
                        t1[c] = v1[c] - v2[c] + v3[c]
                        t2[c] = v1[c] + v2[c] - v0[c]
                        t3[c] = -v3[c]
                for j in range(4):  # g = B t (rows): the adjoint of t = B^T d
                    a0, a1, a2, a3 = t[0, j], t[1, j], t[2, j], t[3, j]
                    g0, g1, g2, g3 = g[0, j], g[1, j], g[2, j], g[3, j]
                    for c in range(C):
                        g0[c] = a0[c]
                        g1[c] = a1[c] - a2[c] + a3[c]
                        g2[c] = a1[c] + a2[c] - a0[c]
                        g3[c] = -a3[c]
                y0 = 2 * ty - p
                x0 = 2 * tx - p
                for i in range(4):
                    y = y0 + i
                    if y < 0 or y >= H:
                        continue
                    for j in range(4):
                        x = x0 + j
                        if x < 0 or x >= W:
                            continue
                        dst = dimg[b, y, x]
                        src = g[i, j]
                        for c in range(C):
                            dst[c] += src[c]
                tile += 1


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
