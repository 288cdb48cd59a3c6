"""Pooling layers: max pooling over windows, and global average pooling."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from course_lib import kernels
from course_lib.layers.base import Layer
from course_lib.util import conv_output_size

_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _channels_last(a: np.ndarray) -> np.ndarray:
    """The same (N, C, H, W) array, as a view of channels-last memory (copied only if needed).

    Convolutions hand over channels-last arrays; keeping one layout makes every
    element-wise step below a straight pass over memory.
    """
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


class Pooling(Layer):
    """Max pooling over ``pool_h x pool_w`` windows.

    x: (N, C, H, W) -> out: (N, C, OH, OW) with ``OH = (H + 2 pad - pool_h) // stride + 1``
    (odd sizes are floored: 7 x 7 pooled 2 x 2 gives 3 x 3; the last row and column
    are dropped). Padding, if any, never wins the max. The gradient flows back to
    the first maximum of each window (in row-major order within the window).

    Instead of an ``im2col`` matrix, the layer loops over the ``pool_h * pool_w``
    offsets of the window: offset ``(i, j)`` sees the strided view
    ``x[:, :, i::stride, j::stride]`` (cut to OH x OW), and the maximum is taken
    one view at a time.

    With the compiled kernels (:mod:`course_lib.kernels`, no padding) one parallel
    pass finds each window's maximum and keeps the offset of its first occurrence
    (one byte per output) instead of the input: ``arg`` replaces ``x`` and ``out``.
    """

    cache_names = ("x", "out", "arg")

    def __init__(self, pool_h: int, pool_w: int, stride: int = 2, pad: int = 0) -> None:
        self.pool_h = pool_h
        self.pool_w = pool_w
        self.stride = stride
        self.pad = pad
        self.x_shape: tuple[int, int, int, int] | None = None
        self.x: np.ndarray | None = None  # the (padded) input, kept to find the maxima again
        self.out: np.ndarray | None = None
        self.arg: np.ndarray | None = None  # compiled path: offset of each window's maximum

    def _offsets(self, img: np.ndarray, out_h: int, out_w: int) -> Iterator[np.ndarray]:
        """For each window offset (i, j), the view (N, C, OH, OW) of ``img`` it reads."""
        s = self.stride
        for i in range(self.pool_h):
            for j in range(self.pool_w):
                yield img[:, :, i : i + s * out_h : s, j : j + s * out_w : s]

    def forward(self, x: np.ndarray) -> np.ndarray:
        N, C, H, W = x.shape
        out_h = conv_output_size(H, self.pool_h, self.stride, self.pad)
        out_w = conv_output_size(W, self.pool_w, self.stride, self.pad)
        fast = kernels.fast()
        if (
            fast is not None
            and not self.pad
            and x.dtype in _FAST_DTYPES
            and self.pool_h * self.pool_w <= 127  # offsets fit in int8
        ):
            out = np.empty((N, out_h, out_w, C), dtype=x.dtype)
            arg = np.empty((N, out_h, out_w, C), dtype=np.int8)
            img = np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # copied only if not NHWC
            fast.maxpool_forward(img, self.pool_h, self.pool_w, self.stride, out, arg)
            self.x_shape = (N, C, H, W)
            self._cache(arg=arg, x=None, out=None)
            return out.transpose(0, 3, 1, 2)
        x = _channels_last(x)
        if self.pad:
            p = self.pad
            fill = np.finfo(x.dtype).min if np.issubdtype(x.dtype, np.floating) else x.min()
            padded = np.full((N, H + 2 * p, W + 2 * p, C), fill, dtype=x.dtype)
            padded[:, p : p + H, p : p + W, :] = x.transpose(0, 2, 3, 1)
            x = padded.transpose(0, 3, 1, 2)

        windows = self._offsets(x, out_h, out_w)
        out = next(windows).copy(order="K")  # keeps the channels-last layout
        for view in windows:
            np.maximum(out, view, out=out)

        self.x_shape = (N, C, H, W)
        self._cache(x=x, out=out, arg=None)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        N, C, H, W = self.x_shape
        s = self.stride
        tiles = not self.pad and s == self.pool_h == self.pool_w and H % s == 0 and W % s == 0
        if self.arg is not None:  # the compiled forward ran
            fast = kernels.compiled()
            dx = np.empty((N, H, W, C), dtype=dout.dtype)
            d = np.ascontiguousarray(dout.transpose(0, 2, 3, 1))  # copied only if not NHWC
            fast.maxpool_backward(d, self.arg, self.pool_h, self.pool_w, s, tiles, dx)
            return dx.transpose(0, 3, 1, 2)
        self._require_cache(self.x)
        out_h, out_w = self.out.shape[2:]
        p = self.pad
        dout = _channels_last(dout)
        _, _, Hp, Wp = self.x.shape
        # Windows that tile the image exactly (the usual 2 x 2, stride 2): every pixel
        # lies in one window, so each is written once and dx needs no zeros first.
        dx = (np.empty if tiles else np.zeros)((N, Hp, Wp, C), dtype=dout.dtype)
        dx = dx.transpose(0, 3, 1, 2)

        unclaimed = np.ones_like(self.out, dtype=bool)  # windows whose maximum is still to find
        views = zip(self._offsets(self.x, out_h, out_w), self._offsets(dx, out_h, out_w))
        for x_view, dx_view in views:
            first = (x_view == self.out) & unclaimed  # this offset holds the first maximum
            if tiles:
                np.multiply(dout, first, out=dx_view)
            else:
                dx_view += dout * first  # overlapping windows add up
            unclaimed &= ~first
        return dx[:, :, p : p + H, p : p + W]


class GlobalAvgPooling(Layer):
    """Average over all spatial positions of each channel.

    x: (N, C, H, W) -> out: (N, C). ``dx`` spreads each ``dout`` evenly over H * W.
    """

    def __init__(self) -> None:
        self.x_shape: tuple[int, int, int, int] | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x_shape = x.shape
        return x.mean(axis=(2, 3))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        N, C, H, W = self.x_shape
        dx = np.empty(self.x_shape, dtype=dout.dtype)
        dx[...] = (dout / (H * W))[:, :, None, None]
        return dx
