"""The course's reference implementation of every exercise, by the name the student writes.

A stuck student continues a chapter with ONE line that switches to the reference object, e.g.::

    Relu = course_lib.reference.Relu

Such an exercise earns no points (the grader detects any execution of the reference while the
student's graded code runs), but the rest of the chapter works.

Each chapter module (``ch01`` ... ``ch06``) defines ``EXERCISES: dict[str, object]``: the
exercise names that chapter teaches, mapped to their reference objects. Where ``course_lib``
already has the object (``course_lib.layers.Relu``), the chapter module re-exports it; where
not (``MulLayer``, ``gradient_descent``, ``shift_images``, ...), the chapter module defines it.

Public API:

- ``course_lib.reference.<name>``: the reference object of exercise ``<name>``;
- :data:`EXERCISES`: ``{name: object}`` over all chapters;
- :data:`CHAPTER_OF`: ``{name: "ch02_backpropagation"}``, the chapter that teaches ``name``;
- :func:`reference_for`: the object of one exercise, with a clear error for an unknown name.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import Any

__all__ = ["CHAPTERS", "CHAPTER_OF", "EXERCISES", "reference_for"]

#: chapter module -> the chapter folder it belongs to (``chapters/<folder>/<folder>.ipynb``)
CHAPTERS: dict[str, str] = {
    "ch01": "ch01_differentiation",
    "ch02": "ch02_backpropagation",
    "ch03": "ch03_training_techniques",
    "ch04": "ch04_convolutional_networks",
    "ch05": "ch05_deep_networks",
    "ch06": "ch06_draw_a_digit",
}


def _collect() -> tuple[dict[str, Any], dict[str, str]]:
    exercises: dict[str, Any] = {}
    chapter_of: dict[str, str] = {}
    for module_name, folder in CHAPTERS.items():
        module = importlib.import_module(f"{__name__}.{module_name}")
        for name, obj in module.EXERCISES.items():
            if name in exercises:
                raise RuntimeError(
                    f"exercise {name!r} is registered by both {chapter_of[name]} and {folder}"
                )
            exercises[name] = obj
            chapter_of[name] = folder
    return exercises, chapter_of


_exercises, _chapter_of = _collect()
EXERCISES = MappingProxyType(_exercises)
CHAPTER_OF = MappingProxyType(_chapter_of)


def reference_for(name: str) -> Any:
    """The reference object of exercise ``name`` (``KeyError`` naming the known ones if none)."""
    try:
        return EXERCISES[name]
    except KeyError:
        raise KeyError(
            f"no reference implementation for {name!r}; exercises: {', '.join(sorted(EXERCISES))}"
        ) from None


def __getattr__(name: str) -> Any:
    if name in _exercises:
        return _exercises[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_exercises})
