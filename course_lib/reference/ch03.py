"""Reference implementations of the exercises of ch03 (see :mod:`course_lib.reference`)."""

from __future__ import annotations

from typing import Any

from course_lib.layers import BatchNormalization, Dropout
from course_lib.optimizers import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop

#: exercise name -> reference object
EXERCISES: dict[str, Any] = {
    "SGD": SGD,
    "Momentum": Momentum,
    "Nesterov": Nesterov,
    "AdaGrad": AdaGrad,
    "RMSprop": RMSprop,
    "Adam": Adam,
    "BatchNormalization": BatchNormalization,
    "Dropout": Dropout,
}
