"""Grading throughput: submissions per minute of ``course-lib grade`` (local pool and Dask).

    python benchmarks/grading_throughput.py --assignment ch02_backpropagation --students 6 \
        --jobs 1 2 --dask

Each student submits the instructor's solution (every test runs to completion, which is the
expensive case). Feedback generation is excluded; the gradebook preparation is included.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from course_lib.grading.batch import GradeOptions, grade_batch

REPO = Path(__file__).resolve().parents[1]


def _load() -> float:
    return os.getloadavg()[0]


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run(assignment: str, students: int, jobs: int, dask: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="grading-bench-") as tmp:
        subs = Path(tmp) / "submitted"
        source = REPO / "solutions" / assignment / f"{assignment}.ipynb"
        for i in range(students):
            folder = subs / f"student{i:03d}" / assignment
            folder.mkdir(parents=True)
            shutil.copy(source, folder / source.name)
        load_before = _load()
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
        scores = sorted(
            float(e[assignment]["score"]) / float(e[assignment]["max_score"])
            for e in result.students.values()
        )
        assert scores == [1.0] * students, f"the solution must score full marks: {scores}"
    return {
        "setting": f"dask LocalCluster, {jobs} workers" if dask else f"local pool, jobs={jobs}",
        "jobs": jobs,
        "dask": dask,
        "students": students,
        "seconds": round(seconds, 1),
        "per_minute": round(students / (seconds / 60), 2),
        "load_before": round(load_before, 1),
        "load_after": round(_load(), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assignment", default="ch02_backpropagation")
    parser.add_argument("--students", type=int, default=6)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dask", action="store_true", help="also measure --dask local")
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "benchmarks" / "results" / "grading_throughput.json",
        help="where the measurements are written (JSON)",
    )
    args = parser.parse_args()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    runs = []
    settings = [(jobs, None) for jobs in args.jobs]
    if args.dask:
        settings.append((max(args.jobs), "local"))
    for jobs, dask in settings:
        row = run(args.assignment, args.students, jobs, dask)
        runs.append(row)
        print(
            f"{row['setting']:<32} {row['per_minute']:6.2f} submissions/min "
            f"({row['students']} in {row['seconds']} s; load {row['load_before']} -> "
            f"{row['load_after']})",
            flush=True,
        )
    report = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "cpu": _cpu(), "python": platform.python_version()},
        "assignment": args.assignment,
        "note": "each student submits the instructor's solution; gradebook preparation "
        "included, feedback excluded; COURSE_QUICK=1",
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
