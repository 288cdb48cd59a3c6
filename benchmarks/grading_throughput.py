"""Grading throughput: chapter-2 submissions per minute of ``course-lib grade``, and the CPU
time each submission costs.

    python benchmarks/grading_throughput.py --students 4 --jobs 2 --repeat 3 [--dask]
    python benchmarks/grading_throughput.py --profile       # where one submission's time goes

Each student submits the instructor's solution, so every test runs to completion (the
expensive case); a run fails unless every autograded test passes. The gradebook preparation
is included, feedback is not. Besides wall-clock rates (which on a shared machine depend on
the load, printed with each run), every run reports the CPU seconds of ALL the processes it
started (the fork server's workers, kernels and verdict processes included: the fork server is
stopped and reaped after each run, so its children's CPU time reaches this process), which
does not depend on the load: CPU seconds per submission, and what it implies on idle cores
(``cores * 60 / cpu_per_submission``).

``--course-root`` grades with another course (e.g. a snapshot of an older version) so that
two versions of the grader can grade the same notebooks: run this script with each version's
interpreter, alternating, to compare them under the same load.

``--profile`` grades one submission in this process and prints the wall time of each phase
(the worker's own work, nbgrader's bookkeeping, verdict start, kernel start, notebook cells,
test cells, verdict stop; the preprocessor's methods are wrapped with timers) with the CPU
seconds of this process and of its children.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import inspect
import json
import multiprocessing.forkserver
import os
import platform
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

import nbformat

from course_lib.grading.batch import GradeOptions, grade_batch

REPO = Path(__file__).resolve().parents[1]


def _cpu(children: bool = True) -> float:
    """CPU seconds of this process (and of every child it has reaped)."""
    usage = [resource.getrusage(resource.RUSAGE_SELF)]
    if children:
        usage.append(resource.getrusage(resource.RUSAGE_CHILDREN))
    return sum(u.ru_utime + u.ru_stime for u in usage)


class SandboxCPU(threading.Thread):
    """CPU seconds of the processes in bubblewrap sandboxes below this process.

    A sandboxed kernel lives in its own PID namespace; the grader ends it by killing bwrap, so
    no process of ours ever reaps it and ``RUSAGE_CHILDREN`` never counts it. This thread reads
    the CPU time of every such process (a descendant whose ``NSpid`` has two entries) from
    /proc every ``interval`` seconds and keeps the last value seen: it misses at most the last
    interval of each. Its own CPU time is reported, to be subtracted from this process's.
    """

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.interval, self.seen, self.own = interval, {}, 0.0
        self.done = threading.Event()

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self.done.wait(self.interval):
            for proc in me.children(recursive=True):
                try:
                    with open(f"/proc/{proc.pid}/status") as fh:
                        nspid = next(line for line in fh if line.startswith("NSpid:"))
                    if len(nspid.split()) > 2:
                        times = proc.cpu_times()
                        self.seen[(proc.pid, proc.create_time())] = times.user + times.system
                except (OSError, StopIteration, psutil.Error):
                    continue
            self.own = time.thread_time()

    def stop(self) -> float:
        """Stop sampling; the CPU seconds of the sandboxed processes seen."""
        self.done.set()
        self.join()
        return sum(self.seen.values())


def _stop_forkserver() -> None:
    """Stop and reap the fork server, so that its children's CPU time is counted."""
    server = multiprocessing.forkserver._forkserver
    if getattr(server, "_forkserver_pid", None) is not None:
        server._stop()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _auto_points(notebook: Path) -> float:
    """Points of the autograded test cells (manually graded answers excluded)."""
    nb = nbformat.read(str(notebook), as_version=4)
    metas = [c.metadata.get("nbgrader", {}) for c in nb.cells]
    return sum(float(m.get("points", 0)) for m in metas if m.get("grade") and not m.get("solution"))


def _submissions(root: Path, assignment: str, students: int, where: Path) -> Path:
    source = root / "solutions" / assignment / f"{assignment}.ipynb"
    for i in range(students):
        folder = where / f"student{i:03d}" / assignment
        folder.mkdir(parents=True)
        shutil.copy(source, folder / source.name)
    return source


def run(root: Path, assignment: str, students: int, jobs: int, dask: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="grading-bench-") as tmp:
        source = _submissions(root, assignment, students, Path(tmp) / "submitted")
        _stop_forkserver()
        load_before, cpu_before, main_before = os.getloadavg()[0], _cpu(), _cpu(children=False)
        sandboxed = SandboxCPU()
        sandboxed.start()
        started = time.monotonic()
        result = grade_batch(
            Path(tmp) / "submitted",
            Path(tmp) / "out",
            course_root=root,
            assignments=[assignment],
            options=GradeOptions(jobs=jobs, dask=dask, feedback=False),
            log=lambda _m: None,
        )
        seconds = time.monotonic() - started
        time.sleep(1.0)  # the fork server reaps its last worker (its CPU time counts)
        _stop_forkserver()
        kernels = sandboxed.stop()
        main_cpu = _cpu(children=False) - main_before - sandboxed.own
        cpu = _cpu() - cpu_before - sandboxed.own + kernels
        assert result.submissions == students
        wanted = _auto_points(source)
        scores = sorted(float(e[assignment]["score"]) for e in result.students.values())
        assert scores == [wanted] * students, f"every test must pass ({wanted}): {scores}"
    return {
        "setting": f"dask LocalCluster, {jobs} workers" if dask else f"local pool, jobs={jobs}",
        "jobs": jobs,
        "dask": dask,
        "students": students,
        "seconds": round(seconds, 1),
        "per_minute": round(students / (seconds / 60), 2),
        # Dask's workers are not this process's children: their CPU time is not counted
        "cpu_seconds": None if dask else round(cpu, 1),
        "cpu_per_submission": None if dask else round(cpu / students, 2),
        # this process: preparing the gradebook, merging results, the summary
        "cpu_main_seconds": round(main_cpu, 1),
        # of which in sandboxed kernels (sampled, see SandboxCPU); the sampler's own CPU is not
        # counted
        "cpu_sandboxed_seconds": round(kernels, 1),
        "cpu_sampler_seconds": round(sandboxed.own, 2),
        "load_before": round(load_before, 1),
        "load_after": round(os.getloadavg()[0], 1),
    }


def _timed(cls: type, name: str, totals: dict[str, float]) -> None:
    """Wrap ``cls.name`` (a function or a coroutine function) to add its wall time to
    ``totals[name]``: instrumentation of this benchmark only."""
    original = getattr(cls, name)

    if inspect.iscoroutinefunction(original):

        async def timed(*args: object, **kwargs: object) -> object:
            started = time.monotonic()
            try:
                return await original(*args, **kwargs)
            finally:
                totals[name] = totals.get(name, 0.0) + time.monotonic() - started

    else:

        def timed(*args: object, **kwargs: object) -> object:
            started = time.monotonic()
            try:
                return original(*args, **kwargs)
            finally:
                totals[name] = totals.get(name, 0.0) + time.monotonic() - started

    setattr(cls, name, timed)


def profile(root: Path, assignment: str) -> dict:
    """One submission in this process: wall time per phase, CPU of this process and children."""
    from nbgrader.apps import NbGraderAPI

    from course_lib.grading import gradebook, tasks, verdict
    from course_lib.grading.course import load_course
    from course_lib.grading.execute import IsolatedExecute
    from course_lib.grading.verdict import VerdictProcess

    totals: dict[str, float] = collections.defaultdict(float)
    for name in (
        "preprocess",
        "_start_verdict",
        "_connect_verdict",
        "start_new_kernel_client",
        "_run_test_cell",
        "execute_cell",
    ):
        _timed(IsolatedExecute, name, totals)
    _timed(VerdictProcess, "stop", totals)
    _timed(NbGraderAPI, "autograde", totals)
    course = load_course(root)
    tmp = Path(tempfile.mkdtemp(prefix="grading-profile-"))
    _submissions(root, assignment, 1, tmp / "submitted")
    os.environ["COURSE_QUICK"] = "1"
    started = time.monotonic()
    template = gradebook.prepare(
        course, tmp / "out", f"sqlite:///{tmp / 'out' / 'gradebook.db'}", [assignment], tmp / "w"
    )
    totals["prepare (once per batch)"] = time.monotonic() - started
    task = tasks.GradeTask(
        "student000", assignment, tmp / "submitted" / "student000" / assignment,
        course, template, course.limits, env={"COURSE_QUICK": "1"},
    )  # fmt: skip
    verdict.preimport()  # as the batch's fork server does, once per batch
    cwd = os.getcwd()
    os.chdir(tmp)
    sandboxed = SandboxCPU()
    sandboxed.start()
    try:
        cpu0, own0, t0 = _cpu(), resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        result = tasks.grade_one(task)
        own1 = resource.getrusage(resource.RUSAGE_SELF)
        wall, cpu = time.monotonic() - t0, _cpu() - cpu0
    finally:
        os.chdir(cwd)
        shutil.rmtree(tmp, ignore_errors=True)
    kernel_cpu = sandboxed.stop()
    own_cpu = own1.ru_utime + own1.ru_stime - own0.ru_utime - own0.ru_stime - sandboxed.own
    kernel_start = totals["start_new_kernel_client"] - totals["_connect_verdict"]
    phases = {
        "whole submission (tasks.grade_one)": wall,
        "  worker: read, copy the gradebook, static pass": wall - totals["autograde"],
        "  nbgrader autograde": totals["autograde"],
        "    nbgrader bookkeeping (all but the execution)": totals["autograde"]
        - totals["preprocess"],
        "    IsolatedExecute": totals["preprocess"],
        "      verdict start (fork; setup, waited for after the kernel)": totals["_start_verdict"]
        + totals["_connect_verdict"],
        "      kernel start (without waiting for the verdict)": kernel_start,
        "      notebook cells in the kernel": totals["execute_cell"] - totals["_run_test_cell"],
        "      test cells in the verdict": totals["_run_test_cell"],
        "      verdict stop": totals["stop"],
        "prepare (once per batch, not in the above)": totals["prepare (once per batch)"],
    }
    return {
        "score": [result.score, result.status],
        "log_tail": result.log[-3000:] if result.status != "graded" else "",
        "wall_seconds": {k: round(v, 2) for k, v in phases.items()},
        "cpu_seconds": {
            "all processes": round(cpu - sandboxed.own + kernel_cpu, 2),
            "worker (this process)": round(own_cpu, 2),
            "children reaped (verdict; kernel without the sandbox)": round(
                cpu - sandboxed.own - own_cpu, 2
            ),
            "sandboxed kernel (sampled)": round(kernel_cpu, 2),
        },
        "load": round(os.getloadavg()[0], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assignment", default="ch02_backpropagation")
    parser.add_argument("--course-root", type=Path, default=REPO)
    parser.add_argument("--students", type=int, default=4)
    parser.add_argument("--jobs", type=int, nargs="+", default=[2])
    parser.add_argument("--repeat", type=int, default=1, help="rounds over the settings")
    parser.add_argument("--dask", action="store_true", help="also measure --dask local")
    parser.add_argument("--profile", action="store_true", help="phases of one submission")
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "benchmarks" / "results" / "grading_throughput.json",
        help="where the measurements are written (JSON)",
    )
    args = parser.parse_args()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    report: dict = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": _cpu_model(),
            "python": platform.python_version(),
        },
        "assignment": args.assignment,
        "course_root": str(args.course_root),
        "note": "each student submits the instructor's solution; gradebook preparation "
        "included, feedback excluded; COURSE_QUICK=1",
    }
    if args.profile:
        report["profile"] = profile(args.course_root, args.assignment)
        print(json.dumps(report["profile"], indent=1))
    else:
        settings = [(jobs, None) for jobs in args.jobs] + (
            [(max(args.jobs), "local")] if args.dask else []
        )
        report["runs"] = []
        for _ in range(args.repeat):
            for jobs, dask in settings:
                row = run(args.course_root, args.assignment, args.students, jobs, dask)
                report["runs"].append(row)
                print(
                    f"{row['setting']:<32} {row['per_minute']:6.2f} submissions/min "
                    f"({row['students']} in {row['seconds']} s; CPU {row['cpu_per_submission']} s "
                    f"per submission; load {row['load_before']} -> {row['load_after']})",
                    flush=True,
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
