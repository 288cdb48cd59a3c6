"""Reference implementations of the exercises of ch06 (see :mod:`course_lib.reference`)."""

from __future__ import annotations

from typing import Any

#: exercise name -> reference object
EXERCISES: dict[str, Any] = {}
