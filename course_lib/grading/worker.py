"""Autograde ONE submission in a private course directory; hand the result back as data.

Every grading task runs :func:`grade_one` in a process of its own (see
:mod:`course_lib.grading.tasks`), so a crash here never takes the batch down. It

1. reads the submitted files *without modifying them*, copying them into a private course
   directory (:mod:`course_lib.grading.notebook`: unreadable files are reported and left out,
   an old nbformat is upgraded, a wrongly named notebook is graded under the expected name,
   edited or deleted test cells are reported);
2. runs the real ``nbgrader autograde`` (Python API) against a private copy of the template
   gradebook, with :class:`course_lib.grading.execute.IsolatedExecute` in place of ``Execute``
   and ``OverwriteCells.add_missing_cells`` on;
3. reads the findings that autograde's :class:`course_lib.grading.notebook.ApplyFindings` (the
   fairness policy, run after ``SaveAutoGrades``) recorded in each autograded notebook;
4. returns a :class:`~course_lib.grading.tasks.TaskResult` (grades, comments, autograded
   notebooks) for the batch to merge into the one gradebook.

``python -m course_lib.grading.worker TASK.json RESULT.json`` is the same for a fresh process.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import nbformat

from course_lib.grading.course import LIMIT_TRAITS
from course_lib.grading.findings import recorded_findings
from course_lib.grading.notebook import (
    MAX_FILE_BYTES,
    pick_submitted,
    report_changes,
)
from course_lib.grading.tasks import CellGrade, GradeTask, NotebookResult, TaskResult

__all__ = ["forked_main", "grade_one", "main"]


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
    """``python -m course_lib.grading.worker TASK.json RESULT.json``."""
    task_path, result_path = sys.argv[1:] if argv is None else argv
    _write_result(GradeTask.from_json(Path(task_path).read_text()), Path(result_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
