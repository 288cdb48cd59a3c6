"""Preprocessing of drawings into MNIST-like 28×28 images (course_lib.widgets.preprocess)."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.widgets import (
    EmptyDrawingError,
    center_by_mass,
    center_of_mass,
    crop_to_ink,
    fit_into_box,
    ink_bounding_box,
    preprocess_drawing,
    resize_antialiased,
    to_ink,
)
from course_lib.widgets.synthetic import max_filter, min_filter, redraw_on_canvas, stroke_line

CANVAS = 280


def blank(size: int = CANVAS) -> np.ndarray:
    return np.zeros((size, size))


def seven(offset=(0.0, 0.0), scale=1.0, width=20.0, size=CANVAS) -> np.ndarray:
    """A '7' drawn with a round pen: a top bar and a diagonal, as ink levels in [0, 1]."""
    pts = np.array([[80.0, 60.0], [200.0, 60.0], [120.0, 230.0]])
    pts = (pts - 140.0) * scale + 140.0 + np.asarray(offset)
    return stroke_line(blank(size), pts, width)


def bbox(image: np.ndarray, threshold: float = 0.0) -> tuple[int, int]:
    top, bottom, left, right = ink_bounding_box(image, threshold)
    return bottom - top, right - left


# ---------------------------------------------------------------- output format
def test_synthetic_stroke_gives_mnist_like_image():
    out = preprocess_drawing(seven())
    assert out.shape == (28, 28)
    assert out.dtype == np.float32
    assert out.min() >= 0.0
    assert out.max() == pytest.approx(1.0)
    h, w = bbox(out)
    assert max(h, w) == 20, "the longer side of the digit must span the 20-pixel box"
    cy, cx = center_of_mass(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    # nothing is clipped: the ink is that of the 20x20 box, only moved
    boxed = fit_into_box(crop_to_ink(seven()))
    assert out.sum() == pytest.approx(boxed.sum() / boxed.max(), rel=1e-5)


def test_input_is_not_modified():
    image = (seven() * 255).astype(np.uint8)
    before = image.copy()
    preprocess_drawing(image)
    np.testing.assert_array_equal(image, before)


def test_aspect_ratio_is_kept():
    # a horizontal bar 5 times wider than tall
    image = blank()
    image[100:130, 40:190] = 1.0
    out = preprocess_drawing(image)
    h, w = bbox(out, 0.5)
    assert w == 20
    assert 3 <= h <= 5, f"a 150x30 bar must become about 20x4, got {w}x{h}"


def test_tall_thin_one_is_not_stretched():
    image = stroke_line(blank(), [[140, 40], [140, 240]], 16)
    out = preprocess_drawing(image)
    h, w = bbox(out, 0.5)
    assert h in (19, 20)
    assert w <= 3


# ---------------------------------------------------------------- the cases from the issue
@pytest.mark.parametrize(
    "image",
    [
        np.zeros((280, 280)),
        np.zeros((280, 280), dtype=np.uint8),
        np.zeros((280, 280, 4), dtype=np.uint8),
        np.full((280, 280), 0.05),  # faint noise below the ink threshold
    ],
    ids=["float", "uint8", "rgba", "faint"],
)
def test_empty_canvas_raises_a_friendly_error(image):
    with pytest.raises(EmptyDrawingError, match="empty"):
        preprocess_drawing(image)


def test_white_paper_without_ink_is_empty():
    with pytest.raises(EmptyDrawingError):
        preprocess_drawing(np.full((50, 50), 255, dtype=np.uint8))


def test_single_dot_is_a_centred_blob():
    image = stroke_line(blank(), [[30, 250]], 18)  # a click in a corner
    out = preprocess_drawing(image)
    cy, cx = center_of_mass(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    np.testing.assert_allclose(out, out.T, atol=1e-6)  # a round dot stays round
    np.testing.assert_allclose(out, out[::-1, ::-1], atol=1e-6)
    assert max(bbox(out, 0.5)) <= 20


def test_single_pixel_dot():
    image = np.zeros((280, 280), dtype=np.uint8)
    image[3, 270] = 255
    out = preprocess_drawing(image)
    assert out.max() == pytest.approx(1.0)
    cy, cx = center_of_mass(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


def test_digit_filling_the_canvas():
    # an ellipse that touches all four edges
    yy, xx = np.mgrid[0:CANVAS, 0:CANVAS] + 0.5
    r = np.hypot((yy - 140) / 140, (xx - 140) / 140)
    image = np.clip(1.0 - np.abs(r - 0.92) * 140 / 12, 0, 1)
    assert ink_bounding_box(image) == (0, CANVAS, 0, CANVAS)
    out = preprocess_drawing(image)
    assert bbox(out) == (20, 20)
    assert out[4:24, 4:24].sum() == pytest.approx(out.sum())  # nothing clipped
    assert out[14, 14] == 0.0  # the hole of the zero survives


def test_off_centre_digit_gives_the_same_image():
    centred = preprocess_drawing(seven(scale=0.5))
    corner = preprocess_drawing(seven(offset=(-75.0, -60.0), scale=0.5))
    other = preprocess_drawing(seven(offset=(70.0, 50.0), scale=0.5))
    np.testing.assert_allclose(corner, centred, atol=1e-5)
    np.testing.assert_allclose(other, centred, atol=1e-5)


def test_size_of_the_drawing_does_not_matter_much():
    big = preprocess_drawing(seven(scale=1.0, width=20))
    small = preprocess_drawing(seven(scale=0.4, width=8))
    assert np.abs(big - small).mean() < 0.05


def test_rgba_with_transparent_background():
    ink = seven()
    rng = np.random.default_rng(0)
    rgba = np.zeros((CANVAS, CANVAS, 4), dtype=np.uint8)
    # a browser canvas keeps arbitrary colour under alpha 0: only alpha is ink
    rgba[..., :3] = rng.integers(0, 256, (CANVAS, CANVAS, 3))
    rgba[..., 3] = np.round(ink * 255).astype(np.uint8)
    out = preprocess_drawing(rgba)
    expected = preprocess_drawing(np.round(ink * 255).astype(np.uint8))
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_opaque_rgba_dark_ink_on_white_is_inverted():
    ink = seven()
    rgba = np.full((CANVAS, CANVAS, 4), 255, dtype=np.uint8)
    rgba[..., :3] = np.round((1.0 - ink) * 255).astype(np.uint8)[..., None]
    out = preprocess_drawing(rgba)
    expected = preprocess_drawing(np.round(ink * 255).astype(np.uint8))
    np.testing.assert_allclose(out, expected, atol=1e-2)


def test_grey_dark_on_light_is_detected_and_can_be_forced():
    ink = seven()
    paper = 1.0 - ink
    np.testing.assert_allclose(preprocess_drawing(paper), preprocess_drawing(ink), atol=1e-6)
    np.testing.assert_allclose(
        preprocess_drawing(paper, invert=True), preprocess_drawing(ink), atol=1e-6
    )


def test_redrawn_mnist_like_digit_round_trips():
    # a digit-like image, redrawn at 10x on a canvas, comes back close to itself
    digit = preprocess_drawing(seven())
    canvas = redraw_on_canvas(digit, seed=3, thickness_range=(0.0, 0.0), height_range=(200, 200))
    again = preprocess_drawing(canvas)
    assert np.abs(again - digit).mean() < 0.06


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("image", "error", "match"),
    [
        (np.zeros(10), ValueError, r"\(H, W\)"),
        (np.zeros((5, 5, 2)), ValueError, "3 \\(RGB\\) or 4 \\(RGBA\\)"),
        (np.zeros((0, 5)), ValueError, "empty"),
        (np.full((5, 5), 2.0), ValueError, r"\[0, 1\]"),
        (np.full((5, 5), np.nan), ValueError, "NaN"),
        (np.full((5, 5), -3, dtype=np.int16), ValueError, "negative"),
        (np.full((5, 5), "a"), TypeError, "dtype"),
    ],
)
def test_bad_input_gets_a_clear_error(image, error, match):
    with pytest.raises(error, match=match):
        preprocess_drawing(image)


def test_bad_threshold():
    with pytest.raises(ValueError, match="threshold"):
        preprocess_drawing(seven(), threshold=1.5)


def test_other_integer_and_bool_dtypes():
    ink = seven() > 0.5
    expected = preprocess_drawing(ink.astype(np.uint8) * 255)
    np.testing.assert_allclose(preprocess_drawing(ink), expected, atol=1e-6)
    np.testing.assert_allclose(
        preprocess_drawing(ink.astype(np.uint16) * 65535), expected, atol=1e-6
    )


# ---------------------------------------------------------------- the building blocks
def test_ink_bounding_box_known_values():
    image = np.zeros((10, 12))
    image[2, 3] = 1.0
    image[6, 9] = 0.5
    image[8, 1] = 0.05  # below the threshold
    assert ink_bounding_box(image) == (2, 7, 3, 10)
    assert ink_bounding_box(image, threshold=0.01) == (2, 9, 1, 10)
    assert ink_bounding_box(np.zeros((4, 4))) is None
    np.testing.assert_array_equal(crop_to_ink(image), image[2:7, 3:10])


def test_center_of_mass_known_values():
    image = np.zeros((5, 7))
    image[3, 5] = 2.0
    assert center_of_mass(image) == (3.0, 5.0)
    image[1, 1] = 2.0
    assert center_of_mass(image) == (2.0, 3.0)
    with pytest.raises(EmptyDrawingError):
        center_of_mass(np.zeros((3, 3)))


def test_center_by_mass_moves_the_mass_to_the_middle():
    digit = np.zeros((20, 10))
    digit[0:20, 0:2] = 1.0  # a stem on the left ...
    digit[9:14, 0:10] = 3.0  # ... and a heavy bar below the middle
    out = center_by_mass(digit)
    assert out.sum() == pytest.approx(digit.sum())
    cy, cx = center_of_mass(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


def test_center_by_mass_never_drops_ink():
    digit = np.zeros((20, 20))
    digit[0, 0] = 1.0  # extremely lopsided: centring would push it out
    digit[19, 19] = 0.01
    out = center_by_mass(digit)
    assert out.sum() == pytest.approx(digit.sum())


def test_resize_keeps_constants_and_averages_fine_detail():
    np.testing.assert_allclose(resize_antialiased(np.full((40, 30), 0.7), (7, 9)), 0.7)
    checker = (np.indices((100, 100)).sum(axis=0) % 2).astype(float)
    small = resize_antialiased(checker, (10, 10))
    np.testing.assert_allclose(small, 0.5, atol=0.02)  # no aliasing of a fine pattern
    up = resize_antialiased(np.array([[0.0, 1.0]]), (1, 4))
    assert np.all(np.diff(up[0]) >= 0) and up[0, 0] < up[0, -1]  # linear interpolation


def test_fit_into_box_is_square_and_uses_the_whole_box():
    crop = np.ones((30, 10))
    out = fit_into_box(crop, 20)
    assert out.shape == (20, 20)
    assert out[:, 10].min() > 0.99  # full height
    assert out[:, 0].max() == 0.0  # padding at the sides
    assert bbox(out, 0.5)[1] in (6, 7)  # 10/30 of 20


def test_to_ink_channels():
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[1, 1] = (255, 255, 255)
    ink = to_ink(rgb)
    assert ink[1, 1] == pytest.approx(1.0) and ink.sum() == pytest.approx(1.0)


def test_max_and_min_filters():
    image = np.zeros((9, 9))
    image[4, 4] = 1.0
    assert max_filter(image, 2).sum() == 25
    assert min_filter(max_filter(image, 2), 2).sum() == 1
    np.testing.assert_array_equal(max_filter(image, 0), image)
