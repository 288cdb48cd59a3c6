"""The course configuration parsed once, the task/result contract, discovery, feedback view.

Unit tests: no nbgrader run, no kernel (the pipeline is tested in test_grade_cli.py and
test_grade_corpus.py).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import nbformat
import pytest
from grading_support import REPO_ROOT, CourseDir, synthetic_notebook

from course_lib.grading.batch import GradeOptions, discover
from course_lib.grading.course import (
    DEFAULT_COURSE_ID,
    Limits,
    ReleaseError,
    load_course,
    normalize_db_url,
)
from course_lib.grading.execute import IsolatedExecute
from course_lib.grading.notebook import FeedbackView
from course_lib.grading.tasks import CellGrade, GradeTask, NotebookResult, TaskResult

A = "synthetic_course_test"


@pytest.fixture()
def course(tmp_path: Path) -> CourseDir:
    return CourseDir.create(tmp_path / "course", notebooks={A: synthetic_notebook()})


def test_repository_course_parsed_once_with_defaults() -> None:
    course = load_course(REPO_ROOT / "solutions")  # found upwards from a subfolder
    assert course.root == REPO_ROOT.resolve()
    assert "ch02_backpropagation" in course.available_assignments()
    assert course.course_id == DEFAULT_COURSE_ID  # the config leaves it empty
    assert course.limits == Limits()
    assert course.notebooks("ch02_backpropagation") == ["ch02_backpropagation"]


def test_limits_and_course_id_come_from_the_config(course: CourseDir) -> None:
    course.append_config(
        'c.CourseDirectory.course_id = "dlfs"',
        "c.IsolatedExecute.timeout = 30",
        "c.IsolatedExecute.memory_limit = 2 * 1024**3",
        'c.CourseDirectory.db_url = "postgres://grader@db/dlfs"',
    )
    config = load_course(course.root)
    assert config.course_id == "dlfs"
    assert config.limits == Limits(cell_timeout=30, memory=2 * 1024**3)
    assert config.db_url.startswith("postgresql")  # one normalisation, at parse time
    # the command line overrides only what it sets
    opts = GradeOptions(notebook_timeout=60)
    assert opts.limits(config) == Limits(cell_timeout=30, memory=2 * 1024**3, notebook_timeout=60)


def test_nbgrader_config_is_a_fresh_copy(course: CourseDir, tmp_path: Path) -> None:
    config = load_course(course.root)
    c = config.nbgrader_config(tmp_path / "private", "sqlite:///x.db")
    assert c.CourseDirectory.root == str(tmp_path / "private")
    assert c.CourseDirectory.course_id == DEFAULT_COURSE_ID
    assert c.CourseDirectory.source_directory == str(course.root / "solutions")
    # the parsed configuration itself is untouched
    assert config.nbgrader.CourseDirectory.root == str(course.root.resolve())


def test_bad_configurations_are_refused(course: CourseDir, tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match=r"no graders/nbgrader_config\.py found"):
        load_course(tmp_path)
    course.append_config('c.CourseLib.assignments = "ch01"')
    with pytest.raises(ReleaseError, match="must be a list"):
        load_course(course.root)


def test_isolated_execute_defaults_are_the_limits() -> None:
    execute, limits = IsolatedExecute(), Limits()
    assert execute.timeout == limits.cell_timeout
    assert execute.notebook_timeout == limits.notebook_timeout
    assert execute.memory_limit == limits.memory
    assert execute.file_size_limit == limits.file_size
    assert execute.max_output_chars == limits.max_output_chars


def test_normalize_db_url() -> None:
    assert normalize_db_url("sqlite:///a.db") == "sqlite:///a.db"
    assert normalize_db_url("postgres://u@h/db").split("://")[1] == "u@h/db"


def test_task_and_result_round_trip(tmp_path: Path) -> None:
    config = load_course(REPO_ROOT)
    task = GradeTask(
        "ana", "ch02_backpropagation", tmp_path, config, tmp_path / "t.db", Limits(cell_timeout=5)
    )
    assert pickle.loads(pickle.dumps(task)) == task  # how it reaches the task's process
    assert task.seconds_allowed == Limits().notebook_timeout + Limits().kill_grace
    result = TaskResult(
        "ana",
        "ch02_backpropagation",
        "graded",
        notebooks={
            "nb": NotebookResult(
                grades={"t1": CellGrade(1.0, 2.0), "t2": CellGrade(None, 3.0, True)},
                comments={"a1": None},
                flagged=True,
            )
        },
    )
    assert (result.score, result.max_score) == (1.0, 5.0)
    assert TaskResult.from_json(result.to_json()) == result
    json.loads(result.to_json())  # plain JSON, no pickle


def test_discover_layout_and_student_filter(tmp_path: Path) -> None:
    for student in ("ana", "bo"):
        (tmp_path / student / A).mkdir(parents=True)
    (tmp_path / "cy").mkdir()
    (tmp_path / "cy" / f"{A}.ipynb").write_text("{}")
    found = {(s.student, s.assignment): s.problems for s in discover(tmp_path, [A])}
    assert found == {
        ("ana", A): [],
        ("bo", A): [],
        ("cy", A): [f"files were not in a folder named {A}/"],
    }
    only = discover(tmp_path, [A], students=["bo"])
    assert [(s.student, s.assignment) for s in only] == [("bo", A)]


def test_feedback_view_hides_hidden_tests() -> None:
    source = (
        "check(Relu)\n### BEGIN HIDDEN TESTS\nassert secret_case(Relu) == 42\n### END HIDDEN TESTS"
    )
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "t", "points": 2}
    cell.outputs = [
        nbformat.v4.new_output(
            "error",
            ename="AssertionError",
            evalue="dx[3]: yours 0.1, expected 0.3",
            traceback=[
                "\x1b[0;32m----> 3\x1b[0m assert secret_case(Relu) == 42\n",
                "\x1b[0;31mAssertionError\x1b[0m: dx[3]: yours 0.1, expected 0.3",
            ],
        )
    ]
    nb = nbformat.v4.new_notebook(cells=[cell])
    out, _ = FeedbackView().preprocess(nb, {})
    shown = json.dumps(out)
    assert "secret_case" not in shown and "HIDDEN" not in shown
    assert "check(Relu)" in shown and "yours 0.1, expected 0.3" in shown
