"""``course-lib grade SUBMISSIONS``: autograde a class, robustly (see docs/grading.md)."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

__all__ = ["add_parser", "parse_size"]


def parse_size(text: str) -> int:
    """``"3G"``, ``"512M"``, ``"2048"`` (bytes) -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 3G, 512M)")
    factor = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}[match.group(2).upper()]
    return int(float(match.group(1)) * factor)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "grade",
        help="autograde submissions with nbgrader (isolated, parallel), feedback and CSV",
        description=(
            "Autograde every submission under SUBMISSIONS (nbgrader's layout: "
            "<student>/<assignment>/<notebook>.ipynb). Each submission runs in its own kernel "
            "with time and memory limits; test cells run in a separate pristine process; "
            "tampering and use of the reference implementation are detected. Writes the "
            "gradebook, autograded notebooks, feedback HTML, grades.csv and summary.json to "
            "--output. Submissions are never modified; running it again regrades."
        ),
    )
    p.add_argument("submissions", type=Path, help="folder of submissions (<student>/<assignment>/)")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="where results go (default: <course>/graders/grading)",
    )
    p.add_argument(
        "-a",
        "--assignment",
        action="append",
        default=None,
        help="grade only this assignment (repeatable; default: all found)",
    )
    p.add_argument(
        "--course-root",
        type=Path,
        default=None,
        help="course root holding graders/nbgrader_config.py (default: found from cwd)",
    )
    p.add_argument(
        "--db",
        default=os.environ.get("COURSE_LIB_GRADEBOOK_URL"),
        help="gradebook URL, e.g. postgresql://grader@host/course "
        "(default: SQLite in --output; env COURSE_LIB_GRADEBOOK_URL)",
    )
    p.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="submissions graded at once on this machine (default: all cores)",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--dask-scheduler",
        metavar="ADDRESS",
        default=None,
        help="run one task per submission on this Dask scheduler (tcp://host:8786)",
    )
    group.add_argument(
        "--dask",
        choices=["local"],
        default=None,
        help="'local': a Dask LocalCluster with --jobs workers",
    )
    p.add_argument("--cell-timeout", type=int, default=120, help="seconds per cell (default 120)")
    p.add_argument(
        "--notebook-timeout", type=float, default=900.0, help="seconds per notebook (default 900)"
    )
    p.add_argument(
        "--memory",
        type=parse_size,
        default=parse_size("4G"),
        help="memory limit of a student's kernel (default 4G)",
    )
    p.add_argument(
        "--full", action="store_true", help="run notebooks in full mode (default: COURSE_QUICK=1)"
    )
    p.add_argument(
        "--kernel-user",
        default="nobody",
        help="account kernels run as when grading as root ('' to keep root)",
    )
    p.add_argument("--no-feedback", action="store_true", help="skip feedback HTML")
    p.add_argument(
        "--no-isolation",
        action="store_true",
        help="run test cells in the student's kernel (plain nbgrader; not tamper-proof)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from course_lib.grading.batch import GradeOptions, grade_batch
    from course_lib.grading.release import ReleaseError, find_course_root

    if not args.submissions.is_dir():
        print(f"course-lib grade: {args.submissions} is not a folder of submissions")
        return 2
    try:
        root = find_course_root(args.course_root)
    except ReleaseError as exc:
        print(f"course-lib grade: {exc}")
        return 2
    output = args.output or (root / "graders" / "grading")
    options = GradeOptions(
        cell_timeout=args.cell_timeout,
        notebook_timeout=args.notebook_timeout,
        memory=args.memory,
        quick=not args.full,
        isolate=not args.no_isolation,
        kernel_user=args.kernel_user,
        jobs=max(1, args.jobs),
        dask=args.dask_scheduler or args.dask,
        feedback=not args.no_feedback,
    )
    result = grade_batch(
        args.submissions,
        output,
        course_root=root,
        assignments=args.assignment,
        db_url=args.db,
        options=options,
    )
    failed = sum(
        1
        for entries in result.students.values()
        for e in entries.values()
        if e["status"] != "graded"
    )
    print(f"results in {output} (gradebook, autograded/, feedback/, grades.csv, summary.json)")
    if failed:
        print(f"{failed} submission(s) could not be graded normally: see the summary above")
    return 0
