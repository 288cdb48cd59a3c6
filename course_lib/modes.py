"""Quick or full mode of the chapters: one switch, read in one place.

Every chapter's first cell says::

    QUICK = course_lib.quick_mode(True)  # True: small subsets, every cell under a minute; False: full run

The argument is the student's choice. The environment variable ``COURSE_QUICK`` (``1`` or
``0``), when set, overrides it: ``course-lib grade`` sets it (quick unless ``--full``), and so do
the tests. Under plain nbgrader (``NBGRADER_EXECUTION`` set, ``COURSE_QUICK`` not) the chapter runs
in quick mode whatever the submission says: a student who left ``False`` in the first cell is
graded in the time the grader allows, like everyone else.
"""

from __future__ import annotations

import os

__all__ = ["quick_mode"]


def quick_mode(default: bool = True) -> bool:
    """Whether the chapter runs in quick mode: ``COURSE_QUICK`` if set, else quick under
    nbgrader, else ``default``.

    Raises ``ValueError`` for a ``COURSE_QUICK`` other than ``0`` / ``1`` (a typo must not
    silently start a 40-minute run).
    """
    value = os.environ.get("COURSE_QUICK", "").strip()
    if value == "":
        quick = bool(default) or "NBGRADER_EXECUTION" in os.environ
    elif value in ("1", "0"):
        quick = value == "1"
    else:
        raise ValueError(f"COURSE_QUICK must be 1 (quick) or 0 (full), not {value!r}")
    print(
        "quick mode: small subsets, every cell under about a minute"
        if quick
        else "full mode: all data, the long runs state their time"
    )
    return quick
