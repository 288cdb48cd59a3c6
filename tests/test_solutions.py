"""The source notebooks of chapters 1-6: valid nbgrader sources that run clean in quick mode.

* The structural test is fast and needs no data: nbgrader metadata, markers, points, a fallback
  cell after every exercise, outputs cleared.
* ``test_source_notebook_runs_in_quick_mode`` runs each source notebook (solutions intact) top to
  bottom in a real Jupyter kernel (nbclient) with ``COURSE_QUICK=1`` on the real MNIST and
  Fashion-MNIST files: every solution passes its own visible *and* hidden tests, every figure and
  training cell runs, and no file is left behind.
* ``test_student_version_grades_nothing_but_runs_with_fallbacks`` turns each source into what a
  student receives (nbgrader's own ``ClearSolutions`` / ``ClearHiddenTests``), uncomments every
  "Stuck?" fallback cell and runs it: every graded test cell must fail (the tests can fail, and
  the fallbacks earn no points), while every other cell of the chapter must still run.

Chapter 6's widgets are tested in a real browser by tests/test_browser_digitpad.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbgrader.nbgraderformat import MetadataValidator
from notebook_support import cell_errors as _errors
from notebook_support import cell_label as _label
from notebook_support import is_fallback as _is_fallback
from notebook_support import nbgrader_meta as _nbgrader
from notebook_support import run_quick as _run
from notebook_support import solution_path as _path
from notebook_support import student_version_with_fallbacks as _student_version_with_fallbacks

#: assignment -> exercises (code solution cells), total points, figures, whether the setup cell
#: is locked, and (``written``) the manually graded written answers (markdown solution cells with
#: points, whose model answer and rubric the release replaces); docs/chapters_1_3.md and
#: docs/chapters_4_5.md list them.
NOTEBOOKS = {
    "ch01_differentiation": {
        "exercises": 7,
        "points": 16,
        "figures": 9,
        "locked_setup": False,
        "written": {
            "ch01_differentiation-predict-best-h": 2,
            "ch01_differentiation-why-central": 2,
            "ch01_differentiation-predict-learning-rates": 2,
        },
    },
    "ch02_backpropagation": {
        "exercises": 8,
        "points": 19,
        "figures": 5,
        "locked_setup": False,
        "written": {
            "ch02_backpropagation-q1-gradient-meaning": 2,
            "ch02_backpropagation-q2-kink": 2,
            "ch02_backpropagation-q3-initial-loss": 2,
        },
    },
    "ch03_training_techniques": {
        "exercises": 11,
        "points": 23,
        "figures": 10,
        "locked_setup": False,
        "written": {
            "ch03_training_techniques-q1-predict-init": 2,
            "ch03_training_techniques-q2-running-averages": 2,
        },
    },
    "ch04_convolutional_networks": {
        "exercises": 5,
        "points": 15,
        "figures": 7,
        "locked_setup": True,
        "written": {
            "ch04_convolutional_networks-q1-col2im-coverage": 2,
            "ch04_convolutional_networks-q2-why-convolution": 2,
        },
    },
    "ch05_deep_networks": {
        "exercises": 12,
        "points": 22,
        "figures": 10,
        "locked_setup": True,
        "written": {
            "ch05-residual-question": 2,
            "ch05-schedule-question": 1,
            "ch05-dropout-question": 2,
        },
    },
    "ch06_draw_a_digit": {"exercises": 5, "points": 9, "figures": 4, "locked_setup": True},
}
#: The chapters' first-cell switch (TEAM.md): quick by default, the full run's measured time
#: (``# fmt: skip`` keeps ruff format from splitting the line).
QUICK_SWITCH = re.compile(
    r"^QUICK = course_lib\.quick_mode\(True\)  # True: quick \(small subsets, every cell < 1 min\);"
    r" False: full run \(about [\d.]+(-[\d.]+)? min\)(  # fmt: skip)?$",
    re.M,
)


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_source_notebook_is_valid_nbgrader_source(name: str) -> None:
    nb = nbformat.read(_path(name), as_version=4)
    nbformat.validate(nb)
    MetadataValidator().validate_nb(nb)  # nbgrader's own schema check (raises on problems)
    assert nb.metadata["kernelspec"]["name"] == "python3"

    ids = [_nbgrader(c)["grade_id"] for c in nb.cells if _nbgrader(c)]
    assert len(ids) == len(set(ids)), "grade_id values must be unique"
    for cell in nb.cells:
        meta = _nbgrader(cell)
        if meta:
            assert meta["schema_version"] == 3 and meta["task"] is False
            assert meta["grade_id"].startswith((name + "-", name[:4] + "-")), meta["grade_id"]
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (
                f"commit the source with outputs cleared ({_label(cell)})"
            )
        if not meta.get("solution"):
            assert "### BEGIN SOLUTION" not in cell.source, f"solution markers in {_label(cell)}"
        if not meta.get("grade"):
            assert "HIDDEN TESTS" not in cell.source, (
                f"hidden tests outside a test cell: {_label(cell)}"
            )

    written = [c for c in nb.cells if c.cell_type == "markdown" and _nbgrader(c).get("solution")]
    assert {_nbgrader(c)["grade_id"]: _nbgrader(c)["points"] for c in written} == NOTEBOOKS[
        name
    ].get("written", {}), "written answers (markdown answer cells) and their points"
    for cell in written:  # manually graded: a model answer and a rubric, replaced by the release
        meta = _nbgrader(cell)
        assert meta["grade"] and not meta["locked"] and meta["points"] > 0, meta["grade_id"]
        assert "**Model answer.**" in cell.source and "**Rubric" in cell.source, meta["grade_id"]
    solutions = [c for c in nb.cells if c.cell_type == "code" and _nbgrader(c).get("solution")]
    tests = [c for c in nb.cells if c.cell_type == "code" and _nbgrader(c).get("grade")]
    assert len(solutions) == NOTEBOOKS[name]["exercises"]
    for cell in solutions:
        meta = _nbgrader(cell)
        assert cell.cell_type == "code" and not meta["grade"] and not meta["locked"]
        assert cell.source.count("### BEGIN SOLUTION") == cell.source.count("### END SOLUTION") >= 1
    for cell in tests:
        meta = _nbgrader(cell)
        assert meta["locked"] and not meta["solution"] and meta["points"] > 0
        assert meta["grade_id"].endswith("-tests"), meta["grade_id"]
        assert cell.source.count("### BEGIN HIDDEN TESTS") == 1
        assert cell.source.count("### END HIDDEN TESTS") == 1
        visible, hidden = cell.source.split("### BEGIN HIDDEN TESTS")
        assert re.search(r"check_\w+\(|assert ", visible), f"{meta['grade_id']}: visible checks"
        assert "Visible tests passed." in visible, meta["grade_id"]
        assert re.search(r"check_\w+\(|assert ", hidden), f"{meta['grade_id']}: empty hidden tests"
    assert sum(_nbgrader(c)["points"] for c in tests) == NOTEBOOKS[name]["points"]

    # every exercise's last test cell is followed by a commented-out "Stuck?" fallback cell
    for i, cell in enumerate(nb.cells):
        if cell in tests and not _nbgrader(nb.cells[i + 1]).get("grade"):
            follower = nb.cells[i + 1]
            assert _is_fallback(follower) and not _nbgrader(follower), (
                f"no fallback cell after {_nbgrader(cell)['grade_id']}"
            )
            code = [ln for ln in follower.source.splitlines() if ln.strip()]
            assert all(ln.startswith("#") for ln in code), "the fallback stays commented out"
    assert sum(_is_fallback(c) for c in nb.cells) == NOTEBOOKS[name]["exercises"]

    setup = next(c for c in nb.cells if c.cell_type == "code")
    assert QUICK_SWITCH.search(setup.source), (
        "the setup cell has the one quick/full switch: `QUICK = course_lib.quick_mode(True)  # True: "
        "quick (small subsets, every cell < 1 min); False: full run (about N min)`"
    )
    if NOTEBOOKS[name]["locked_setup"]:
        assert _nbgrader(setup).get("locked"), "the setup cell is read-only"


@pytest.mark.notebooks
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_source_notebook_runs_in_quick_mode(
    name: str, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = nbformat.read(_path(name), as_version=4)
    # raises CellExecutionError (cell source and traceback) on the first error
    _run(nb, tmp_path, monkeypatch, data_dir, allow_errors=False)

    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert not _errors(cell), f"error output in {_label(cell)}"
        if _nbgrader(cell).get("grade"):
            text = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")
            assert "Visible tests passed." in text, _nbgrader(cell)["grade_id"]
    images = sum(
        1
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    )
    expected = NOTEBOOKS[name]["figures"]
    assert images >= expected, f"expected {expected} figures, found {images}"
    assert not list(tmp_path.glob("*.npz")), "the notebook leaves no parameter files behind"


@pytest.mark.notebooks
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_student_version_grades_nothing_but_runs_with_fallbacks(
    name: str, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = _student_version_with_fallbacks(name)
    assert "raise NotImplementedError()" in "".join(c.source for c in nb.cells)
    assert "### BEGIN HIDDEN TESTS" not in "".join(c.source for c in nb.cells)
    _run(nb, tmp_path, monkeypatch, data_dir, allow_errors=True)

    for cell in nb.cells:
        if cell.cell_type != "code" or not _nbgrader(cell).get("grade"):
            continue  # written answers (markdown) are graded by hand
        errors = _errors(cell)
        assert errors, f"{_nbgrader(cell)['grade_id']} passed without the student's code"
        assert errors[0]["ename"] in ("AssertionError", "NotImplementedError"), (
            f"{_nbgrader(cell)['grade_id']}: {errors[0]['ename']}: {errors[0]['evalue']}"
        )
    # the unsolved solution cells only define names; everything else runs on the fallbacks
    for cell in nb.cells:
        if cell.cell_type == "code" and not _nbgrader(cell).get("grade"):
            errors = _errors(cell)
            assert not errors, (
                f"{_label(cell)} fails with the fallbacks: {errors[0]['ename']}: "
                f"{errors[0]['evalue']}"
            )
