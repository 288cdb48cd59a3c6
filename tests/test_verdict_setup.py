"""The verdict process's setup: the imports and helpers the test cells use, and nothing that
needs a demonstration's variables (chapter 5's ``def fit(net, epochs=f_epochs)`` used to fail
with ``NameError: f_epochs`` in every chapter-5 grading log)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from grading_support import (
    CourseDir,
    chapter_ids,
    find_data_dir,
    graded_cell_points,
    prune_demonstrations,
)

from course_lib.grading.course import nbgrader_environment
from course_lib.grading.static import verdict_init
from course_lib.grading.verdict import VerdictSession

REPO = Path(__file__).resolve().parents[1]
FIVE = "ch05_deep_networks"


def source(chapter: str) -> nbformat.NotebookNode:
    return nbformat.read(str(REPO / "solutions" / chapter / f"{chapter}.ipynb"), as_version=4)


def init(setup: list[str], student_names: list[str] = ()) -> tuple[list[str], dict]:
    session = VerdictSession(setup, list(student_names))
    try:
        return session.setup_errors, dict(session.ns)
    finally:
        session.close()


@pytest.mark.parametrize("chapter", chapter_ids())
def test_every_chapters_setup_runs_in_a_pristine_verdict(chapter: str) -> None:
    command = verdict_init(source(chapter))
    errors, _ = init(command["setup"], command["student_names"])
    assert errors == [], (chapter, errors)


def test_chapter_5_keeps_the_tests_helpers_not_the_demonstrations() -> None:
    setup = verdict_init(source(FIVE))["setup"]
    defined = {line.split("(")[0].removeprefix("def ") for line in setup if line.startswith("def")}
    assert "_offset_of" in defined  # ch05-random-shift-tests calls it
    assert "fit" not in defined and "plot_runs" not in defined  # demonstrations only


def test_a_failing_setup_statement_is_named_and_does_not_stop_the_rest() -> None:
    errors, ns = init(["def fit(net, epochs=f_epochs):\n    pass", "import math"])
    assert errors == ["`def fit(net, epochs=f_epochs):`: NameError: name 'f_epochs' is not defined"]
    assert "math" in ns and "fit" not in ns


@pytest.mark.grading
@pytest.mark.slow
def test_pruned_chapter_5_submission_grades_without_setup_errors(tmp_path: Path) -> None:
    """A student who deleted the demonstration cells (``prune_demonstrations``), graded by the
    real ``course-lib grade``: its log has no verdict-setup error and it earns every point of
    the autograded tests."""
    course = CourseDir.create(tmp_path / "course", from_repo=[FIVE])
    folder = tmp_path / "submitted" / "pruned" / FIVE
    folder.mkdir(parents=True)
    nbformat.write(
        prune_demonstrations(course.source_notebook(FIVE)), str(folder / f"{FIVE}.ipynb")
    )
    env = nbgrader_environment()
    env.pop("COURSE_LIB_GRADEBOOK_URL", None)
    data = find_data_dir()
    if data is not None:
        env["COURSE_LIB_DATA"] = str(data)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "course_lib.cli", "grade", str(folder.parents[1]), "-o", str(out)]
    proc = subprocess.run(
        [*cmd, "-j", "1", "--no-feedback", "--course-root", str(course.root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = (out / ".grader" / "logs" / f"pruned--{FIVE}.log").read_text()
    assert "verdict setup" not in log, log
    entry = json.loads((out / "summary.json").read_text())["students"]["pruned"][FIVE]
    assert entry["status"] == "graded" and not entry["problems"], entry
    assert entry["score"] == sum(graded_cell_points(course.source_notebook(FIVE)).values())
