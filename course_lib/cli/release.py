"""``course-lib release``: regenerate the student notebooks in ``chapters/`` with nbgrader.

``course-lib release`` rewrites ``chapters/`` from ``solutions/``; ``course-lib release --check``
only compares and exits 1 when ``chapters/`` is stale (CI runs it). ``--update-gradebook`` also
records the assignments in the course gradebook, which ``nbgrader autograde`` needs.
"""

from __future__ import annotations

import argparse
import sys
import time

from course_lib.grading.course import CONFIG_RELATIVE_PATH, ReleaseError, load_course
from course_lib.release import release, update_gradebook


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "release",
        help="generate the student notebooks (chapters/) from solutions/ with nbgrader",
        description=(
            "Run `nbgrader generate_assignment` on every registered assignment whose "
            "solutions/<id>/ notebook exists, normalise the result (no outputs, no volatile "
            "metadata, stable JSON) and replace chapters/ with it. With --check, only compare "
            "and exit 1 when chapters/ is stale."
        ),
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 listing stale, missing and extra files if chapters/ differs",
    )
    parser.add_argument(
        "--assignment",
        action="append",
        metavar="ID",
        help="release only this assignment (repeatable; default: all with solutions)",
    )
    parser.add_argument(
        "--update-gradebook",
        action="store_true",
        help="also record the assignments in the course gradebook (needed before autograding)",
    )
    parser.add_argument(
        "--course-root",
        metavar="PATH",
        help=f"course root holding {CONFIG_RELATIVE_PATH} (default: search upwards from cwd)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.check and args.update_gradebook:
        print(
            "course-lib release: --check and --update-gradebook exclude each other", file=sys.stderr
        )
        return 2
    start = time.perf_counter()
    try:
        course = load_course(args.course_root or None)
        result = release(course, assignments=args.assignment, check=args.check)
    except ReleaseError as exc:
        print(f"course-lib release: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    config = course
    chapters = config.release_directory
    for name in result.skipped:
        print(f"skipped {name}: no {config.source_directory}/{name}/*.ipynb yet")

    if args.check:
        if result.diff.clean:
            print(
                f"{chapters}/ is up to date ({len(result.assignments)} assignments: "
                f"{', '.join(result.assignments) or 'none'}; {elapsed:.1f} s)"
            )
            return 0
        n = len(result.diff.stale) + len(result.diff.missing) + len(result.diff.extra)
        files = "1 file differs" if n == 1 else f"{n} files differ"
        print(f"{chapters}/ is stale ({files} from a fresh release):", file=sys.stderr)
        for kind in ("stale", "missing", "extra"):
            for rel in getattr(result.diff, kind):
                print(f"  {kind + ':':8} {chapters}/{rel}", file=sys.stderr)
                for line in result.diff.details.get(rel, []):
                    print(f"      {line}", file=sys.stderr)
        scope = "".join(f" --assignment {a}" for a in args.assignment or [])
        print(
            f"Fix: run `course-lib release{scope}` and commit {chapters}/ (`git add {chapters}`).",
            file=sys.stderr,
        )
        return 1

    if result.written:
        print(
            f"released {len(result.assignments)} assignment"
            f"{'' if len(result.assignments) == 1 else 's'} into {chapters}/ "
            f"({', '.join(result.assignments)}; {elapsed:.1f} s)"
        )
    else:
        print(f"{chapters}/ already up to date ({', '.join(result.assignments) or 'none'})")

    if args.update_gradebook:
        try:
            names = update_gradebook(course, result.assignments)
        except ReleaseError as exc:
            print(f"course-lib release: gradebook update failed: {exc}", file=sys.stderr)
            return 2
        print(f"recorded {', '.join(names) or 'nothing'} in the gradebook {config.db_url}")
    return 0
