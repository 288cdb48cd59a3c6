"""The speed-tuned Convolution / Pooling agree with the plain book-style layers.

The gradient checks in test_layers.py use tiny inputs; these compare the tuned
layers with ``benchmarks/book_baseline.py`` on inputs big enough to take every
code path: several image blocks, one and many input channels, strides, padding,
inputs and gradients in either memory layout, float32 and float64.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from course_lib import kernels
from course_lib.layers import Convolution, Pooling

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import book_baseline


def channels_last(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


CONV = [
    # (x shape, W shape, stride, pad)
    ((7, 1, 12, 12), (5, 1, 5, 5), 1, 0),  # grey input: the one-product backward
    ((7, 3, 10, 9), (4, 3, 3, 3), 1, 1),
    ((5, 4, 11, 11), (6, 4, 3, 2), 2, 2),
    ((6, 8, 8, 8), (8, 8, 1, 1), 1, 0),
]


@pytest.mark.parametrize(("xs", "ws", "stride", "pad"), CONV)
@pytest.mark.parametrize("block_bytes", [1, 2**20])  # one image per block / one block
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_convolution_matches_the_book_layer(rng, xs, ws, stride, pad, block_bytes, layout):
    x, W, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    x_in = channels_last(x) if layout == "nhwc" else x
    ours = Convolution(W, b, stride, pad)
    ours.block_bytes = block_bytes
    book = book_baseline.Convolution(W, b, stride, pad)
    out = ours.forward(x_in)
    np.testing.assert_allclose(out, book.forward(x), rtol=1e-11, atol=1e-11)
    if block_bytes == 1 and kernels.active() == "numpy":  # a patch matrix per image (grey: one)
        assert len(ours.cols) == (1 if xs[1] == 1 else xs[0])
    elif block_bytes == 1:  # compiled: the image is kept, backward builds the patches again
        assert ours.cols is None and ours.img.shape == (xs[0], xs[2], xs[3], xs[1])
    d = rng.standard_normal(out.shape)
    d_in = channels_last(d) if layout == "nhwc" else d
    np.testing.assert_allclose(ours.backward(d_in), book.backward(d), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ours.dW, book.dW, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ours.db, book.db, rtol=1e-10, atol=1e-10)
    assert ours.dW.flags.c_contiguous and ours.dW.shape == W.shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [1, 2])
def test_convolution_follows_the_dtype_over_several_blocks(rng, dtype, channels):
    x = rng.standard_normal((9, channels, 9, 9)).astype(dtype)
    W = rng.standard_normal((3, channels, 3, 3)).astype(dtype)
    layer = Convolution(W, np.zeros(3, dtype), 1, 1)
    layer.block_bytes = 1
    out = layer.forward(x)
    dx = layer.backward(np.ones_like(out))
    assert out.dtype == dx.dtype == layer.dW.dtype == layer.db.dtype == dtype
    assert layer.db.shape == (3,) and layer.dW.shape == W.shape


def test_grey_convolution_mixes_dtypes_like_numpy(rng):
    x = rng.standard_normal((2, 1, 6, 6)).astype(np.float32)
    W, b = rng.standard_normal((3, 1, 3, 3)), rng.standard_normal(3)  # float64 parameters
    layer, book = Convolution(W, b, 1, 1), book_baseline.Convolution(W, b, 1, 1)
    out = layer.forward(x)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, book.forward(x.astype(np.float64)), rtol=1e-6, atol=1e-6)


POOL = [
    ((6, 5, 8, 8), 2, 2, 0),
    ((4, 3, 7, 9), 3, 2, 0),  # overlapping windows, leftover rows and columns
    ((3, 2, 6, 6), 2, 1, 0),
]


@pytest.mark.parametrize(("xs", "size", "stride", "pad"), POOL)
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_pooling_matches_the_book_layer(rng, xs, size, stride, pad, layout):
    x = rng.permutation(np.prod(xs)).reshape(xs).astype(np.float64)  # no ties
    ours, book = Pooling(size, size, stride, pad), book_baseline.Pooling(size, size, stride, pad)
    out = ours.forward(channels_last(x) if layout == "nhwc" else x)
    np.testing.assert_array_equal(out, book.forward(x))
    d = rng.standard_normal(out.shape)
    np.testing.assert_allclose(ours.backward(d), book.backward(d))


def test_pooling_sends_ties_to_the_first_maximum_like_argmax():
    x = np.zeros((1, 1, 4, 4))  # every window is a four-way tie, as after a ReLU
    x[0, 0, 3, 3] = 1.0
    layer = Pooling(2, 2, stride=2)
    layer.forward(x)
    dx = layer.backward(np.ones((1, 1, 2, 2)))
    expected = np.zeros((4, 4))
    expected[0, 0] = expected[0, 2] = expected[2, 0] = expected[3, 3] = 1.0
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_first_layer_can_skip_the_input_gradient(rng):
    x, W, b = rng.standard_normal((3, 1, 8, 8)), rng.standard_normal((4, 1, 3, 3)), np.zeros(4)
    full, first = Convolution(W, b, 1, 1), Convolution(W, b, 1, 1, input_grad=False)
    d = rng.standard_normal(full.forward(x).shape)
    first.forward(x)
    assert full.backward(d) is not None
    assert first.backward(d) is None
    np.testing.assert_array_equal(first.dW, full.dW)
    np.testing.assert_array_equal(first.db, full.db)
