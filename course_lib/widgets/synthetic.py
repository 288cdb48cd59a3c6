"""Synthetic drawings: MNIST digits redrawn on a big canvas, as a person would draw them.

Used to test the preprocessing and the pretrained model on inputs that look
like what :class:`~course_lib.widgets.DigitPad` receives: a digit of any size,
anywhere on a 280×280 canvas, with a thin or a thick pen.
"""

from __future__ import annotations

import itertools

import numpy as np

from course_lib._random import SeedLike, as_generator
from course_lib.widgets.preprocess import resize_antialiased

__all__ = ["max_filter", "min_filter", "redraw_on_canvas", "stroke_line"]


def _sliding_extreme(image: np.ndarray, radius: int, reduce: np.ufunc, fill: float) -> np.ndarray:
    out = np.array(image, dtype=np.float64, copy=True)
    if radius <= 0:
        return out
    for axis in (0, 1):
        padded = np.pad(
            out, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], constant_values=fill
        )
        n = out.shape[axis]
        acc = np.take(padded, np.arange(0, n), axis=axis)
        for shift in range(1, 2 * radius + 1):
            acc = reduce(acc, np.take(padded, np.arange(shift, shift + n), axis=axis))
        out = acc
    return out


def max_filter(image: np.ndarray, radius: int) -> np.ndarray:
    """Grey dilation of ``(H, W)`` by a ``(2r+1)×(2r+1)`` square: strokes get thicker."""
    return _sliding_extreme(np.asarray(image), int(radius), np.maximum, -np.inf)


def min_filter(image: np.ndarray, radius: int) -> np.ndarray:
    """Grey erosion of ``(H, W)`` by a ``(2r+1)×(2r+1)`` square: strokes get thinner."""
    return _sliding_extreme(np.asarray(image), int(radius), np.minimum, np.inf)


def redraw_on_canvas(
    digit: np.ndarray,
    seed: SeedLike = None,
    *,
    canvas: int = 280,
    height_range: tuple[float, float] = (90.0, 250.0),
    thickness_range: tuple[float, float] = (-0.4, 1.6),
) -> np.ndarray:
    """Redraw a 28×28 digit on a blank ``canvas``×``canvas`` RGBA image, like a drawing.

    The digit is scaled so its 20-pixel box becomes ``height_range`` canvas
    pixels tall, its strokes are made thinner or thicker by
    ``thickness_range`` MNIST pixels on each side (negative: thinner), it is
    binarised like a pen stroke, and placed at a random position. The result
    is what a browser canvas gives: black ink in the alpha channel over a
    transparent background.

    Args:
        digit: ``(28, 28)`` ink in [0, 1] or uint8 (MNIST).
        seed: int or ``np.random.Generator``.
        canvas: side of the canvas.
        height_range: range of the digit's box height in canvas pixels.
        thickness_range: range of the stroke growth per side, in MNIST pixels.

    Returns:
        ``(canvas, canvas, 4)`` uint8 RGBA.
    """
    rng = as_generator(seed)
    digit = np.asarray(digit)
    if digit.shape != (28, 28):
        raise ValueError(f"digit must be (28, 28); got {digit.shape}")
    ink = digit.astype(np.float64) / (255.0 if digit.dtype == np.uint8 else 1.0)
    rows = np.flatnonzero((ink > 0.1).any(axis=1))
    cols = np.flatnonzero((ink > 0.1).any(axis=0))
    if rows.size == 0:
        raise ValueError("digit has no ink")
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    # One MNIST pixel becomes `scale` canvas pixels (a 20-pixel tall digit: 20*scale).
    scale = rng.uniform(*height_range) / 20.0
    new_h = max(1, round(crop.shape[0] * scale))
    new_w = max(1, round(crop.shape[1] * scale))
    if max(new_h, new_w) > canvas - 4:
        shrink = (canvas - 4) / max(new_h, new_w)
        new_h, new_w, scale = (
            max(1, int(new_h * shrink)),
            max(1, int(new_w * shrink)),
            scale * shrink,
        )
    big = resize_antialiased(crop, (new_h, new_w))
    grow = rng.uniform(*thickness_range) * scale
    pen = big > 0.45  # the pen's footprint
    radius = round(abs(grow))
    pad = radius + 1
    pen = np.pad(pen.astype(np.float64), pad)
    if grow > 0:
        pen = max_filter(pen, radius)
    elif grow < 0:
        thinner = min_filter(pen, radius)
        if thinner.sum() > 0.3 * pen.sum():  # never erase a thin digit away
            pen = thinner
    box = np.flatnonzero(pen.any(axis=1)), np.flatnonzero(pen.any(axis=0))
    pen = pen[box[0][0] : box[0][-1] + 1, box[1][0] : box[1][-1] + 1]
    pen = pen[:canvas, :canvas]
    h, w = pen.shape
    top = int(rng.integers(0, canvas - h + 1))
    left = int(rng.integers(0, canvas - w + 1))
    out = np.zeros((canvas, canvas, 4), dtype=np.uint8)
    out[top : top + h, left : left + w, 3] = (pen > 0.5).astype(np.uint8) * 255
    return out


def stroke_line(
    canvas: np.ndarray, points: np.ndarray, width: float, *, value: float = 1.0
) -> np.ndarray:
    """Draw a polyline with a round pen of ``width`` pixels on a copy of ``canvas``.

    Args:
        canvas: ``(H, W)`` float ink levels.
        points: ``(K, 2)`` ``(x, y)`` vertices in pixel coordinates.
        width: pen diameter in pixels.
        value: ink level to paint.

    Returns:
        ``(H, W)`` float64 copy with the stroke (anti-aliased by a 1-pixel ramp).
    """
    out = np.array(canvas, dtype=np.float64, copy=True)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if pts.shape[0] == 0:
        raise ValueError("points must have at least one (x, y) vertex")
    if pts.shape[0] == 1:
        pts = np.vstack([pts, pts])
    yy, xx = np.mgrid[0 : out.shape[0], 0 : out.shape[1]]
    px, py = xx + 0.5, yy + 0.5
    dist = np.full(out.shape, np.inf)
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        dx, dy = x1 - x0, y1 - y0
        length2 = dx * dx + dy * dy
        if length2 == 0:
            t = np.zeros_like(px)
        else:
            t = np.clip(((px - x0) * dx + (py - y0) * dy) / length2, 0.0, 1.0)
        d = np.hypot(px - (x0 + t * dx), py - (y0 + t * dy))
        dist = np.minimum(dist, d)
    coverage = np.clip(width / 2.0 + 0.5 - dist, 0.0, 1.0)
    return np.maximum(out, coverage * value)
