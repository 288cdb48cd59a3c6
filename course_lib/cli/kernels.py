"""``course-lib warm-kernels``: compile the layers' kernels ahead, so no notebook waits for it.

``./course.sh start`` runs it in the background; see :mod:`course_lib.kernels.warm`.
"""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from course_lib.kernels import warm

    return warm.run(args)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from course_lib.kernels import warm

    p = sub.add_parser(
        "warm-kernels",
        help="compile the compiled kernels ahead of time (cached: once per install)",
        description="Run the course's models once through the layers (float32 and float64, one "
        "and two threads) so that every compiled kernel they use is in Numba's cache "
        "(course_lib.kernels.cache_dir()): no notebook then waits for the compiler. Returns at "
        "once when a finished warm-up's stamp matches this install.",
    )
    warm.add_arguments(p)
    p.set_defaults(func=run)
