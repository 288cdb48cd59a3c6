"""Winograd F(2x2, 3x3) (course_lib.layers.winograd) computes the convolution and its gradients.

The algorithm is checked in float64, where it must agree with the NumPy reference layer
to 1e-12 (any mistake in a transform or its adjoint shows as an O(1) error), on shapes
whose tiles hang over the output (odd sizes), with pad 0, 1 and 2, several blocks and
threads. In float32 (training) the layer takes it on its own; the result must stay as
close to a float64 reference as the patch path's.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from course_lib import kernels, threads
from course_lib.layers import Convolution, winograd

SHAPES = [
    # (N, C, H, W), FN, pad
    ((3, 2, 6, 6), 4, 1),
    ((2, 5, 7, 9), 3, 1),  # odd output sizes: the last tiles hang over
    ((2, 4, 9, 8), 6, 0),
    ((4, 3, 8, 8), 2, 2),  # pad 2: outputs larger than the image (DeepConvNet's fourth)
    ((1, 16, 5, 5), 16, 1),
]


def reference(x, W, b, pad, dout):
    """out, dx, dW, db of the NumPy reference layer (float64)."""
    before = kernels.active()
    kernels.use_kernels("numpy")
    try:
        layer = Convolution(W, b, 1, pad)
        out = layer.forward(x)
        dx = layer.backward(dout)
    finally:
        kernels.use_kernels(before)
    return out, dx, layer.dW, layer.db


@pytest.mark.parametrize(("xs", "FN", "pad"), SHAPES)
@pytest.mark.parametrize("block_bytes", [1, 2**20])  # one image per block / one block
@pytest.mark.parametrize("n_threads", [1, 2])
def test_float64_agrees_with_the_reference(rng, xs, FN, pad, block_bytes, n_threads):
    x = rng.standard_normal(xs)
    W, b = rng.standard_normal((FN, xs[1], 3, 3)), rng.standard_normal(FN)
    OH, OW = xs[2] + 2 * pad - 2, xs[3] + 2 * pad - 2
    dout = rng.standard_normal((xs[0], FN, OH, OW))
    out_ref, dx_ref, dW_ref, db_ref = reference(x, W, b, pad, dout)

    img = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    d = np.ascontiguousarray(dout.transpose(0, 2, 3, 1))
    out = np.full((xs[0], OH, OW, FN), np.nan)
    dimg = np.full(img.shape, np.nan)  # written whole: no NaN may survive
    before = threads.threads()
    threads.set_threads(n_threads)
    try:
        fast = kernels.compiled()
        winograd.forward(fast, img, W, b, pad, out, block_bytes)
        dW, db = winograd.backward(fast, img, d, W, pad, dimg, block_bytes)
        dW_only, _ = winograd.backward(fast, img, d, W, pad, None, block_bytes)
    finally:
        threads.set_threads(before)
    np.testing.assert_allclose(out.transpose(0, 3, 1, 2), out_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dimg.transpose(0, 3, 1, 2), dx_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dW, dW_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, db_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(dW_only, dW)


def test_which_layers_use_it():
    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
    assert winograd.applies(np.empty((16, 16, 3, 3)), 1, f32)  # DeepConvNet's 3x3 layers
    assert not winograd.applies(np.empty((16, 16, 3, 3)), 1, f64)  # gradient checks: exact path
    assert not winograd.applies(np.empty((16, 1, 3, 3)), 1, f32)  # grey images: their own path
    assert not winograd.applies(np.empty((16, 16, 3, 3)), 2, f32)  # stride 2
    assert not winograd.applies(np.empty((30, 3, 5, 5)), 1, f32)  # 5x5


def test_float32_layer_is_as_close_to_float64_as_the_patch_path(rng):
    """DeepConvNet's second layer in float32: Winograd's error against float64 stays small."""
    x = rng.standard_normal((8, 16, 28, 28))
    W, b = 0.1 * rng.standard_normal((16, 16, 3, 3)), 0.1 * rng.standard_normal(16)
    dout = rng.standard_normal((8, 16, 28, 28))
    exact = reference(x, W, b, 1, dout)

    def run(name):
        before = kernels.active()
        kernels.use_kernels(name)
        try:
            layer = Convolution(W.astype(np.float32), b.astype(np.float32), 1, 1)
            out = layer.forward(x.astype(np.float32))
            dx = layer.backward(dout.astype(np.float32))
        finally:
            kernels.use_kernels(before)
        return out, dx, layer.dW, layer.db

    for name in ("numpy", "numba"):
        for got, want, what in zip(run(name), exact, ("out", "dx", "dW", "db"), strict=True):
            assert got.dtype == np.float32, what
            error = np.abs(got - want).max() / np.abs(want).max()
            assert error < 2e-6, f"{name} {what}: largest error {error:.1e} of the largest value"
