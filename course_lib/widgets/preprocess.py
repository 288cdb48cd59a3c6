"""Turn a drawing into a 28×28 image the way MNIST was made.

MNIST's digits were written on paper, scanned, and then normalised in three
steps (LeCun et al.): the ink's bounding box was scaled to fit a 20×20 box
*keeping the aspect ratio*, with anti-aliasing (hence the grey levels), and the
result was placed in a 28×28 field so that its *centre of mass* sits at the
centre of the field. :func:`preprocess_drawing` applies the same steps to a
drawing from a canvas, so that a network trained on MNIST sees what it was
trained on.

Everything here is plain NumPy: the anti-aliased resampler is a separable
triangle (bilinear) filter whose support widens with the reduction factor, so
that downscaling averages over the area each output pixel covers.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BOX_SIZE",
    "FIELD_SIZE",
    "EmptyDrawingError",
    "center_by_mass",
    "center_of_mass",
    "crop_to_ink",
    "fit_into_box",
    "ink_bounding_box",
    "preprocess_drawing",
    "resize_antialiased",
    "to_ink",
]

#: Side of the image the network sees (MNIST: 28).
FIELD_SIZE = 28
#: Side of the box the digit is scaled to fit (MNIST: 20).
BOX_SIZE = 20
#: Ink level (0..1) above which a pixel counts for the bounding box.
DEFAULT_INK_THRESHOLD = 0.1


class EmptyDrawingError(ValueError):
    """Raised when a drawing has no ink, so there is nothing to classify."""


def _as_unit_float(array: np.ndarray, name: str) -> np.ndarray:
    """Return ``array`` as float64 in [0, 1] (integers are divided by their dtype's max)."""
    if array.dtype == np.bool_:
        return array.astype(np.float64)
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        if info.min < 0 and array.size and array.min() < 0:
            raise ValueError(f"{name} has negative values; expected ink levels >= 0")
        return array.astype(np.float64) / float(info.max)
    if np.issubdtype(array.dtype, np.floating):
        out = array.astype(np.float64)
        if out.size and not np.all(np.isfinite(out)):
            raise ValueError(f"{name} contains NaN or infinite values")
        if out.size and (out.min() < 0.0 or out.max() > 1.0):
            raise ValueError(
                f"{name} is a float array with values in [{out.min():g}, {out.max():g}]; "
                "float images must lie in [0, 1] (use uint8 for 0..255)"
            )
        return out
    raise TypeError(f"{name} has dtype {array.dtype}; expected an integer, float or bool image")


def to_ink(image: np.ndarray, *, invert: bool | None = None) -> np.ndarray:
    """Ink level of every pixel, 0 (paper) to 1 (ink).

    Args:
        image: ``(H, W)`` grey, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA; uint8 (0..255),
            any other integer type (0..max), bool, or float in [0, 1].
            For RGBA with a non-uniform alpha channel (strokes on a transparent
            background, as a browser canvas gives) the ink is the alpha channel.
            Otherwise the ink is the grey level (RGB: luminance).
        invert: ``True`` for dark ink on light paper, ``False`` for light ink on a
            dark background (MNIST's convention), ``None`` to decide from the
            border: if the border is mostly light the image is inverted.
            Ignored when the ink comes from the alpha channel.

    Returns:
        ``(H, W)`` float64 array in [0, 1]; the input is not modified.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(
            f"image must be (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA; got shape {image.shape}"
        )
    if image.ndim == 3 and image.shape[2] not in (3, 4):
        raise ValueError(
            f"a colour image must have 3 (RGB) or 4 (RGBA) channels; got shape {image.shape}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    values = _as_unit_float(image, "image")
    if values.ndim == 3:
        if values.shape[2] == 4:
            alpha = values[:, :, 3]
            if alpha.max() - alpha.min() > 1e-6:
                return alpha.copy()
        rgb = values[:, :, :3]
        grey = rgb @ np.array([0.299, 0.587, 0.114])
    else:
        grey = values
    if invert is None:
        border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
        invert = bool(np.median(border) > 0.5)
    return 1.0 - grey if invert else grey.copy()


def ink_bounding_box(
    ink: np.ndarray, threshold: float = DEFAULT_INK_THRESHOLD
) -> tuple[int, int, int, int] | None:
    """Bounding box of the pixels with ink above ``threshold``.

    Args:
        ink: ``(H, W)`` ink levels in [0, 1].
        threshold: pixels with ``ink > threshold`` count as ink.

    Returns:
        ``(top, bottom, left, right)`` with exclusive ``bottom``/``right``, so that
        ``ink[top:bottom, left:right]`` is the crop; ``None`` when there is no ink.
    """
    ink = np.asarray(ink)
    if ink.ndim != 2:
        raise ValueError(f"ink must be a 2-D (H, W) array; got shape {ink.shape}")
    mask = ink > threshold
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def crop_to_ink(ink: np.ndarray, threshold: float = DEFAULT_INK_THRESHOLD) -> np.ndarray:
    """Crop ``(H, W)`` ink levels to their bounding box; raises :class:`EmptyDrawingError`."""
    box = ink_bounding_box(ink, threshold)
    if box is None:
        raise EmptyDrawingError("The canvas is empty: draw a digit first.")
    top, bottom, left, right = box
    return np.array(ink[top:bottom, left:right], dtype=np.float64)


def _resample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` weights of an anti-aliased triangle filter (rows sum to 1)."""
    scale = n_in / n_out
    support = max(1.0, scale)  # widen the filter when shrinking: area averaging
    centres = (np.arange(n_out) + 0.5) * scale  # output pixel centres in input coordinates
    positions = np.arange(n_in) + 0.5
    weights = np.clip(1.0 - np.abs(positions[None, :] - centres[:, None]) / support, 0.0, None)
    sums = weights.sum(axis=1, keepdims=True)
    # Every row has weight: the nearest input pixel is within support of the centre.
    return weights / sums


def resize_antialiased(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D image with an anti-aliased bilinear filter.

    Shrinking averages over the area each output pixel covers (no aliasing of
    thin strokes); enlarging interpolates linearly.

    Args:
        image: ``(H, W)`` array.
        shape: ``(new_H, new_W)``, both >= 1.

    Returns:
        ``(new_H, new_W)`` float64 array.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W); got shape {image.shape}")
    new_h, new_w = (int(s) for s in shape)
    if new_h < 1 or new_w < 1:
        raise ValueError(f"target shape must be positive; got {shape}")
    rows = _resample_matrix(image.shape[0], new_h)
    cols = _resample_matrix(image.shape[1], new_w)
    return rows @ image @ cols.T


def fit_into_box(crop: np.ndarray, box: int = BOX_SIZE) -> np.ndarray:
    """Scale a cropped digit to fit a ``box``×``box`` square, keeping its aspect ratio.

    The crop is padded (centred) to a square first, so both axes are scaled by
    exactly the same factor; the longer side then spans the whole box.

    Args:
        crop: ``(h, w)`` ink levels cropped to the ink.
        box: side of the target square.

    Returns:
        ``(box, box)`` float64 array.
    """
    crop = np.asarray(crop, dtype=np.float64)
    if crop.ndim != 2 or crop.size == 0:
        raise ValueError(f"crop must be a non-empty 2-D array; got shape {crop.shape}")
    h, w = crop.shape
    side = max(h, w)
    square = np.zeros((side, side))
    top, left = (side - h) // 2, (side - w) // 2
    square[top : top + h, left : left + w] = crop
    return resize_antialiased(square, (box, box))


def center_of_mass(image: np.ndarray) -> tuple[float, float]:
    """Centre of mass ``(row, col)`` of a 2-D image, in pixel-index coordinates.

    Pixel ``(i, j)`` has its centre at ``(i, j)``; a single lit pixel at
    ``(3, 5)`` has its centre of mass at ``(3.0, 5.0)``.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W); got shape {image.shape}")
    total = image.sum()
    if total <= 0:
        raise EmptyDrawingError("The image has no ink, so it has no centre of mass.")
    rows = np.arange(image.shape[0])
    cols = np.arange(image.shape[1])
    return float(image.sum(axis=1) @ rows / total), float(image.sum(axis=0) @ cols / total)


def center_by_mass(
    digit: np.ndarray,
    field: int = FIELD_SIZE,
    *,
    center: tuple[float, float] | None = None,
) -> np.ndarray:
    """Place ``digit`` in a ``field``×``field`` image with its centre of mass at the centre.

    The shift is rounded to whole pixels (as for MNIST, whose centres of mass sit
    at index ``(14, 14)`` on average, i.e. ``field // 2``). If a lopsided digit
    would stick out of the field, the shift is limited so that no ink is lost.

    Args:
        digit: ``(h, w)`` with ``h, w <= field``.
        field: side of the output.
        center: ``(row, col)`` to use as the centre of mass instead of computing it
            (the grader uses this to place a digit by a student's own centre of mass).

    Returns:
        ``(field, field)`` float64 array.
    """
    digit = np.asarray(digit, dtype=np.float64)
    if digit.ndim != 2 or digit.shape[0] > field or digit.shape[1] > field:
        raise ValueError(f"digit must be 2-D and fit in {field}×{field}; got shape {digit.shape}")
    cy, cx = center_of_mass(digit) if center is None else (float(center[0]), float(center[1]))
    h, w = digit.shape
    top = int(np.clip(np.round(field // 2 - cy), 0, field - h))
    left = int(np.clip(np.round(field // 2 - cx), 0, field - w))
    out = np.zeros((field, field))
    out[top : top + h, left : left + w] = digit
    return out


def preprocess_drawing(
    image: np.ndarray,
    *,
    invert: bool | None = None,
    threshold: float = DEFAULT_INK_THRESHOLD,
    dtype: type | np.dtype = np.float32,
) -> np.ndarray:
    """Preprocess a drawing as MNIST was made: crop, fit 20×20, centre by mass in 28×28.

    Steps: ink levels (see :func:`to_ink`) → crop to the ink's bounding box →
    scale to fit 20×20 keeping the aspect ratio (anti-aliased) → place in 28×28
    with the centre of mass at the centre → scale so the darkest ink is 1.0,
    giving values in [0, 1] like ``load_mnist(normalize=True)``.

    Args:
        image: ``(H, W)`` grey, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA (e.g. a
            browser canvas: strokes on a transparent background). Not modified.
        invert: see :func:`to_ink` (``None``: decide from the border).
        threshold: ink level that counts for the bounding box.
        dtype: dtype of the result.

    Returns:
        ``(28, 28)`` array in [0, 1], ink bright on a zero background.

    Raises:
        EmptyDrawingError: the drawing has no ink above ``threshold``.
    """
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1); got {threshold}")
    ink = to_ink(image, invert=invert)
    crop = crop_to_ink(ink, threshold)
    boxed = fit_into_box(crop, BOX_SIZE)
    boxed = _trim_zero_border(boxed)
    placed = center_by_mass(boxed, FIELD_SIZE)
    peak = placed.max()
    if peak <= 0:  # pragma: no cover - a crop with ink above threshold keeps some ink
        raise EmptyDrawingError("The canvas is empty: draw a digit first.")
    return np.clip(placed / peak, 0.0, 1.0).astype(dtype)


def _trim_zero_border(image: np.ndarray) -> np.ndarray:
    """Drop all-zero rows/columns around the content (the padding of :func:`fit_into_box`)."""
    box = ink_bounding_box(image, 0.0)
    if box is None:
        return image
    top, bottom, left, right = box
    return image[top:bottom, left:right]
