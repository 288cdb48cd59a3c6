"""``course-lib progress``: your progress per exercise check, as a table.

The same evidence as the course home (``START_HERE.ipynb``): the last ``course-lib validate``
of a chapter where the notebook has not changed since, else the outputs saved in the notebook
(see :mod:`course_lib.course_home`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from course_lib.course_home import course_progress, format_progress

__all__ = ["add_parser", "show"]


def _paths(workspace: str | os.PathLike[str] | None) -> tuple[Path, Path]:
    from course_lib.cli.lab import find_course_root

    root = find_course_root()
    chosen = workspace or os.environ.get("COURSE_LIB_WORKSPACE") or root / "workspace"
    return Path(chosen).resolve(), root / "chapters"


def show(workspace: str | os.PathLike[str] | None = None) -> None:
    """Print the progress table (the course home's refresh cell calls this)."""
    if workspace is None and Path("START_HERE.ipynb").is_file():
        workspace = Path.cwd()  # the kernel of the course home runs in the workspace
    ws, chapters = _paths(workspace)
    print(format_progress(course_progress(ws, chapters)))


def run(args: argparse.Namespace) -> int:
    ws, chapters = _paths(args.workspace)
    if not ws.is_dir():
        print(f"no workspace at {ws} yet: ./course.sh start creates it")
        return 2
    print(f"your progress in {ws}\n")
    print(format_progress(course_progress(ws, chapters)))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "progress",
        help="your progress per exercise check (passing, failing, not attempted)",
        description="A table of every check (test cell) of every chapter with its status: "
        "from your last `course-lib validate` where the notebook has not changed since, "
        "else from the outputs saved in your notebook.",
    )
    p.add_argument(
        "--workspace",
        default=None,
        help="where your copies of the chapters live (default: workspace/ in the course)",
    )
    p.set_defaults(func=run)
