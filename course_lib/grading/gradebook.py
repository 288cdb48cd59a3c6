"""The one writer of the batch's gradebook and of what is derived from it: only the batch's
main process calls these functions, one at a time (tasks grade private copies of
:func:`prepare`'s template and hand their grades back as data, which :func:`merge` writes)."""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat

from course_lib.grading.course import CourseConfig
from course_lib.grading.tasks import NotebookResult, TaskResult, forkserver_context
from course_lib.release import generate


def prepare(
    course: CourseConfig, output: Path, db_url: str, assignments: Sequence[str], work: Path
) -> Path:
    """Record ``assignments`` in the gradebook ``db_url`` and in a template SQLite gradebook
    (returned) that every grading task copies; the student versions go to
    ``output/release/<assignment>/`` (placeholders for submissions that cannot be graded)."""
    for folder in (output, work):
        folder.mkdir(parents=True, exist_ok=True)
    template = work / "template.db"
    template.unlink(missing_ok=True)
    generate(course, output, f"sqlite:///{template}", assignments)  # and output/release/
    sqlite = Path(db_url.removeprefix("sqlite:///")) if db_url.startswith("sqlite:///") else None
    if sqlite is not None and not sqlite.exists():
        shutil.copyfile(template, sqlite)  # a fresh gradebook: the template is it
    else:
        generate(course, output, db_url, assignments)
    return template


def merge(course: CourseConfig, db_url: str, result: TaskResult, timestamp: str | None) -> float:
    """Write one task's grades and comments into the gradebook; the points the assignment is
    worth. A grade the task did not produce (missing or unreadable notebook, failed task) is
    0; manual grades are kept."""
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    with Gradebook(db_url, course.course_id) as gb, warnings.catch_warnings():
        # nbgrader's update_or_create_submission trips SQLAlchemy's autoflush warnings
        warnings.simplefilter("ignore", SAWarning)
        gb.update_or_create_student(result.student)
        kwargs = {"timestamp": timestamp} if timestamp else {}
        submission = gb.update_or_create_submission(result.assignment, result.student, **kwargs)
        for notebook in submission.notebooks:
            entry = result.notebooks.get(notebook.name) or NotebookResult()
            for grade in notebook.grades:
                info = entry.grades.get(grade.name)
                grade.auto_score = 0.0 if info is None else info.auto_score
                manual = grade.manual_score is not None
                grade.needs_manual_grade = manual or bool(info and info.needs_manual_grade)
            for comment in notebook.comments:
                if comment.name in entry.comments:
                    comment.auto_comment = entry.comments[comment.name]
            notebook.flagged = entry.flagged
            if entry.late_penalty is not None:
                notebook.late_submission_penalty = entry.late_penalty
        gb.db.commit()
        return float(submission.max_score)


def write_autograded(output: Path, result: TaskResult) -> None:
    """The autograded notebooks; for one that could not be graded, the student version with a
    note saying why (so that its feedback explains the 0)."""
    folder = output / "autograded" / result.student / result.assignment
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    release = output / "release" / result.assignment
    for path in sorted(release.glob("*.ipynb")):
        entry = result.notebooks.get(path.stem)
        if entry is not None and entry.autograded:
            (folder / path.name).write_text(entry.autograded, encoding="utf-8")
            continue
        nb = nbformat.read(str(path), as_version=4)
        problems = "\n".join(f"- {p}" for p in result.problems) or "- (no details)"
        note = "**This notebook could not be graded; it scores 0.**\n\n" + problems
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(note))
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = []
        nbformat.write(nb, str(folder / path.name))


def export_csv(course: CourseConfig, db_url: str, path: Path) -> None:
    """nbgrader's CSV export of the whole gradebook."""
    from nbgrader.api import Gradebook
    from nbgrader.plugins import CsvExportPlugin

    plugin = CsvExportPlugin()
    plugin.to = str(path)
    with Gradebook(db_url, course.course_id) as gb:
        plugin.export(gb)


# ----------------------------------------------------------------------------------------------
# feedback


def _feedback_chunk(
    course: CourseConfig, output: Path, db_url: str, assignment: str, exclude: list[str]
) -> str:
    """nbgrader's ``generate_feedback`` for every student of ``assignment`` but ``exclude``,
    in a process of the pool, its output to a log file; nbgrader's log when it failed."""
    from nbgrader.apps import NbGraderAPI

    from course_lib.grading.notebook import feedback_preprocessors

    log = output / ".grader" / "logs" / f"feedback--{assignment}--{os.getpid()}.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    c = course.nbgrader_config(output, db_url)
    c.GenerateFeedback.preprocessors = feedback_preprocessors()
    c.CourseDirectory.student_id_exclude = ",".join(exclude)
    with warnings.catch_warnings():  # the gradebook exists: nbgrader runs no alembic here
        warnings.simplefilter("ignore")
        outcome = NbGraderAPI(config=c).generate_feedback(assignment, force=True)
    if outcome.get("success"):
        return ""
    return ((outcome.get("log") or "") + (outcome.get("error") or ""))[-6000:]


def feedback(
    course: CourseConfig,
    output: Path,
    db_url: str,
    assignment: str,
    students: list[str],
    jobs: int,
) -> list[str]:
    """Feedback HTML for ``students`` of ``assignment``, over ``jobs`` processes of the fork
    server (:func:`forkserver_context`); one problem per student whose feedback was not written."""
    chunks = [c for c in (students[i :: max(1, jobs)] for i in range(max(1, jobs))) if c]
    for student in students:
        shutil.rmtree(output / "feedback" / student / assignment, ignore_errors=True)
    everyone = [p.name for p in (output / "autograded").iterdir() if p.is_dir()]
    logs: list[str] = []
    with ProcessPoolExecutor(max(1, len(chunks)), mp_context=forkserver_context()) as pool:
        futures = [  # each process leaves out the other chunks and the students not regraded
            pool.submit(_feedback_chunk, course, output, db_url, assignment, leave_out)
            for leave_out in ([s for s in everyone if s not in chunk] for chunk in chunks)
        ]
        for future in futures:
            try:
                logs.append(future.result())
            except Exception as exc:  # reported with the students it leaves without feedback
                logs.append(f"{type(exc).__name__}: {exc}")
    release = sorted(p.name for p in (output / "release" / assignment).glob("*.ipynb"))
    missing = []
    for student in students:
        folder = output / "feedback" / student / assignment
        absent = [n for n in release if not (folder / n.replace(".ipynb", ".html")).is_file()]
        if absent:
            missing.append(f"{student}: no feedback for {', '.join(absent)}")
    if missing:
        missing += [f"nbgrader generate_feedback said: {log}" for log in logs if log]
    return missing
