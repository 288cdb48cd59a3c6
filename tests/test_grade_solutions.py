"""Every chapter's instructor solution scores full marks under `course-lib grade`.

The isolated grader runs test cells in a separate process and reaches the student's objects
through data-only remote calls (see docs/grading.md); this checks that everything the
chapters' tests do (gradient checks, Generators as seeds, ``isinstance`` on returned models,
callbacks into the test's lambdas, ...) works through it. One batch, one student submitting
the solution notebooks of chapters 1-5, two jobs. Needs the real datasets (chapters 3 and 5
train on MNIST / Fashion-MNIST in quick mode).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

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


def test_solutions_score_full_marks(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("COURSE_LIB_DATA", str(data_dir))
    subs = tmp_path / "submitted" / "instructor"
    for chapter in CHAPTERS:
        source = REPO / "solutions" / chapter / f"{chapter}.ipynb"
        if not source.exists():
            pytest.skip(f"{source} not written yet")
        (subs / chapter).mkdir(parents=True)
        shutil.copy(source, subs / chapter / source.name)
    result = grade_batch(
        tmp_path / "submitted",
        tmp_path / "out",
        course_root=REPO,
        assignments=CHAPTERS,
        options=GradeOptions(jobs=2, cell_timeout=120, notebook_timeout=900, feedback=False),
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    entries = result.students["instructor"]
    report = {
        chapter: (e["score"], e["max_score"], e["problems"], e["findings"])
        for chapter, e in entries.items()
    }
    assert sorted(entries) == CHAPTERS, report
    for entry in entries.values():
        assert entry["status"] == "graded", report
        assert entry["max_score"] > 0, report
        assert entry["score"] == entry["max_score"], report
        assert not entry["findings"], report
