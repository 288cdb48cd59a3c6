"""Reference implementations of the exercises of ch06 (see :mod:`course_lib.reference`).

The preprocessing steps of a drawing are :mod:`course_lib.widgets.preprocess`'s; the chapter's
whole pipeline, ``preprocess_digit``, is :func:`course_lib.widgets.preprocess_drawing`.
"""

from __future__ import annotations

from typing import Any

from course_lib.widgets.preprocess import (
    center_by_mass,
    center_of_mass,
    fit_into_box,
    ink_bounding_box,
    preprocess_drawing,
)

#: the chapter's exercise ``preprocess_digit(drawing)``: a drawing -> (28, 28) float32 like MNIST
preprocess_digit = preprocess_drawing

#: exercise name -> reference object
EXERCISES: dict[str, Any] = {
    "ink_bounding_box": ink_bounding_box,
    "center_of_mass": center_of_mass,
    "fit_into_box": fit_into_box,
    "center_by_mass": center_by_mass,
    "preprocess_digit": preprocess_digit,
}
