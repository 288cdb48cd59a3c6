"""Interactive notebook widgets.

- :class:`DigitPad`: draw a digit and watch a network classify it live
  (needs the ``course`` extra: ipywidgets 8 and anywidget).
- :func:`preprocess_drawing`: a drawing → a 28×28 MNIST-like image (plain NumPy).
- :func:`my_network`: the student's own saved network built from their own layers (the
  finale of chapter 6; see :mod:`course_lib.widgets.finale`).
- :func:`predict_digit`: preprocess (course_lib's or your own function) and classify with any
  object that has ``predict(x)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from course_lib.widgets.classify import (
    DigitPrediction,
    ModelAdapter,
    Predictor,
    PreprocessingError,
    predict_digit,
)
from course_lib.widgets.finale import SAVED_NETWORKS, my_network, pretrained_with_layers
from course_lib.widgets.preprocess import (
    BOX_SIZE,
    FIELD_SIZE,
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

if TYPE_CHECKING:
    from course_lib.widgets.digitpad import DigitCanvas, DigitPad

__all__ = [
    "BOX_SIZE",
    "FIELD_SIZE",
    "DigitCanvas",
    "DigitPad",
    "DigitPrediction",
    "EmptyDrawingError",
    "ModelAdapter",
    "SAVED_NETWORKS",
    "Predictor",
    "PreprocessingError",
    "center_by_mass",
    "center_of_mass",
    "crop_to_ink",
    "fit_into_box",
    "ink_bounding_box",
    "my_network",
    "predict_digit",
    "preprocess_drawing",
    "pretrained_with_layers",
    "resize_antialiased",
    "to_ink",
]


def __getattr__(name: str) -> Any:
    # The widget needs ipywidgets and anywidget (the ``course`` extra); import it
    # only when asked for, so the NumPy preprocessing works without them.
    if name in ("DigitPad", "DigitCanvas"):
        from course_lib.widgets import digitpad

        return getattr(digitpad, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
