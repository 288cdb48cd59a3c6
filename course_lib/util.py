"""Helpers of the convolutional layers (``im2col`` / ``col2im``) and of training.

``im2col`` lays every receptive field of an image batch out as one row, so a
convolution becomes one matrix product; ``col2im`` is its adjoint (it sums the
rows back into an image), which is what the backward pass needs.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from course_lib._random import SeedLike, as_generator

__all__ = ["col2im", "conv_output_size", "im2col", "shuffle_dataset", "smooth_curve"]


def conv_output_size(input_size: int, filter_size: int, stride: int = 1, pad: int = 0) -> int:
    """Output length of a convolution or pooling along one axis: ``(in + 2 pad - filter) // stride + 1``."""
    return (input_size + 2 * pad - filter_size) // stride + 1


def _windows(img: np.ndarray, filter_h: int, filter_w: int, stride: int) -> np.ndarray:
    """Strided view (N, OH, OW, C, FH, FW) of every receptive field of ``img`` (N, C, H, W); no copy."""
    N, C, H, W = img.shape
    out_h = (H - filter_h) // stride + 1
    out_w = (W - filter_w) // stride + 1
    sN, sC, sH, sW = img.strides
    return as_strided(
        img,
        shape=(N, out_h, out_w, C, filter_h, filter_w),
        strides=(sN, sH * stride, sW * stride, sC, sH, sW),
        writeable=False,
    )


def im2col(
    input_data: np.ndarray, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0
) -> np.ndarray:
    """Unfold image patches into rows.

    input_data: (N, C, H, W). Returns col: (N * OH * OW, C * FH * FW), one row
    per output pixel (ordered n, oh, ow) holding its receptive field (ordered c, fh, fw),
    where ``OH = (H + 2 pad - FH) // stride + 1`` (likewise OW). Built from a
    strided view of the zero-padded input, so the only copy is the final reshape.
    """
    N, C, H, W = input_data.shape
    img = input_data
    if pad:
        img = np.pad(input_data, [(0, 0), (0, 0), (pad, pad), (pad, pad)], mode="constant")
    win = _windows(img, filter_h, filter_w, stride)
    return win.reshape(N * win.shape[1] * win.shape[2], C * filter_h * filter_w)


def col2im(
    col: np.ndarray,
    input_shape: tuple[int, int, int, int],
    filter_h: int,
    filter_w: int,
    stride: int = 1,
    pad: int = 0,
) -> np.ndarray:
    """Fold rows back into an image, summing overlapping patches (the adjoint of :func:`im2col`).

    col: (N * OH * OW, C * FH * FW); input_shape: (N, C, H, W). Returns (N, C, H, W).
    The loop runs over the FH * FW kernel offsets only; each step adds a whole
    strided slab of the image.
    """
    N, C, H, W = input_shape
    out_h = conv_output_size(H, filter_h, stride, pad)
    out_w = conv_output_size(W, filter_w, stride, pad)
    cols = col.reshape(N, out_h, out_w, C, filter_h, filter_w).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((N, C, H + 2 * pad + stride - 1, W + 2 * pad + stride - 1), dtype=col.dtype)
    for y in range(filter_h):
        y_max = y + stride * out_h
        for x in range(filter_w):
            x_max = x + stride * out_w
            img[:, :, y:y_max:stride, x:x_max:stride] += cols[:, :, y, x]
    return img[:, :, pad : H + pad, pad : W + pad]


def shuffle_dataset(
    x: np.ndarray, t: np.ndarray, seed: SeedLike = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return shuffled copies of ``x`` (N, ...) and ``t`` (N, ...) under one permutation."""
    perm = as_generator(seed).permutation(x.shape[0])
    return x[perm], t[perm]


def smooth_curve(x: np.ndarray, window_len: int = 11, beta: float = 2.0) -> np.ndarray:
    """Smooth a noisy curve (e.g. a loss history) with a normalised Kaiser window.

    x: (T,) -> (T,). The ends are mirrored so the output keeps the input's length.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size < window_len:
        return x.copy()
    half = window_len // 2
    padded = np.concatenate([x[half:0:-1], x, x[-2 : -half - 2 : -1]])
    w = np.kaiser(window_len, beta)
    return np.convolve(padded, w / w.sum(), mode="valid")
