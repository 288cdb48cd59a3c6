"""Plain ``nbgrader autograde`` grades exactly as ``course-lib grade`` does (the fairness policy).

ONE course (chapter 2 of the repository, the repository's ``graders/nbgrader_config.py``), three
chapter-2 submissions, graded by BOTH the real ``nbgrader autograde`` CLI and the real
``course-lib grade`` (at the same time, each into its own gradebook):

- ``honest``: the solution plus everyday habits (a shell command, a magic): full marks, the
  habits reported in the answer cell's comment, not flagged;
- ``reference``: a ``Relu`` whose ``backward`` delegates to the reference through an object it
  makes at run time. The reference runs only during the backward test, yet the policy costs the
  whole exercise: the forward test scores 0 too (before ``ApplyFindings``, plain nbgrader kept
  that point), with the instructor's comment naming the reference and the message in
  ``nbgrader generate_feedback``'s feedback;
- ``grader``: removing the watch's profile hook inside graded code: flagged for review, every
  test from the first Relu test on scores 0.

Every test cell's score is compared between the two gradebooks, cell by cell.
"""

from __future__ import annotations

import json
import subprocess
import sys

import nbformat
import pytest
from grading_support import CourseDir
from test_grade_fairness import SOURCE, A, filled, trim, with_answer_appended, with_cell_before

from course_lib.grading.notebook import grade_id, is_test

pytestmark = [pytest.mark.grading, pytest.mark.timeout(1800)]

RELU_TESTS = (f"{A}-relu-forward-tests", f"{A}-relu-backward-tests")

BACKWARD_BY_REFERENCE = """
class Relu(Relu):
    def backward(self, dout):
        helper = course_lib.layers.Relu()
        helper.mask = self.mask
        return helper.backward(dout)
"""

UNHOOK = """
class Relu(Relu):
    def forward(self, x):
        __import__('sys').setprofile(None)
        return super().forward(x)
"""


def submissions(student_version) -> dict[str, nbformat.NotebookNode]:
    base = trim(filled(student_version, nbformat.read(str(SOURCE), as_version=4)))
    habits = "!echo hello from the shell\n%whos"
    return {
        "honest": with_cell_before(base, RELU_TESTS[0], habits),
        "reference": with_answer_appended(base, "relu", BACKWARD_BY_REFERENCE),
        "grader": with_answer_appended(base, "relu", UNHOOK),
    }


def chapter_tests() -> list[str]:
    """The autograder test cells of chapter 2, in order (written answers are graded by hand)."""
    source = nbformat.read(str(SOURCE), as_version=4)
    return [grade_id(c) for c in source.cells if c.cell_type == "code" and is_test(c)]


def read_gradebook(db_url: str, students) -> dict[str, dict]:
    """student -> {"scores": test grade_id -> (auto_score, max_score), "comments", "flagged"}."""
    from nbgrader.api import Gradebook

    tests = set(chapter_tests())
    out = {}
    with Gradebook(db_url) as gb:
        for student in students:
            nb = gb.find_submission_notebook(A, A, student)
            out[student] = {
                "scores": {
                    g.name: (g.auto_score, g.max_score) for g in nb.grades if g.name in tests
                },
                "comments": {c.name: c.auto_comment or "" for c in nb.comments},
                "flagged": bool(nb.flagged),
            }
    return out


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parity")
    course = CourseDir.create(tmp / "course", from_repo=[A], register=[A])
    course.generate_assignment(A)
    student_version = nbformat.read(str(course.root / "chapters" / A / f"{A}.ipynb"), 4)
    subs = submissions(student_version)
    for student, nb in subs.items():
        course.submit(student, A, nb)
    out = tmp / "out"
    env = course.env({"COURSE_QUICK": "1"})
    env.pop("COURSE_LIB_GRADEBOOK_URL")
    command = [sys.executable, "-m", "course_lib.cli", "grade", str(course.graders / "submitted")]
    command += ["-o", str(out), "-a", A, "-j", "1", "--course-root", str(course.root)]
    grade = subprocess.Popen(command, cwd=tmp, env=env, stdout=subprocess.PIPE, text=True)
    try:  # both graders at once (each grades one notebook at a time)
        course.autograde(A, env={"COURSE_QUICK": "1"})
        course.generate_feedback(A)
    finally:
        stdout, _ = grade.communicate(timeout=1500)
    assert grade.returncode == 0, stdout[-4000:]
    return {
        "course": course,
        "students": list(subs),
        "plain": read_gradebook(course.db_url, subs),
        "grade": read_gradebook(f"sqlite:///{out / 'gradebook.db'}", subs),
        "summary": json.loads((out / "summary.json").read_text())["students"],
    }


def test_same_score_in_every_cell(graded):
    assert len(graded["plain"]["honest"]["scores"]) == len(chapter_tests()) > 10
    for student in graded["students"]:
        plain, grade = graded["plain"][student], graded["grade"][student]
        assert plain["scores"] == grade["scores"], student
        assert plain["flagged"] == grade["flagged"], student


def test_honest_habits_keep_full_marks(graded):
    for which in ("plain", "grade"):
        entry = graded[which]["honest"]
        assert all(score == top for score, top in entry["scores"].values()), (which, entry)
        assert not entry["flagged"]
        assert "shell" in entry["comments"][f"{A}-relu"].lower(), (which, entry["comments"])


def test_reference_at_run_time_costs_the_whole_exercise(graded):
    for which in ("plain", "grade"):
        entry = graded[which]["reference"]
        lost = {gid for gid, (score, top) in entry["scores"].items() if score != top}
        assert lost == set(RELU_TESTS), (which, entry["scores"])
        assert not entry["flagged"]
        comment = entry["comments"][f"{A}-relu"]
        assert "course_lib.layers.activations.Relu" in comment, (which, comment)
    costly = [f for f in graded["summary"]["reference"][A]["findings"] if f["costs_points"]]
    assert costly and all(f["tests"] == sorted(RELU_TESTS) for f in costly), costly


def test_plain_feedback_shows_why(graded):
    course = graded["course"]
    html = course.feedback_path(A, "reference").read_text()
    assert "ReferenceUsed" in html and "course_lib.layers.activations.Relu" in html
    assert "IntegrityCheckFailed" in html  # on the forward test, where the reference never ran
    autograded = course.autograded_notebook(A, "reference")
    forward = next(c for c in autograded.cells if grade_id(c) == RELU_TESTS[0])
    assert any(o.get("ename") == "IntegrityCheckFailed" for o in forward.outputs), forward.outputs


def test_grader_reach_is_flagged_and_zeroes_from_there(graded):
    order = chapter_tests()
    after = set(order[order.index(RELU_TESTS[0]) :])
    for which in ("plain", "grade"):
        entry = graded[which]["grader"]
        assert entry["flagged"], which
        lost = {gid for gid, (score, top) in entry["scores"].items() if score != top}
        assert lost == after, (which, sorted(lost ^ after))
