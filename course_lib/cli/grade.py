"""``course-lib grade SUBMISSIONS``: autograde a class, robustly (see docs/grading.md)."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from course_lib.grading.course import DEFAULT_KERNEL_USER, Limits

if TYPE_CHECKING:
    from course_lib.grading.batch import BatchResult

__all__ = ["add_parser", "parse_size", "run"]


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
    limits = Limits()
    p.add_argument(
        "--cell-timeout",
        type=int,
        default=None,
        help=f"seconds per cell (default: the course's, else {limits.cell_timeout})",
    )
    p.add_argument(
        "--notebook-timeout",
        type=float,
        default=None,
        help=f"seconds per notebook (default: the course's, else {limits.notebook_timeout:g})",
    )
    p.add_argument(
        "--memory",
        type=parse_size,
        default=None,
        help=f"memory limit of a student's kernel (default: the course's, else "
        f"{limits.memory // 1024**3}G)",
    )
    p.add_argument(
        "--full", action="store_true", help="run notebooks in full mode (default: COURSE_QUICK=1)"
    )
    p.add_argument(
        "-s",
        "--student",
        action="append",
        default=None,
        help="grade only this student (repeatable; with -a, one assignment): a regrade that "
        "leaves the other students' grades as they are",
    )
    p.add_argument(
        "--kernel-user",
        default=DEFAULT_KERNEL_USER,
        help="account kernels run as when grading as root ('' to keep root)",
    )
    p.add_argument(
        "--sandbox",
        choices=("auto", "bwrap", "off"),
        default=os.environ.get("COURSE_LIB_SANDBOX", "auto"),
        help="kernels in a bubblewrap sandbox: where bwrap can run (auto, the default; else "
        "limits only, said once), always (bwrap: refuse to grade without), never (off)",
    )
    p.add_argument("--no-feedback", action="store_true", help="skip feedback HTML")
    p.add_argument(
        "--no-isolation",
        action="store_true",
        help="run test cells in the student's kernel (plain nbgrader; not tamper-proof)",
    )
    p.set_defaults(func=run)


#: Exit codes of ``course-lib grade`` (docs/grading.md).
EXIT_OK, EXIT_NOT_GRADED, EXIT_USAGE, EXIT_FEEDBACK = 0, 1, 2, 3


def run(args: argparse.Namespace) -> int:
    """Grade; exit 0 when every submission was graded and its feedback written, 1 when some
    submission could not be graded normally, 2 on a usage error, 3 when only feedback failed."""
    from course_lib.grading.batch import GradeOptions, grade_batch
    from course_lib.grading.course import ReleaseError, load_course

    if not args.submissions.is_dir():
        print(f"course-lib grade: {args.submissions} is not a folder of submissions")
        return EXIT_USAGE
    try:
        course = load_course(args.course_root)
    except ReleaseError as exc:
        print(f"course-lib grade: {exc}")
        return EXIT_USAGE
    unknown = sorted(set(args.assignment or ()) - set(course.available_assignments()))
    if unknown:
        print(f"course-lib grade: unknown assignment(s) {', '.join(unknown)}")
        return EXIT_USAGE
    missing = sorted(s for s in args.student or () if not (args.submissions / s).is_dir())
    if missing:
        print(f"course-lib grade: no submissions of {', '.join(missing)} in {args.submissions}")
        return EXIT_USAGE
    from course_lib.grading.sandbox import probe

    # the kernels' launcher reads it (IsolatedExecute.sandbox), in every worker process
    os.environ["COURSE_LIB_SANDBOX"] = args.sandbox
    if args.sandbox != "off" and not probe().available:
        if args.sandbox == "bwrap":
            print(f"course-lib grade: {probe().describe()}")
            return EXIT_USAGE
        print(f"note: {probe().describe()}")
    output = args.output or (course.root / "graders" / "grading")
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
        students=args.student,
    )
    with quiet_libraries():
        result = grade_batch(
            args.submissions,
            output,
            course=course,
            assignments=args.assignment,
            db_url=args.db,
            options=options,
        )
    print(format_summary(result))
    print(f"results in {output} (gradebook, autograded/, feedback/, grades.csv, summary.json)")
    if result.failed:
        return EXIT_NOT_GRADED
    return EXIT_FEEDBACK if result.feedback_problems else EXIT_OK


def format_summary(result: BatchResult) -> str:
    """Every submission with its score, problems and findings; the feedback step's problems,
    the rate and how many submissions could not be graded normally."""
    lines = ["", "Summary", "======="]
    for student in sorted(result.students):
        for assignment, entry in sorted(result.students[student].items()):
            score, max_score = float(entry["score"] or 0), float(entry["max_score"] or 0)
            lines.append(f"{student:<24} {assignment:<28} {score:6.1f} / {max_score:.1f}")
            lines += [f"    - {problem}" for problem in entry["problems"]]
            lines += [f"    - {finding['where']}" for finding in entry["findings"]]
    lines += [f"feedback step: {problem}" for problem in result.feedback_problems]
    n = result.submissions
    rate = n / (result.seconds / 60) if result.seconds else 0.0
    lines.append(f"{n} submissions in {result.seconds:.1f} s ({rate:.1f} per minute)")
    if result.failed:
        lines.append(f"{result.failed} submission(s) could not be graded normally (see above)")
    return "\n".join(lines)


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """No library warnings on the instructor's terminal (SQLAlchemy's about nbgrader's
    sessions, deprecations): what matters is in the summary."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
