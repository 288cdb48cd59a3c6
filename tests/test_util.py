"""im2col / col2im and small helpers."""

import numpy as np
import pytest

from course_lib.util import col2im, conv_output_size, im2col, shuffle_dataset, smooth_curve

CASES = [
    ((2, 3, 5, 5), 3, 3, 1, 0),
    ((1, 2, 7, 6), 3, 2, 2, 1),
    ((3, 1, 4, 4), 2, 2, 2, 0),
    ((1, 1, 5, 7), 1, 3, 1, 2),
]


def naive_im2col(x, fh, fw, stride, pad):
    N, C, H, W = x.shape
    xp = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    oh, ow = conv_output_size(H, fh, stride, pad), conv_output_size(W, fw, stride, pad)
    rows = []
    for n in range(N):
        for i in range(oh):
            for j in range(ow):
                rows.append(
                    xp[n, :, i * stride : i * stride + fh, j * stride : j * stride + fw].ravel()
                )
    return np.array(rows)


@pytest.mark.parametrize(("shape", "fh", "fw", "stride", "pad"), CASES)
def test_im2col_matches_definition(rng, shape, fh, fw, stride, pad):
    x = rng.standard_normal(shape)
    np.testing.assert_array_equal(
        im2col(x, fh, fw, stride, pad), naive_im2col(x, fh, fw, stride, pad)
    )


@pytest.mark.parametrize(("shape", "fh", "fw", "stride", "pad"), CASES)
def test_col2im_is_the_adjoint_of_im2col(rng, shape, fh, fw, stride, pad):
    """<im2col(x), c> == <x, col2im(c)> for all x, c: col2im is exactly the transpose."""
    x = rng.standard_normal(shape)
    col = im2col(x, fh, fw, stride, pad)
    c = rng.standard_normal(col.shape)
    lhs = np.vdot(col, c)
    rhs = np.vdot(x, col2im(c, shape, fh, fw, stride, pad))
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_im2col_does_not_loop_over_pixels_and_keeps_dtype(rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    col = im2col(x, 3, 3)
    assert col.dtype == np.float32 and col.shape == (2 * 36, 27)
    assert col2im(col, x.shape, 3, 3).dtype == np.float32


def test_conv_output_size():
    assert conv_output_size(28, 5) == 24
    assert conv_output_size(28, 3, 1, 1) == 28
    assert conv_output_size(7, 2, 2) == 3


def test_shuffle_dataset_is_seeded_and_consistent():
    x = np.arange(20).reshape(10, 2)
    t = np.arange(10)
    xs, ts = shuffle_dataset(x, t, seed=0)
    xs2, _ = shuffle_dataset(x, t, seed=0)
    np.testing.assert_array_equal(xs, xs2)
    np.testing.assert_array_equal(xs[:, 0] // 2, ts)
    np.testing.assert_array_equal(x, np.arange(20).reshape(10, 2))  # input untouched


def test_smooth_curve_keeps_length_and_smooths(rng):
    y = np.linspace(0, 1, 200) + 0.1 * rng.standard_normal(200)
    s = smooth_curve(y)
    assert s.shape == y.shape
    assert np.std(np.diff(s)) < np.std(np.diff(y)) / 3
