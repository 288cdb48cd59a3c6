"""A submission missing an answer cell together with its test cell is graded, not lost.

nbgrader's ``OverwriteCells`` puts deleted test cells back after the cell that precedes them in
the source and fails on the whole notebook when that cell (an answer cell) was deleted too;
``report_changes`` puts such answer cells back, unanswered, first. The whole path, through the
real nbgrader, runs in tests/test_grade_corpus.py (its trimmed submissions of chapter 2)."""

from __future__ import annotations

import nbformat
from nbformat import v4

from course_lib.grading.notebook import grade_id, report_changes


def _cell(gid: str, *, solution: bool, grade: bool, source: str = "") -> nbformat.NotebookNode:
    meta = {"grade_id": gid, "solution": solution, "grade": grade, "locked": not solution}
    if grade:
        meta["points"] = 1
    return v4.new_code_cell(source, metadata={"nbgrader": {**meta, "schema_version": 3}})


def test_deleted_answer_cells_come_back_unanswered_in_source_order():
    source = v4.new_notebook(
        cells=[
            _cell("a", solution=True, grade=False, source="def a(): return 1"),
            _cell("a-tests", solution=False, grade=True, source="assert a() == 1"),
            _cell("b", solution=True, grade=False, source="def b(): return 2"),
            _cell("b-tests", solution=False, grade=True, source="assert b() == 2"),
            _cell("c", solution=True, grade=False, source="def c(): return 3"),
        ]
    )
    submitted = v4.new_notebook(cells=[source.cells[0], source.cells[1]])
    problems: list[str] = []
    nb = report_changes(submitted, source, problems)
    assert [grade_id(c) for c in nb.cells] == ["a", "a-tests", "b", "c"]
    restored = nb.cells[2]
    assert "raise NotImplementedError()" in restored.source and "return 2" not in restored.source
    assert restored.metadata["nbgrader"]["solution"] is True
    assert "answer cell b was deleted (graded as unanswered)" in problems
    assert "test cell b-tests was deleted (nbgrader put it back)" in problems


def test_a_first_answer_cell_comes_back_at_the_top():
    source = v4.new_notebook(
        cells=[
            _cell("a", solution=True, grade=False, source="def a(): return 1"),
            _cell("a-tests", solution=False, grade=True, source="assert a() == 1"),
        ]
    )
    nb = report_changes(v4.new_notebook(cells=[source.cells[1]]), source, [])
    assert [grade_id(c) for c in nb.cells] == ["a", "a-tests"]
