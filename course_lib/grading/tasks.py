"""One submission's grading task: the contract, the grading itself, and its process.

:class:`GradeTask` is everything the grading of one submission needs, :class:`TaskResult`
everything it gives back; the batch and the task exchange nothing else. :func:`run_task` runs
:func:`grade_one` in a process of its own (forked from a fork server that has nbgrader and the
verdict's library imported, or ``python -m course_lib.grading.tasks TASK.json RESULT.json``
where this process may not fork children, e.g. inside a daemonic Dask worker), in its own
session, and kills it with every process below it at the time limit. It never raises: a crash
or a timeout becomes a failed :class:`TaskResult`. :func:`grade_one`

1. reads the submitted files *without modifying them*, copying them into a private course
   directory (:mod:`course_lib.grading.notebook`: unreadable files are reported and left out,
   an old nbformat is upgraded, a wrongly named notebook is graded under the expected name,
   edited or deleted test cells are reported);
2. runs the real ``nbgrader autograde`` (Python API) against a private copy of the template
   gradebook, with :class:`course_lib.grading.execute.IsolatedExecute` in place of ``Execute``
   and ``OverwriteCells.add_missing_cells`` on;
3. reads the findings that autograde's :class:`course_lib.grading.notebook.ApplyFindings` (the
   fairness policy, run after ``SaveAutoGrades``) recorded in each autograded notebook;
4. returns a :class:`TaskResult` (grades, comments, autograded notebooks) for the batch to
   merge into the one gradebook.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
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
    load_course_config,
    nbgrader_environment,
)
from course_lib.grading.findings import recorded_findings
from course_lib.grading.notebook import MAX_FILE_BYTES, pick_submitted, report_changes

__all__ = [
    "CellGrade",
    "GradeTask",
    "NotebookResult",
    "TaskResult",
    "forked_main",
    "forkserver_context",
    "grade_one",
    "kill_tree",
    "main",
    "run_task",
]


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
        return self.limits.task_seconds(len(self.course.notebooks(self.assignment)))

    def to_json(self) -> str:
        """The task as JSON for a fresh process (which reloads the course once)."""
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
    #: CPU seconds of the task's process, its verdict process and its kernels (not sandboxed)
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
# the grading, in the task's process


def grade_one(task: GradeTask) -> TaskResult:
    """Grade one submission (see the module docstring)."""
    started, cpu_started = time.monotonic(), _cpu_seconds()
    problems: list[str] = []
    work = Path(tempfile.mkdtemp(prefix=f"grade-{task.assignment}-", dir=os.getcwd()))
    os.chmod(work, 0o755)
    try:
        root = work / "course"
        sub_dir = root / "submitted" / task.student / task.assignment
        sub_dir.mkdir(parents=True)
        db_path = root / "gradebook.db"
        shutil.copyfile(task.template_gradebook, db_path)
        source_dir = task.course.source_path / task.assignment
        names = task.course.notebooks(task.assignment)
        sources = {n: nbformat.read(str(source_dir / f"{n}.ipynb"), as_version=4) for n in names}
        submitted = {}
        for name in names:
            nb = pick_submitted(task.submission_dir, name, sources[name], problems)
            if nb is not None:
                submitted[name] = report_changes(nb, sources[name], problems)
                nbformat.write(submitted[name], str(sub_dir / f"{name}.ipynb"))
        _copy_other_files(task.submission_dir, sub_dir)

        outcome = _autograde(task, root, f"sqlite:///{db_path}", work)
        if not outcome.get("success"):
            problems.append("nbgrader could not autograde this submission")
        graded = _read_grades(task, f"sqlite:///{db_path}", names)
        result = TaskResult(
            task.student,
            task.assignment,
            "graded" if outcome.get("success") and len(submitted) == len(names) else "failed",
            problems=problems,
            log=((outcome.get("log") or "") + (outcome.get("error") or ""))[-20000:],
        )
        for name in names:
            entry = graded.get(name, NotebookResult())
            path = root / "autograded" / task.student / task.assignment / f"{name}.ipynb"
            if path.exists():
                autograded = nbformat.read(str(path), as_version=4)
                result.findings += recorded_findings(autograded, entry.grades)  # ApplyFindings
                entry.autograded = nbformat.writes(autograded)
            result.notebooks[name] = entry
        result.seconds = round(time.monotonic() - started, 2)
        result.cpu_seconds = round(_cpu_seconds() - cpu_started, 2)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (kernels, verdict)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _copy_other_files(submission: Path, destination: Path) -> None:
    """Non-notebook files (data a student saved, timestamp.txt); symlinks are never followed."""
    for path in submission.iterdir() if submission.is_dir() else []:
        if path.suffix == ".ipynb" or path.is_symlink() or not path.is_file():
            continue
        if path.stat().st_size <= MAX_FILE_BYTES:
            shutil.copyfile(path, destination / path.name)


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
    c.IsolatedExecute.source_directory = str(task.course.source_path / task.assignment)
    c.IsolatedExecute.scratch_directory = str(work)
    c.IsolatedExecute.kernel_user = task.kernel_user
    c.IsolatedExecute.shutdown_kernel = "immediate"  # nothing to save: no graceful wait
    api = NbGraderAPI(config=c)
    return api.autograde(task.assignment, task.student, force=True, create=True)


def _read_grades(task: GradeTask, db_url: str, names: list[str]) -> dict[str, NotebookResult]:
    """Grades, comments and late penalty of every notebook nbgrader graded."""
    from nbgrader.api import Gradebook, MissingEntry

    out: dict[str, NotebookResult] = {}
    with Gradebook(db_url, task.course.course_id) as gb:
        for name in names:
            try:
                sub = gb.find_submission_notebook(name, task.assignment, task.student)
            except MissingEntry:
                continue
            out[name] = NotebookResult(
                grades={
                    g.name: CellGrade(g.auto_score, g.max_score, bool(g.needs_manual_grade))
                    for g in sub.grades
                },
                comments={c.name: c.auto_comment for c in sub.comments},
                late_penalty=sub.late_submission_penalty,
            )
    return out


def forked_main(
    task: GradeTask, result_path: str, log_path: str, env: dict[str, str], cwd: str
) -> None:
    """Entry point in a child of the batch's fork server (modules already imported)."""
    os.setsid()  # its own session: the batch kills the whole tree at the time limit
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    _write_result(task, Path(result_path))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _write_result(task: GradeTask, out: Path) -> None:
    started = time.monotonic()
    try:
        result = grade_one(task)
    except BaseException as exc:
        message = f"the grader failed on this submission: {type(exc).__name__}: {exc}"
        result = TaskResult.failure(task, message, started, traceback.format_exc()[-20000:])
    tmp = out.with_suffix(".tmp")
    tmp.write_text(result.to_json())
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    """``python -m course_lib.grading.tasks TASK.json RESULT.json``."""
    task_path, result_path = sys.argv[1:] if argv is None else argv
    _write_result(GradeTask.from_json(Path(task_path).read_text()), Path(result_path))
    return 0


# ----------------------------------------------------------------------------------------------
# running a task in a process of its own

#: Modules the fork server imports once, so that each grading task starts without paying for
#: them (about 2 s of CPU per submission: nbgrader, nbconvert, SQLAlchemy, jupyter_client).
FORKSERVER_PRELOAD = [
    "course_lib.grading.tasks",
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
    """The task in a child of the fork server; None when it was killed at ``limit``."""
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
    """The task as ``python -m course_lib.grading.tasks``; None when killed at ``limit``."""
    argv = [sys.executable, "-m", "course_lib.grading.tasks", str(task_path), str(result_path)]
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
    """Kill a task's process, every process below it (kernels run in their own sessions) and what is
    left in its session (a process whose parent ended)."""
    import psutil

    with contextlib.suppress(psutil.Error):  # already gone
        task = psutil.Process(pid)
        for victim in [task, *task.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                victim.kill()
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
