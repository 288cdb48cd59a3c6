"""The 2-D convolution layer, as one matrix product over ``im2col`` patches."""

from __future__ import annotations

import numpy as np

from course_lib.layers.base import Layer
from course_lib.util import col2im, conv_output_size, im2col


class Convolution(Layer):
    """2-D convolution (cross-correlation, as in every deep-learning library).

    W: (FN, C, FH, FW) filters, b: (FN,). x: (N, C, H, W) -> out: (N, FN, OH, OW)
    with ``OH = (H + 2 pad - FH) // stride + 1`` (likewise OW).
    ``backward`` stores ``dW`` (FN, C, FH, FW) and ``db`` (FN,) and returns dx (N, C, H, W).
    """

    param_names = ("W", "b")

    def __init__(self, W: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 0) -> None:
        self.W = W
        self.b = b
        self.stride = stride
        self.pad = pad
        self.x_shape: tuple[int, int, int, int] | None = None
        self.col: np.ndarray | None = None
        self.col_W: np.ndarray | None = None
        self.dW: np.ndarray | None = None
        self.db: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        FN, C, FH, FW = self.W.shape
        N, _, H, W = x.shape
        out_h = conv_output_size(H, FH, self.stride, self.pad)
        out_w = conv_output_size(W, FW, self.stride, self.pad)

        col = im2col(x, FH, FW, self.stride, self.pad)  # (N*OH*OW, C*FH*FW)
        col_W = self.W.reshape(FN, -1).T  # (C*FH*FW, FN)
        out = col @ col_W + self.b  # (N*OH*OW, FN)

        self.x_shape = x.shape
        self.col = col
        self.col_W = col_W
        return out.reshape(N, out_h, out_w, FN).transpose(0, 3, 1, 2)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        FN, C, FH, FW = self.W.shape
        dout = dout.transpose(0, 2, 3, 1).reshape(-1, FN)  # (N*OH*OW, FN)

        self.db = dout.sum(axis=0)
        self.dW = (self.col.T @ dout).T.reshape(FN, C, FH, FW)

        dcol = dout @ self.col_W.T  # (N*OH*OW, C*FH*FW)
        return col2im(dcol, self.x_shape, FH, FW, self.stride, self.pad)
