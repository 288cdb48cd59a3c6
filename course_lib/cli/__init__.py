"""The ``course-lib`` command: one subcommand per user task.

Each subcommand lives in its own module of this package and exposes
``add_parser(subparsers)``, which registers an ``argparse`` parser whose
``func`` default is called with the parsed arguments and returns an exit code.
A subcommand whose parser sets the default ``passthrough=[]`` receives every option it does
not know itself in ``args.passthrough`` (``course-lib lab --port 8899`` hands ``--port 8899``
to JupyterLab), and everything after a ``--`` unchanged.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from collections.abc import Callable, Sequence
from typing import Any

#: Subcommand modules, in the order ``course-lib --help`` lists them.
SUBCOMMANDS: tuple[str, ...] = (
    "lab",
    "validate",
    "progress",
    "data",
    "release",
    "grade",
    "train",
    "bench",
    "kernels",
)


def options_for(function: Callable[..., Any], args: argparse.Namespace, **given: Any) -> dict:
    """Keyword arguments for ``function``: the options in ``args`` named as its parameters,
    then ``given`` (options named otherwise, or computed), which win."""
    names = inspect.signature(function).parameters
    return {**{k: v for k, v in vars(args).items() if k in names}, **given}


def version() -> str:
    """The installed version of the ``course_lib`` distribution."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("course_lib")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree, not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="course-lib",
        description="Deep learning from scratch: the course, its grader and its tools.",
    )
    parser.add_argument("--version", action="version", version=f"course-lib {version()}")
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


def parse_args(
    argv: Sequence[str], parser: argparse.ArgumentParser | None = None
) -> argparse.Namespace:
    """Parse a command line; unknown options go to ``passthrough`` where a command takes them."""
    parser = parser or build_parser()
    argv = list(argv)
    after: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, after = argv[:cut], argv[cut + 1 :]
    args, unknown = parser.parse_known_args(argv)
    if getattr(args, "passthrough", None) is None:
        if unknown or after:
            parser.error(f"unrecognized arguments: {' '.join(unknown + after)}")
    else:
        args.passthrough = [*unknown, *after]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    if list(sys.argv[1:] if argv is None else argv) == ["--version"]:
        print(f"course-lib {version()}")  # without importing every subcommand
        return 0
    parser = build_parser()
    args = parse_args(sys.argv[1:] if argv is None else argv, parser)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
