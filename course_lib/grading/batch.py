"""Grade a directory of submissions: parallel, crash-isolated, one gradebook.

:func:`grade_batch` is what ``course-lib grade`` runs:

1. *prepare*: ``nbgrader generate_assignment`` (nbgrader's Python API in this process, with the
   course's ``graders/nbgrader_config.py``) records the source notebooks in the gradebook
   (SQLite by default, any SQLAlchemy URL such as PostgreSQL with ``db_url``) and in one
   *template* SQLite gradebook that every grading task copies;
2. *grade*: one task per submission, a process of its own (forked from a fork server that has
   nbgrader imported, or ``python -m course_lib.grading.worker`` inside a Dask worker) in its
   own session, killed with all its processes past the time limit. Tasks run on a local
   thread pool (``jobs``) or on a Dask cluster (``dask``: a scheduler address, or ``"local"``
   for a ``LocalCluster``); either way the task returns its result as data;
3. *merge*: results are written into the one gradebook by this process alone, one at a time
   (no concurrent writers, so SQLite stays intact, and PostgreSQL sees short transactions);
   a submission whose task failed or timed out still gets its row, score 0 and its message;
4. *report*: feedback HTML (``nbgrader generate_feedback``), ``grades.csv`` (nbgrader's CSV
   export), ``summary.json`` and a printed summary of every student.

Submissions are only read. Running the batch again regrades everything and produces the same
gradebook (idempotent).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from course_lib.grading.release import (
    find_course_root,
    load_course_config,
    nbgrader_environment,
)

__all__ = ["BatchResult", "GradeOptions", "grade_batch", "normalize_db_url", "run_task"]


@dataclass
class GradeOptions:
    """Limits and switches of a grading run."""

    cell_timeout: int = 120
    notebook_timeout: float = 900.0
    memory: int = 4 * 1024**3
    quick: bool = True
    isolate: bool = True
    kernel_user: str = "nobody"
    jobs: int = 1
    dask: str | None = None
    feedback: bool = True
    #: Extra seconds a task may take past ``notebook_timeout`` before it is killed.
    kill_grace: float = 120.0


@dataclass
class BatchResult:
    students: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    output: Path | None = None

    @property
    def submissions(self) -> int:
        return sum(len(v) for v in self.students.values())


# ----------------------------------------------------------------------------------------------
# discovery


def discover(
    submissions: Path, assignments: Sequence[str]
) -> list[tuple[str, str, Path, list[str]]]:
    """(student, assignment, folder, problems) for every submission in nbgrader's layout.

    A student folder holding notebooks directly (no assignment folder) counts as a submission
    of the only assignment being graded, with a note.
    """
    found = []
    for student_dir in sorted(
        p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith(".")
    ):
        matched = False
        for assignment in assignments:
            folder = student_dir / assignment
            if folder.is_dir():
                found.append((student_dir.name, assignment, folder, []))
                matched = True
        if not matched:
            if len(assignments) == 1 and any(student_dir.glob("*.ipynb")):
                found.append(
                    (
                        student_dir.name,
                        assignments[0],
                        student_dir,
                        [f"files were not in a folder named {assignments[0]}/"],
                    )
                )
            else:
                found.append((student_dir.name, "", student_dir, ["no assignment folder found"]))
    return found


# ----------------------------------------------------------------------------------------------
# the task


def run_task(payload: dict[str, Any]) -> dict[str, Any]:
    """Grade one submission in a subprocess; never raises (failures become the result).

    Runs in a local pool thread or inside a Dask worker.
    """
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="course-grade-task-"))
    try:
        payload_path = scratch / "payload.json"
        result_path = scratch / "result.json"
        payload = {**payload, "scratch": str(scratch)}
        payload_path.write_text(json.dumps(payload))
        env = nbgrader_environment()
        env.update(payload.get("env", {}))
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = "1"
        env.setdefault("MPLBACKEND", "Agg")
        limit = float(payload["limits"]["notebook_timeout"]) * max(1, payload.get("n_notebooks", 1))
        limit += float(payload.get("kill_grace", 120))
        log_path = scratch / "worker.log"
        if _use_forkserver():
            exitcode = _run_forked(payload_path, result_path, log_path, env, scratch, limit)
        else:
            exitcode = _run_subprocess(payload_path, result_path, log_path, env, scratch, limit)
        if exitcode is None:
            return _failure(
                payload,
                f"grading stopped after {limit:.0f} s (the notebook time limit); score 0",
                started,
            )
        if result_path.exists():
            result = json.loads(result_path.read_text())
            result.setdefault("seconds", round(time.monotonic() - started, 2))
            return result
        out = log_path.read_bytes()[-4000:] if log_path.exists() else b""
        tail = out.decode("utf-8", "replace")[-4000:] if out else ""
        return _failure(payload, f"the grading process exited with code {exitcode}", started, tail)
    except Exception as exc:  # pragma: no cover - defensive
        return _failure(payload, f"the grading task failed: {type(exc).__name__}: {exc}", started)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


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
]
_forkserver_lock = threading.Lock()
_forkserver_ctx: Any = None


def _use_forkserver() -> bool:
    """A fork server where this process may have children (not inside a daemonic Dask worker)."""
    import multiprocessing

    return (
        "forkserver" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon
        and os.environ.get("COURSE_LIB_GRADE_FORKSERVER", "1") != "0"
    )


def _forkserver() -> Any:
    global _forkserver_ctx
    with _forkserver_lock:
        if _forkserver_ctx is None:
            import multiprocessing

            # the server (and every task forked from it) must not start BLAS threads
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ.setdefault(var, "1")
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(FORKSERVER_PRELOAD)
            _forkserver_ctx = ctx
        return _forkserver_ctx


def _run_forked(
    payload_path: Path,
    result_path: Path,
    log_path: Path,
    env: dict[str, str],
    cwd: Path,
    limit: float,
) -> int | None:
    """The worker in a child of the fork server; None when it was killed at ``limit``."""
    from course_lib.grading.worker import forked_main

    proc = _forkserver().Process(
        target=forked_main,
        args=(str(payload_path), str(result_path), str(log_path), env, str(cwd)),
        daemon=False,
    )
    proc.start()
    try:
        proc.join(limit)
        if proc.exitcode is None:
            return None
        return proc.exitcode
    finally:
        if proc.pid is not None:
            _kill_tree(proc.pid)
        proc.join(5)


def _run_subprocess(
    payload_path: Path,
    result_path: Path,
    log_path: Path,
    env: dict[str, str],
    cwd: Path,
    limit: float,
) -> int | None:
    """The worker as ``python -m course_lib.grading.worker``; None when killed at ``limit``."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "course_lib.grading.worker",
                str(payload_path),
                str(result_path),
            ],
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
            _kill_tree(proc.pid)
            proc.wait()


def _failure(
    payload: dict[str, Any], message: str, started: float, log: str = ""
) -> dict[str, Any]:
    return {
        "student": payload.get("student"),
        "assignment": payload.get("assignment"),
        "status": "failed",
        "problems": [message],
        "notebooks": {},
        "findings": [],
        "score": 0.0,
        "max_score": 0.0,
        "log": log,
        "seconds": round(time.monotonic() - started, 2),
    }


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode("utf-8", "replace")
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill_tree(pid: int) -> None:
    """Kill a worker and every process below it (kernels run in their own sessions)."""
    if not os.path.exists("/proc"):
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        return
    victims = _descendants(pid)
    for victim in [pid, *victims]:
        with contextlib.suppress(OSError):
            os.kill(victim, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


# ----------------------------------------------------------------------------------------------
# the gradebook


def _course_args(
    config_file: Path, root: Path, source: Path, db_url: str, course_id: str
) -> list[str]:
    return [
        f"--CourseDirectory.course_id={course_id}",
        f"--config={config_file}",
        f"--CourseDirectory.root={root}",
        f"--CourseDirectory.source_directory={source}",
        "--CourseDirectory.release_directory=release",
        "--CourseDirectory.submitted_directory=submitted",
        "--CourseDirectory.autograded_directory=autograded",
        "--CourseDirectory.feedback_directory=feedback",
        f"--CourseDirectory.db_url={db_url}",
    ]


def normalize_db_url(url: str) -> str:
    """``postgresql://...`` with the PostgreSQL driver that is installed.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3; where only ``psycopg2`` is
    installed (the ``test`` extra's ``psycopg2-binary``) the URL is rewritten to
    ``postgresql+psycopg2://``. Other URLs are returned unchanged.
    """
    import importlib.util

    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
                return "postgresql+psycopg2://" + url[len(prefix) :]
            return "postgresql://" + url[len(prefix) :]
    return url


@contextlib.contextmanager
def _quiet_env(env: dict[str, str]) -> Any:
    """Run nbgrader in this process with ``env`` (PATH for alembic) in ``os.environ``."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def course_id_of(config_file: Path) -> str:
    """The course id nbgrader records assignments under: the config's, else ``course_lib``.

    nbgrader leaves an empty id out of its ``course`` table, which SQLite tolerates and
    PostgreSQL (foreign keys) does not.
    """
    from traitlets.config.loader import PyFileConfigLoader

    cfg = PyFileConfigLoader(config_file.name, str(config_file.parent)).load_config()
    return str(cfg.CourseDirectory.get("course_id") or "") or "course_lib"


def _generate(
    config_file: Path,
    root: Path,
    source: Path,
    db_url: str,
    assignments: Sequence[str],
    course_id: str,
) -> None:
    """``nbgrader generate_assignment`` (its Python API) for ``assignments`` into ``root``."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    c = Config()
    c.merge(PyFileConfigLoader(config_file.name, str(config_file.parent)).load_config())
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.source_directory = str(source)
    c.CourseDirectory.release_directory = "release"
    c.CourseDirectory.submitted_directory = "submitted"
    c.CourseDirectory.autograded_directory = "autograded"
    c.CourseDirectory.feedback_directory = "feedback"
    c.CourseDirectory.db_url = db_url
    c.CourseDirectory.course_id = course_id
    api = NbGraderAPI(config=c)
    for assignment in assignments:
        outcome = api.generate_assignment(assignment, force=True, create=True)
        if not outcome.get("success"):
            raise RuntimeError(
                f"nbgrader generate_assignment {assignment} failed:\n"
                f"{(outcome.get('log') or '')[-3000:]}\n{(outcome.get('error') or '')[-6000:]}"
            )


def _merge(db_url: str, result: dict[str, Any], timestamp: str | None, course_id: str) -> None:
    """Write one task's result into the gradebook (called from one thread only)."""
    from nbgrader.api import Gradebook, MissingEntry

    student, assignment = result["student"], result["assignment"]
    with Gradebook(db_url, course_id) as gb:
        gb.update_or_create_student(student)
        kwargs = {"timestamp": timestamp} if timestamp else {}
        submission = gb.update_or_create_submission(assignment, student, **kwargs)
        for notebook in submission.notebooks:
            entry = result.get("notebooks", {}).get(notebook.name, {})
            grades = entry.get("grades", {})
            comments = entry.get("comments", {})
            flagged = False
            for grade in notebook.grades:
                info = grades.get(grade.name)
                if info is None:  # not graded (missing, unreadable, task failed): zero
                    grade.auto_score = 0.0
                    grade.needs_manual_grade = grade.manual_score is not None
                    continue
                grade.auto_score = info.get("auto_score")
                if info.get("flagged"):
                    flagged = True
                grade.needs_manual_grade = bool(info.get("needs_manual_grade")) or (
                    grade.manual_score is not None
                )
            for comment in notebook.comments:
                if comment.name in comments:
                    comment.auto_comment = comments[comment.name]
            notebook.flagged = flagged
            if entry.get("late_penalty") is not None:
                with contextlib.suppress(Exception):
                    notebook.late_submission_penalty = entry["late_penalty"]
        gb.db.commit()
    with contextlib.suppress(MissingEntry):
        pass


# ----------------------------------------------------------------------------------------------
# the batch


def grade_batch(
    submissions: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    course_root: str | os.PathLike[str] | None = None,
    assignments: Sequence[str] | None = None,
    db_url: str | None = None,
    options: GradeOptions | None = None,
    log: Callable[[str], None] = print,
) -> BatchResult:
    """Grade every submission under ``submissions`` (``<student>/<assignment>/*.ipynb``)."""
    opts = options or GradeOptions()
    started = time.monotonic()
    submissions = Path(submissions).resolve()
    output = Path(output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    root = find_course_root(course_root) if course_root is None else Path(course_root).resolve()
    config = load_course_config(root)
    course_id = course_id_of(config.config_path)
    source = config.source_path
    wanted = (
        list(assignments)
        if assignments
        else [a for a in config.available_assignments() if any(submissions.glob(f"*/{a}"))]
    )
    if not wanted:
        wanted = [a for a in config.available_assignments()]
    db_url = normalize_db_url(db_url or f"sqlite:///{output / 'gradebook.db'}")
    env = nbgrader_environment()
    env.setdefault("MPLBACKEND", "Agg")
    # the chapters run in quick mode under nbgrader unless COURSE_QUICK says otherwise
    env["COURSE_QUICK"] = "1" if opts.quick else "0"
    grader_dir = output / ".grader"
    grader_dir.mkdir(exist_ok=True)

    # 1. prepare the gradebook and the template (one SQLite gradebook holding every assignment,
    #    copied by each grading task), in this process (an nbgrader subprocess per assignment
    #    costs an interpreter start each)
    template = grader_dir / "template.db"
    template.unlink(missing_ok=True)
    tmp_root = grader_dir / "template-course"
    shutil.rmtree(tmp_root, ignore_errors=True)
    tmp_root.mkdir()
    master_sqlite = (
        Path(db_url.removeprefix("sqlite:///")) if db_url.startswith("sqlite:///") else None
    )
    fresh_master = master_sqlite is not None and not master_sqlite.exists()
    with _quiet_env(env):
        _generate(config.config_path, tmp_root, source, f"sqlite:///{template}", wanted, course_id)
        for assignment in wanted:
            # the student version (placeholder notebooks for submissions that cannot be graded)
            release = output / "release" / assignment
            shutil.rmtree(release, ignore_errors=True)
            shutil.copytree(tmp_root / "release" / assignment, release)
        shutil.rmtree(tmp_root, ignore_errors=True)
        if fresh_master:
            assert master_sqlite is not None
            shutil.copyfile(template, master_sqlite)
        else:
            _generate(config.config_path, output, source, db_url, wanted, course_id)
    templates = {assignment: template for assignment in wanted}

    log(f"gradebook prepared in {time.monotonic() - started:.1f} s")
    # 2. the tasks
    found = discover(submissions, wanted)
    result = BatchResult(output=output)
    tasks = []
    for student, assignment, folder, problems in found:
        if not assignment:
            result.students.setdefault(student, {})["(none)"] = {
                "status": "failed",
                "score": 0.0,
                "max_score": 0.0,
                "problems": problems,
                "findings": [],
            }
            continue
        n_notebooks = len(list((source / assignment).glob("*.ipynb")))
        tasks.append(
            (
                {
                    "student": student,
                    "assignment": assignment,
                    "source_dir": str(source / assignment),
                    "submission_dir": str(folder),
                    "template_gradebook": str(templates[assignment]),
                    "config_file": str(config.config_path),
                    "limits": {
                        "cell_timeout": opts.cell_timeout,
                        "notebook_timeout": opts.notebook_timeout,
                        "memory": opts.memory,
                    },
                    "isolate": opts.isolate,
                    "kernel_user": opts.kernel_user,
                    "n_notebooks": n_notebooks,
                    "course_id": course_id,
                    "kill_grace": opts.kill_grace,
                    "env": {k: env[k] for k in ("COURSE_QUICK", "COURSE_LIB_DATA") if k in env},
                },
                problems,
                _timestamp(folder),
            )
        )
    log(
        f"grading {len(tasks)} submissions of {', '.join(wanted)} "
        f"({'dask ' + opts.dask if opts.dask else f'{opts.jobs} local jobs'})"
    )

    def finish(task: tuple[dict[str, Any], list[str], str | None], res: dict[str, Any]) -> None:
        payload, problems, timestamp = task
        res["problems"] = list(problems) + list(res.get("problems", []))
        logs = grader_dir / "logs"
        logs.mkdir(exist_ok=True)
        (logs / f"{res['student']}--{res['assignment']}.log").write_text(
            str(res.get("log") or "") + "\n" + str(res.get("error") or ""), encoding="utf-8"
        )
        _write_autograded(output, res)
        try:
            _merge(db_url, res, timestamp, course_id)
        except Exception as exc:
            res.setdefault("problems", []).append(f"could not write the gradebook: {exc}")
            res["status"] = "failed"
        if not res.get("max_score"):
            res["max_score"] = _max_score(db_url, payload["assignment"], course_id)
        entry = {
            k: res.get(k)
            for k in ("status", "score", "max_score", "problems", "findings", "seconds")
        }
        result.students.setdefault(res["student"], {})[res["assignment"]] = entry
        log(
            f"  {res['student']:<24} {res['assignment']:<28} {float(res.get('score') or 0):6.1f} / "
            f"{float(res.get('max_score') or 0):.1f}"
            + (f"  [{len(res['problems'])} problem(s)]" if res.get("problems") else "")
        )

    if opts.dask:
        _run_dask(tasks, opts, finish)
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, opts.jobs)) as pool:
            futures = {pool.submit(run_task, t[0]): t for t in tasks}
            for future in concurrent.futures.as_completed(futures):
                finish(futures[future], future.result())

    log(f"graded in {time.monotonic() - started:.1f} s")
    # 3. feedback and export
    if opts.feedback:
        for assignment in wanted:
            students = sorted(s for s, a, _, _ in found if a == assignment)
            _feedback(
                output,
                config.config_path,
                source,
                db_url,
                assignment,
                students,
                env,
                opts.jobs,
                course_id,
            )
    log(f"feedback written in {time.monotonic() - started:.1f} s")
    _export(db_url, output / "grades.csv", course_id)
    result.seconds = time.monotonic() - started
    (output / "summary.json").write_text(
        json.dumps({"students": result.students, "seconds": result.seconds}, indent=1)
    )
    log(format_summary(result))
    return result


def _timestamp(folder: Path) -> str | None:
    path = folder / "timestamp.txt"
    if path.is_file():
        with contextlib.suppress(OSError):
            return path.read_text().strip()[:64] or None
    return None


def _max_score(db_url: str, assignment: str, course_id: str) -> float:
    from nbgrader.api import Gradebook

    with Gradebook(db_url, course_id) as gb:
        return float(gb.find_assignment(assignment).max_score)


def _write_autograded(output: Path, res: dict[str, Any]) -> None:
    """The autograded notebooks (or, for a submission that could not be graded, a note)."""
    folder = output / "autograded" / res["student"] / res["assignment"]
    shutil.rmtree(folder, ignore_errors=True)
    release = output / "release" / res["assignment"]
    notebooks = sorted(p.stem for p in release.glob("*.ipynb"))
    folder.mkdir(parents=True, exist_ok=True)
    for name in notebooks:
        entry = res.get("notebooks", {}).get(name, {})
        if entry.get("autograded"):
            (folder / f"{name}.ipynb").write_text(entry["autograded"], encoding="utf-8")
            continue
        nb = nbformat.read(str(release / f"{name}.ipynb"), as_version=4)
        problems = "\n".join(f"- {p}" for p in res.get("problems", [])) or "- (no details)"
        nb.cells.insert(
            0,
            nbformat.v4.new_markdown_cell(
                "**This notebook could not be graded; it scores 0.**\n\n" + problems
            ),
        )
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = []
        nbformat.write(nb, str(folder / f"{name}.ipynb"))


def _feedback(
    output: Path,
    config_file: Path,
    source: Path,
    db_url: str,
    assignment: str,
    students: list[str],
    env: dict[str, str],
    jobs: int,
    course_id: str,
) -> None:
    """nbgrader generate_feedback, the students split over ``jobs`` processes (reads only)."""
    if not students:
        return
    chunks = [students[i :: max(1, jobs)] for i in range(max(1, jobs))]
    procs = []
    for chunk in chunks:
        if not chunk:
            continue
        args = [
            sys.executable,
            "-m",
            "nbgrader",
            "generate_feedback",
            assignment,
            "--force",
            *_course_args(config_file, output, source, db_url, course_id),
            "--CourseDirectory.student_id=*",
            f"--CourseDirectory.student_id_exclude={','.join(s for s in students if s not in chunk)}",
        ]
        procs.append(
            subprocess.Popen(
                args, cwd=output, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        )
    for proc in procs:
        proc.communicate(timeout=3600)


def _export(db_url: str, path: Path, course_id: str) -> None:
    from nbgrader.api import Gradebook
    from nbgrader.plugins import CsvExportPlugin

    plugin = CsvExportPlugin()
    plugin.to = str(path)
    with Gradebook(db_url, course_id) as gb:
        plugin.export(gb)


def _run_dask(tasks: list, opts: GradeOptions, finish: Callable[..., None]) -> None:
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if opts.dask == "local":
        cluster = LocalCluster(
            n_workers=max(1, opts.jobs),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        client = Client(cluster)
    else:
        client = Client(opts.dask)
    try:
        futures = {}
        for task in tasks:
            future = client.submit(
                run_task,
                task[0],
                pure=False,
                key=f"grade-{task[0]['student']}-{task[0]['assignment']}",
            )
            futures[future] = task
        for future in as_completed(futures):
            try:
                res = future.result()
            except Exception as exc:  # a worker lost mid-task
                res = _failure(futures[future][0], f"the Dask task failed: {exc}", time.monotonic())
            finish(futures[future], res)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def format_summary(result: BatchResult) -> str:
    lines = ["", "Summary", "======="]
    for student in sorted(result.students):
        for assignment, entry in sorted(result.students[student].items()):
            score = float(entry.get("score") or 0)
            max_score = float(entry.get("max_score") or 0)
            lines.append(f"{student:<24} {assignment:<28} {score:6.1f} / {max_score:.1f}")
            for problem in entry.get("problems") or []:
                lines.append(f"    - {problem}")
            for finding in entry.get("findings") or []:
                lines.append(f"    - integrity: {finding['where']}")
    n = result.submissions
    rate = n / (result.seconds / 60) if result.seconds else 0.0
    lines.append(f"{n} submissions in {result.seconds:.1f} s ({rate:.1f} per minute)")
    return "\n".join(lines)
