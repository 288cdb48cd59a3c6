"""Pooling layers: max pooling over windows, and global average pooling."""

from __future__ import annotations

import numpy as np

from course_lib.layers.base import Layer
from course_lib.util import col2im, conv_output_size, im2col


class Pooling(Layer):
    """Max pooling over ``pool_h x pool_w`` windows.

    x: (N, C, H, W) -> out: (N, C, OH, OW) with ``OH = (H + 2 pad - pool_h) // stride + 1``
    (odd sizes are floored: 7 x 7 pooled 2 x 2 gives 3 x 3; the last row and column
    are dropped). Padding, if any, never wins the max. The gradient flows back to
    the first maximum of each window.
    """

    def __init__(self, pool_h: int, pool_w: int, stride: int = 2, pad: int = 0) -> None:
        self.pool_h = pool_h
        self.pool_w = pool_w
        self.stride = stride
        self.pad = pad
        self.x_shape: tuple[int, int, int, int] | None = None
        self.arg_max: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        N, C, H, W = x.shape
        ph, pw = self.pool_h, self.pool_w
        out_h = conv_output_size(H, ph, self.stride, self.pad)
        out_w = conv_output_size(W, pw, self.stride, self.pad)
        if self.pad:
            fill = np.finfo(x.dtype).min if np.issubdtype(x.dtype, np.floating) else x.min()
            pad = [(0, 0), (0, 0), (self.pad, self.pad), (self.pad, self.pad)]
            x = np.pad(x, pad, mode="constant", constant_values=fill)
        # one row per (n, oh, ow, c) window, padding already applied
        col = im2col(x, ph, pw, self.stride, 0).reshape(-1, ph * pw)
        self.arg_max = col.argmax(axis=1)
        out = np.take_along_axis(col, self.arg_max[:, None], axis=1)
        self.x_shape = (N, C, H, W)
        return out.reshape(N, out_h, out_w, C).transpose(0, 3, 1, 2)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        N, C, H, W = self.x_shape
        ph, pw = self.pool_h, self.pool_w
        dout = dout.transpose(0, 2, 3, 1).reshape(-1)  # (N*OH*OW*C,)
        dmax = np.zeros((dout.size, ph * pw), dtype=dout.dtype)
        dmax[np.arange(dout.size), self.arg_max] = dout
        dcol = dmax.reshape(-1, C * ph * pw)  # (N*OH*OW, C*ph*pw)
        return col2im(dcol, self.x_shape, ph, pw, self.stride, self.pad)


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
