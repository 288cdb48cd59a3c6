"""Reference implementations of the exercises of ch01 (see :mod:`course_lib.reference`)."""

from __future__ import annotations

from typing import Any

from course_lib.functions import cross_entropy_error, numerical_diff, softmax
from course_lib.gradcheck import numerical_gradient

#: exercise name -> reference object
EXERCISES: dict[str, Any] = {
    "softmax": softmax,
    "cross_entropy_error": cross_entropy_error,
    "numerical_diff": numerical_diff,
    "numerical_gradient": numerical_gradient,
}
