"""One submission's grading task: the contract, the grading itself, and its process.

:class:`GradeTask` is everything the grading of one submission needs, :class:`TaskResult`
everything it gives back (as JSON: no pickle comes back from a task). :func:`run_task` runs
:func:`grade_one` in a process of its own and never raises. How a task reads the submission,
runs nbgrader and is isolated: docs/grading.md ("Large classes").
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import multiprocessing.forkserver
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from course_lib.grading.course import (
    DEFAULT_KERNEL_USER,
    LIMIT_TRAITS,
    CourseConfig,
    Limits,
    nbgrader_environment,
)
from course_lib.grading.notebook import MAX_FILE_BYTES, pick_submitted, report_changes


@dataclass(frozen=True)
class GradeTask:
    """Grade the submission of ``student`` for ``assignment`` found in ``submission_dir``."""

    student: str
    assignment: str
    submission_dir: Path
    course: CourseConfig
    #: the SQLite gradebook holding the assignment, copied privately by the task
    template_gradebook: Path
    limits: Limits
    isolate: bool = True
    kernel_user: str = DEFAULT_KERNEL_USER
    #: environment variables the notebooks run with (COURSE_QUICK, COURSE_LIB_DATA)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def seconds_allowed(self) -> float:
        notebooks = max(1, len(self.course.notebooks(self.assignment)))
        return self.limits.notebook_timeout * notebooks + self.limits.kill_grace


@dataclass
class CellGrade:
    """The grade of one graded cell, as nbgrader's autograder left it."""

    auto_score: float | None
    max_score: float
    needs_manual_grade: bool = False


@dataclass
class NotebookResult:
    """One graded notebook of a submission."""

    grades: dict[str, CellGrade] = field(default_factory=dict)
    comments: dict[str, str | None] = field(default_factory=dict)
    late_penalty: float | None = None
    #: flagged for review (a reach for the grader: ``ApplyFindings``)
    flagged: bool = False
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
    #: integrity findings (:meth:`course_lib.grading.findings.Finding.to_dict`)
    findings: list[dict[str, Any]] = field(default_factory=list)
    notebooks: dict[str, NotebookResult] = field(default_factory=dict)
    log: str = ""
    seconds: float = 0.0
    #: CPU seconds of the task's process, its verdict process and its kernels (not sandboxed)
    cpu_seconds: float = 0.0

    @property
    def score(self) -> float:
        return sum(
            float(g.auto_score or 0) for n in self.notebooks.values() for g in n.grades.values()
        )

    @property
    def max_score(self) -> float:
        return sum(
            float(g.max_score or 0) for n in self.notebooks.values() for g in n.grades.values()
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TaskResult:
        data = json.loads(text)
        notebooks = {
            name: NotebookResult(
                **{**nb, "grades": {gid: CellGrade(**g) for gid, g in nb["grades"].items()}}
            )
            for name, nb in data.pop("notebooks").items()
        }
        return cls(**data, notebooks=notebooks)

    @classmethod
    def failure(cls, task: GradeTask, message: str, started: float, log: str = "") -> TaskResult:
        """A submission that could not be graded: score 0 and why."""
        seconds = round(time.monotonic() - started, 2)
        return cls(task.student, task.assignment, "failed", [message], log=log, seconds=seconds)


# ----------------------------------------------------------------------------------------------
# the grading, in the task's process


def grade_one(task: GradeTask) -> TaskResult:
    """Grade one submission in this process: the submitted files are read (never modified)
    into a private course directory and gradebook, where nbgrader's autograde runs."""
    started, cpu_started = time.monotonic(), _cpu_seconds()
    problems: list[str] = []
    work = Path(tempfile.mkdtemp(prefix=f"grade-{task.assignment}-", dir=os.getcwd()))
    os.chmod(work, 0o755)
    try:
        root = work / "course"
        sub_dir = root / "submitted" / task.student / task.assignment
        sub_dir.mkdir(parents=True)
        db_url = f"sqlite:///{root / 'gradebook.db'}"
        shutil.copyfile(task.template_gradebook, root / "gradebook.db")
        names = task.course.notebooks(task.assignment)
        submitted = 0
        for name in names:
            path = task.course.source_path / task.assignment / f"{name}.ipynb"
            source = nbformat.read(str(path), as_version=4)
            nb = pick_submitted(task.submission_dir, name, source, problems)
            if nb is not None:
                nbformat.write(report_changes(nb, source, problems), str(sub_dir / path.name))
                submitted += 1
        for path in task.submission_dir.iterdir() if task.submission_dir.is_dir() else []:
            # other files (data a student saved, timestamp.txt); symlinks are never followed
            if path.suffix != ".ipynb" and path.is_file() and not path.is_symlink():
                if path.stat().st_size <= MAX_FILE_BYTES:
                    shutil.copyfile(path, sub_dir / path.name)

        outcome = _autograde(task, root, db_url, work)
        if not outcome.get("success"):
            problems.append("nbgrader could not autograde this submission")
        graded = outcome.get("success") and submitted == len(names)
        result = TaskResult(
            task.student,
            task.assignment,
            "graded" if graded else "failed",
            problems=problems,
            log=((outcome.get("log") or "") + (outcome.get("error") or ""))[-20000:],
            notebooks=_read_grades(task, db_url, names),
        )
        for name, entry in result.notebooks.items():
            path = root / "autograded" / task.student / task.assignment / f"{name}.ipynb"
            if path.exists():
                autograded = nbformat.read(str(path), as_version=4)
                result.findings += autograded.metadata.get("course_lib", {}).get("findings", [])
                entry.autograded = nbformat.writes(autograded)
        result.seconds = round(time.monotonic() - started, 2)
        result.cpu_seconds = round(_cpu_seconds() - cpu_started, 2)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (kernels, verdict)."""
    usage = [resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def _autograde(task: GradeTask, root: Path, db_url: str, work: Path) -> dict:
    """``nbgrader autograde`` (its Python API) with the grader's execution preprocessor."""
    from nbgrader.apps import NbGraderAPI

    from course_lib.grading.execute import isolated_autograde_preprocessors

    c = task.course.nbgrader_config(root, db_url)
    c.OverwriteCells.add_missing_cells = True
    c.Autograde.autograde_preprocessors = isolated_autograde_preprocessors()
    for limit, trait in LIMIT_TRAITS.items():
        c.IsolatedExecute[trait] = getattr(task.limits, limit)
    c.IsolatedExecute.isolate_tests = task.isolate
    c.IsolatedExecute.scratch_directory = str(work)
    c.IsolatedExecute.kernel_user = task.kernel_user
    c.IsolatedExecute.shutdown_kernel = "immediate"  # nothing to save: no graceful wait
    return NbGraderAPI(config=c).autograde(task.assignment, task.student, force=True, create=True)


def _read_grades(task: GradeTask, db_url: str, names: list[str]) -> dict[str, NotebookResult]:
    """Grades, comments and late penalty of every notebook nbgrader graded."""
    from nbgrader.api import Gradebook, MissingEntry

    out: dict[str, NotebookResult] = {}
    with Gradebook(db_url, task.course.course_id) as gb:
        for name in names:
            with contextlib.suppress(MissingEntry):
                sub = gb.find_submission_notebook(name, task.assignment, task.student)
                out[name] = NotebookResult(
                    grades={
                        g.name: CellGrade(g.auto_score, g.max_score, bool(g.needs_manual_grade))
                        for g in sub.grades
                    },
                    comments={c.name: c.auto_comment for c in sub.comments},
                    late_penalty=sub.late_submission_penalty,
                    flagged=bool(sub.flagged),
                )
    return out


def _task_main(task: GradeTask, scratch: str, env: dict[str, str]) -> None:
    """The task's process (forked from the fork server, or ``python -m``): its own session (the
    batch kills it with every process below it), output to ``worker.log``, ``result.json``."""
    os.setsid()
    fd = os.open(os.path.join(scratch, "worker.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for target in (1, 2):
        os.dup2(fd, target)
    os.close(fd)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(scratch)
    started = time.monotonic()
    try:
        result = grade_one(task)
    except BaseException as exc:
        message = f"the grader failed on this submission: {type(exc).__name__}: {exc}"
        result = TaskResult.failure(task, message, started, traceback.format_exc()[-20000:])
    Path(scratch, "result.tmp").write_text(result.to_json())
    os.replace(os.path.join(scratch, "result.tmp"), os.path.join(scratch, "result.json"))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no interpreter shutdown: it could wait for a library's lingering thread


# ----------------------------------------------------------------------------------------------
# running a task in a process of its own

#: Modules the fork server imports once, so that each grading task starts without paying for
#: them (about 2 s of CPU per submission: nbgrader, nbconvert, SQLAlchemy, jupyter_client).
FORKSERVER_PRELOAD = [
    "course_lib.grading.tasks",
    "course_lib.grading.execute",  # nbgrader's preprocessors, nbclient, jupyter_client
    "nbgrader.apps",
    # what starting a kernel and opening the private SQLite gradebook import (0.25 s each time)
    "ipykernel.kernelspec",
    "psutil",
    "sqlalchemy.dialects.sqlite",
]
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def run_task(task: GradeTask) -> TaskResult:
    """Grade one submission in a process of its own, killed with every process below it at
    ``task.seconds_allowed``; never raises (a crash or a timeout is a failed result)."""
    started, limit = time.monotonic(), task.seconds_allowed
    scratch = tempfile.mkdtemp(prefix="course-grade-task-")
    os.chmod(scratch, 0o711)  # under root, the kernel account passes through to its notebook
    result_path, log_path = Path(scratch, "result.json"), Path(scratch, "worker.log")
    env = {**nbgrader_environment(), "MPLBACKEND": "Agg", **task.env}
    env.update(dict.fromkeys(_THREAD_VARS, "1"))
    proc: Any = None
    try:
        context = forkserver_context()
        if context is not None:
            proc = context.Process(target=_task_main, args=(task, scratch, env))
            proc.start()
            proc.join(limit)
            exitcode = proc.exitcode
        else:  # where this process may not have children of its own (a daemonic Dask worker)
            Path(scratch, "task.pickle").write_bytes(pickle.dumps((task, scratch, env)))
            argv = [sys.executable, "-m", "course_lib.grading.tasks", scratch]
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(limit)
            exitcode = proc.returncode
        if exitcode is None:
            message = f"grading stopped after {limit:.0f} s (the notebook time limit); score 0"
            return TaskResult.failure(task, message, started)
        if result_path.exists():
            return TaskResult.from_json(result_path.read_text())
        tail = log_path.read_bytes()[-4000:].decode("utf-8", "replace") if log_path.exists() else ""
        message = f"the grading process exited with code {exitcode}"
        return TaskResult.failure(task, message, started, tail)
    except Exception as exc:  # pragma: no cover - defensive: the batch must go on
        return TaskResult.failure(task, f"the grading task failed: {exc!r}", started)
    finally:
        if proc is not None and proc.pid is not None:
            kill_tree(proc.pid)
            (proc.wait if isinstance(proc, subprocess.Popen) else proc.join)(5)
        shutil.rmtree(scratch, ignore_errors=True)


def forkserver_context() -> Any:
    """The ``forkserver`` multiprocessing context, its server running (it imports
    :data:`FORKSERVER_PRELOAD` and the verdict's library while the caller goes on), or None
    where this process may not have children (inside a daemonic Dask worker) or
    ``COURSE_LIB_GRADE_FORKSERVER=0``."""
    if (
        "forkserver" not in multiprocessing.get_all_start_methods()
        or multiprocessing.current_process().daemon
        or os.environ.get("COURSE_LIB_GRADE_FORKSERVER", "1") == "0"
    ):
        return None
    from course_lib.grading.verdict import library_modules

    for var in _THREAD_VARS:  # the server (and every task forked from it): no BLAS threads
        os.environ.setdefault(var, "1")
    context = multiprocessing.get_context("forkserver")
    # the verdict processes are forks of the tasks: the library they judge with too
    context.set_forkserver_preload([*FORKSERVER_PRELOAD, *library_modules()])
    multiprocessing.forkserver.ensure_running()  # no-op when running (preload fixed then)
    return context


def kill_tree(pid: int) -> None:
    """Kill a task's process, every process below it (kernels run in their own sessions) and
    what is left in its session (a process whose parent ended)."""
    import psutil

    with contextlib.suppress(psutil.Error):  # already gone
        task = psutil.Process(pid)
        for victim in [task, *task.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                victim.kill()
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


if __name__ == "__main__":  # python -m course_lib.grading.tasks SCRATCH: the task pickled there
    _task_main(*pickle.loads(Path(sys.argv[1], "task.pickle").read_bytes()))
