"""The ``course-lib`` command: one subcommand per user task.

Each subcommand lives in its own module of this package and exposes
``add_parser(subparsers)``, which registers an ``argparse`` parser whose
``func`` default is called with the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Subcommand modules, in the order ``course-lib --help`` lists them.
SUBCOMMANDS: tuple[str, ...] = ("lab", "data", "release", "grade", "train", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="course-lib",
        description="Deep learning from scratch: the course, its grader and its tools.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"course_lib.cli.{name}")
        except ModuleNotFoundError as exc:  # a subcommand not built yet
            if exc.name != f"course_lib.cli.{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
