"""Reference implementations of the exercises of ch02 (see :mod:`course_lib.reference`)."""

from __future__ import annotations

from typing import Any

from course_lib.layers import Affine, Relu, Sigmoid, SoftmaxWithLoss

#: exercise name -> reference object
EXERCISES: dict[str, Any] = {
    "Relu": Relu,
    "Sigmoid": Sigmoid,
    "Affine": Affine,
    "SoftmaxWithLoss": SoftmaxWithLoss,
}
