"""Reference implementations of the exercises of ch04 (see :mod:`course_lib.reference`)."""

from __future__ import annotations

from typing import Any

from course_lib.layers import Convolution, Pooling
from course_lib.util import col2im, conv_output_size, im2col

#: exercise name -> reference object
EXERCISES: dict[str, Any] = {
    "conv_output_size": conv_output_size,
    "im2col": im2col,
    "col2im": col2im,
    "Convolution": Convolution,
    "Pooling": Pooling,
}
