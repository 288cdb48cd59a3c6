"""One submission's grading task: the contract with the worker, and the process that runs it.

:class:`GradeTask` is everything the worker needs, :class:`TaskResult` everything it gives
back; the batch and the worker exchange nothing else. :func:`run_task` runs the worker in a
process of its own (forked from a fork server that has nbgrader imported, or
``python -m course_lib.grading.worker`` where this process may not fork children, e.g. inside
a daemonic Dask worker), in its own session, and kills it with every process below it at the
time limit. It never raises: a crash or a timeout becomes a failed :class:`TaskResult`.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import multiprocessing.forkserver
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from course_lib.grading.course import (
    DEFAULT_KERNEL_USER,
    CourseConfig,
    Limits,
    load_course_config,
    nbgrader_environment,
)

__all__ = [
    "CellGrade",
    "GradeTask",
    "NotebookResult",
    "TaskResult",
    "forkserver_context",
    "kill_tree",
    "run_task",
]


@dataclass(frozen=True)
class GradeTask:
    """Grade the submission of ``student`` for ``assignment`` found in ``submission_dir``."""

    student: str
    assignment: str
    submission_dir: Path
    course: CourseConfig
    #: the SQLite gradebook holding the assignment, copied privately by the worker
    template_gradebook: Path
    limits: Limits
    isolate: bool = True
    kernel_user: str = DEFAULT_KERNEL_USER
    #: environment variables the notebooks run with (COURSE_QUICK, COURSE_LIB_DATA)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def seconds_allowed(self) -> float:
        return self.limits.task_seconds(len(self.course.notebooks(self.assignment)))

    def to_json(self) -> str:
        """The task as JSON for a fresh worker process (which reloads the course once)."""
        data = {k: v for k, v in asdict(self).items() if k != "course"}
        data["course_root"] = str(self.course.root)
        return json.dumps(data, default=str)

    @classmethod
    def from_json(cls, text: str) -> GradeTask:
        data = json.loads(text)
        course = load_course_config(data.pop("course_root"))
        return cls(
            **{
                **data,
                "course": course,
                "submission_dir": Path(data["submission_dir"]),
                "template_gradebook": Path(data["template_gradebook"]),
                "limits": Limits(**data["limits"]),
            }
        )


@dataclass
class CellGrade:
    """The grade of one graded cell, as nbgrader's autograder left it."""

    auto_score: float | None
    max_score: float
    needs_manual_grade: bool = False
    #: integrity findings that set this grade to 0 (empty: none)
    flagged: list[str] = field(default_factory=list)


@dataclass
class NotebookResult:
    """One graded notebook of a submission."""

    grades: dict[str, CellGrade] = field(default_factory=dict)
    comments: dict[str, str | None] = field(default_factory=dict)
    late_penalty: float | None = None
    #: the autograded notebook (nbformat JSON), None when it could not be graded
    autograded: str | None = None


@dataclass
class TaskResult:
    """What grading one submission produced: the only thing a task hands back."""

    student: str
    assignment: str
    #: "graded": every notebook went through nbgrader; "failed": at least one did not
    status: str
    problems: list[str] = field(default_factory=list)
    #: integrity findings: ``{"notebook", "kind", "where", "tests"}``
    findings: list[dict[str, Any]] = field(default_factory=list)
    notebooks: dict[str, NotebookResult] = field(default_factory=dict)
    log: str = ""
    seconds: float = 0.0
    #: CPU seconds of the worker, its kernels and its verdict process
    cpu_seconds: float = 0.0

    @property
    def score(self) -> float:
        return sum(
            float(g.auto_score or 0.0) for n in self.notebooks.values() for g in n.grades.values()
        )

    @property
    def max_score(self) -> float:
        return sum(
            float(g.max_score or 0.0) for n in self.notebooks.values() for g in n.grades.values()
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TaskResult:
        data = json.loads(text)
        notebooks = {
            name: NotebookResult(
                **{
                    **nb,
                    "grades": {gid: CellGrade(**g) for gid, g in nb["grades"].items()},
                }
            )
            for name, nb in data.pop("notebooks").items()
        }
        return cls(**data, notebooks=notebooks)

    @classmethod
    def failure(cls, task: GradeTask, message: str, started: float, log: str = "") -> TaskResult:
        """A submission that could not be graded: score 0 and why."""
        return cls(
            task.student,
            task.assignment,
            "failed",
            problems=[message],
            log=log,
            seconds=round(time.monotonic() - started, 2),
        )


# ----------------------------------------------------------------------------------------------
# the task's process

#: Modules the fork server imports once, so that each grading task starts without paying for
#: them (about 2 s of CPU per submission: nbgrader, nbconvert, SQLAlchemy, jupyter_client).
FORKSERVER_PRELOAD = [
    "course_lib.grading.worker",
    "course_lib.grading.execute",
    "nbgrader.apps",
    "nbgrader.api",
    "nbgrader.preprocessors",
    "nbconvert.preprocessors",
    "nbclient",
    "jupyter_client",
    # what starting a kernel and opening the private SQLite gradebook import (0.25 s each time)
    "ipykernel.kernelspec",
    "psutil",
    "sqlalchemy.dialects.sqlite",
]
_forkserver_lock = threading.Lock()
_forkserver_ctx: Any = None
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def run_task(task: GradeTask) -> TaskResult:
    """Grade one submission in a process of its own; never raises. Runs in a pool thread of the
    batch or inside a Dask worker."""
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="course-grade-task-"))
    try:
        result_path = scratch / "result.json"
        log_path = scratch / "worker.log"
        env = nbgrader_environment()
        env.update(task.env)
        env.update(dict.fromkeys(_THREAD_VARS, "1"))
        env.setdefault("MPLBACKEND", "Agg")
        limit = task.seconds_allowed
        context = forkserver_context()
        if context is not None:
            exitcode = _run_forked(context, task, result_path, log_path, env, scratch, limit)
        else:
            task_path = scratch / "task.json"
            task_path.write_text(task.to_json())
            exitcode = _run_subprocess(task_path, result_path, log_path, env, scratch, limit)
        if exitcode is None:
            message = f"grading stopped after {limit:.0f} s (the notebook time limit); score 0"
            return TaskResult.failure(task, message, started)
        if result_path.exists():
            result = TaskResult.from_json(result_path.read_text())
            result.seconds = result.seconds or round(time.monotonic() - started, 2)
            return result
        tail = log_path.read_bytes()[-4000:].decode("utf-8", "replace") if log_path.exists() else ""
        message = f"the grading process exited with code {exitcode}"
        return TaskResult.failure(task, message, started, tail)
    except Exception as exc:  # pragma: no cover - defensive: the batch must go on
        return TaskResult.failure(task, f"the grading task failed: {exc!r}", started)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def forkserver_context() -> Any:
    """The fork server's multiprocessing context, its server started (it imports
    :data:`FORKSERVER_PRELOAD` and the verdict's library while the caller goes on), or None
    where this process may not have children (inside a daemonic Dask worker) or
    ``COURSE_LIB_GRADE_FORKSERVER=0``."""
    global _forkserver_ctx
    if (
        "forkserver" not in multiprocessing.get_all_start_methods()
        or multiprocessing.current_process().daemon
        or os.environ.get("COURSE_LIB_GRADE_FORKSERVER", "1") == "0"
    ):
        return None
    with _forkserver_lock:
        if _forkserver_ctx is None:
            # the server (and every task forked from it) must not start BLAS threads
            for var in _THREAD_VARS:
                os.environ.setdefault(var, "1")
            from course_lib.grading.verdict import library_modules

            _forkserver_ctx = multiprocessing.get_context("forkserver")
            # the verdict processes are forks of the tasks: the library they judge with too
            _forkserver_ctx.set_forkserver_preload([*FORKSERVER_PRELOAD, *library_modules()])
        multiprocessing.forkserver.ensure_running()
        return _forkserver_ctx


def _run_forked(
    context: Any,
    task: GradeTask,
    result_path: Path,
    log_path: Path,
    env: dict[str, str],
    cwd: Path,
    limit: float,
) -> int | None:
    """The worker in a child of the fork server; None when it was killed at ``limit``."""
    from course_lib.grading.worker import forked_main

    proc = context.Process(
        target=forked_main, args=(task, str(result_path), str(log_path), env, str(cwd))
    )
    proc.start()
    try:
        proc.join(limit)
        return proc.exitcode
    finally:
        if proc.pid is not None:
            kill_tree(proc.pid)
        proc.join(5)


def _run_subprocess(
    task_path: Path, result_path: Path, log_path: Path, env: dict[str, str], cwd: Path, limit: float
) -> int | None:
    """The worker as ``python -m course_lib.grading.worker``; None when killed at ``limit``."""
    argv = [sys.executable, "-m", "course_lib.grading.worker", str(task_path), str(result_path)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            cwd=cwd,
        )
        try:
            return proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            return None
        finally:
            kill_tree(proc.pid)
            proc.wait()


def kill_tree(pid: int) -> None:
    """Kill a worker, every process below it (kernels run in their own sessions) and what is
    left in its session (a process whose parent ended)."""
    import psutil

    with contextlib.suppress(psutil.Error):  # already gone
        worker = psutil.Process(pid)
        for victim in [worker, *worker.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                victim.kill()
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
