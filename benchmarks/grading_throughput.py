"""Grading throughput: submissions per minute of ``course-lib grade`` (local pool and Dask).

    python benchmarks/grading_throughput.py --assignment ch02_backpropagation --students 6 \
        --jobs 1 2 --dask

Each student submits the instructor's solution (every test runs to completion, which is the
expensive case). Feedback generation is excluded; the gradebook preparation is included.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from course_lib.grading.batch import GradeOptions, grade_batch

REPO = Path(__file__).resolve().parents[1]


def run(assignment: str, students: int, jobs: int, dask: str | None) -> float:
    with tempfile.TemporaryDirectory(prefix="grading-bench-") as tmp:
        subs = Path(tmp) / "submitted"
        source = REPO / "solutions" / assignment / f"{assignment}.ipynb"
        for i in range(students):
            folder = subs / f"student{i:03d}" / assignment
            folder.mkdir(parents=True)
            shutil.copy(source, folder / source.name)
        started = time.monotonic()
        result = grade_batch(
            subs,
            Path(tmp) / "out",
            course_root=REPO,
            assignments=[assignment],
            options=GradeOptions(jobs=jobs, dask=dask, feedback=False),
            log=lambda _m: None,
        )
        seconds = time.monotonic() - started
        assert result.submissions == students
    return students / (seconds / 60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assignment", default="ch02_backpropagation")
    parser.add_argument("--students", type=int, default=6)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dask", action="store_true", help="also measure --dask local")
    args = parser.parse_args()
    for jobs in args.jobs:
        rate = run(args.assignment, args.students, jobs, None)
        print(f"local pool, jobs={jobs}: {rate:.2f} submissions/min")
    if args.dask:
        jobs = max(args.jobs)
        rate = run(args.assignment, args.students, jobs, "local")
        print(f"dask LocalCluster, {jobs} workers: {rate:.2f} submissions/min")


if __name__ == "__main__":
    main()
