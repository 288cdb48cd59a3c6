"""Grading the chapters under `course-lib grade`: solutions score full marks, and a mistake in
one exercise costs only that exercise, also where another exercise calls the faulty code.

The isolated grader runs test cells in a separate process and reaches the student's objects
through data-only remote calls (see docs/grading.md); this checks that everything the
chapters' tests do (gradient checks, Generators as seeds, ``isinstance`` on returned models,
callbacks into the test's lambdas, backpropagating through a student's network from the
test, ...) works through it. One batch, two jobs: student ``instructor`` submits the solution
notebooks of chapters 1-5; student ``dependencies`` submits chapters 2, 3, 4 and 6 with the
planted errors whose code other exercises call (a layer inside TwoLayerNet, col2im inside
Convolution and Pooling, ...). Needs the real datasets (chapters 3 and 5 train on MNIST /
Fashion-MNIST in quick mode).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from grading_support import graded_cell_points, plant
from planted_errors import PLANTED

from course_lib.grading.batch import GradeOptions, grade_batch

pytestmark = [pytest.mark.grading, pytest.mark.slow, pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = [
    "ch01_differentiation",
    "ch02_backpropagation",
    "ch03_training_techniques",
    "ch04_convolutional_networks",
    "ch05_deep_networks",
]
# planted errors in code that another exercise of the chapter calls
DEPENDENCIES = {
    "ch02_backpropagation": ("affine-db-sum-over-wrong-axis", "relu-backward-sign-error"),
    "ch03_training_techniques": (
        "batch_norm-dbeta-sum-over-wrong-axis",
        "dropout-backward-ignores-mask",
    ),
    "ch04_convolutional_networks": ("col2im-overlaps-not-added",),
    "ch06_draw_a_digit": ("center_of_mass-row-col-swapped",),
}


def source(chapter: str) -> Path:
    path = REPO / "solutions" / chapter / f"{chapter}.ipynb"
    if not path.exists():
        pytest.skip(f"{path} not written yet")
    return path


@pytest.fixture(scope="module")
def graded(tmp_path_factory, data_dir):
    """Grade both students in one batch; return (entries by student, expected scores)."""
    root = tmp_path_factory.mktemp("grade-solutions")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COURSE_LIB_DATA", str(data_dir))
        for chapter in CHAPTERS:
            folder = root / "submitted" / "instructor" / chapter
            folder.mkdir(parents=True)
            shutil.copy(source(chapter), folder / f"{chapter}.ipynb")
        expected = {}
        for chapter, names in DEPENDENCIES.items():
            nb = nbformat.read(source(chapter), as_version=nbformat.NO_CONVERT)
            points = graded_cell_points(nb)
            plants = [p for p in PLANTED[chapter] if p.name in names]
            assert {p.name for p in plants} == set(names), f"planted errors renamed in {chapter}"
            for wrong in plants:
                nb = plant(nb, wrong)
            lost = {gid for wrong in plants for gid in wrong.loses}
            expected[chapter] = (sum(points.values()) - sum(points[g] for g in lost), lost)
            folder = root / "submitted" / "dependencies" / chapter
            folder.mkdir(parents=True)
            nbformat.write(nb, folder / f"{chapter}.ipynb")
        result = grade_batch(
            root / "submitted",
            root / "out",
            course_root=REPO,
            assignments=sorted({*CHAPTERS, *DEPENDENCIES}),
            options=GradeOptions(jobs=2, cell_timeout=120, notebook_timeout=900, feedback=False),
            log=lambda msg: print(msg, file=sys.stderr, flush=True),
        )
    return result.students, expected


def test_solutions_score_full_marks(graded):
    entries = graded[0]["instructor"]
    report = {
        chapter: (e["score"], e["max_score"], e["problems"], e["findings"])
        for chapter, e in entries.items()
    }
    assert sorted(k for k, e in entries.items() if e["status"] != "missing") == CHAPTERS, report
    for chapter in CHAPTERS:
        entry = entries[chapter]
        # written answers (markdown answer cells) wait for the instructor: the autograder gives
        # full marks on every autograded cell and leaves them at 0
        autograded = sum(graded_cell_points(nbformat.read(source(chapter), as_version=4)).values())
        assert entry["status"] == "graded", report
        assert entry["max_score"] >= autograded > 0, report
        assert entry["score"] == autograded, report
        assert not entry["findings"], report


def test_a_mistake_costs_only_its_own_exercise(graded):
    students, expected = graded
    entries = students["dependencies"]
    for chapter, (score, lost) in expected.items():
        entry = entries[chapter]
        assert entry["status"] == "graded", (chapter, entry["problems"])
        assert entry["score"] == score, (
            f"{chapter}: planted {DEPENDENCIES[chapter]} should cost exactly {sorted(lost)} "
            f"({entry['max_score'] - score} points), but the score is {entry['score']} of "
            f"{entry['max_score']}; problems: {entry['problems']}"
        )
