"""The source notebooks of chapters 4 and 5: valid nbgrader sources that run clean in quick mode.

* The structural test is fast and needs no data: nbgrader metadata, markers, points, a fallback
  cell after every exercise, outputs cleared.
* ``test_source_notebook_runs_in_quick_mode`` runs each source notebook (solutions intact) top to
  bottom in a real Jupyter kernel (nbclient) with ``COURSE_QUICK=1`` on the real MNIST and
  Fashion-MNIST files: every solution passes its own visible *and* hidden tests, and every figure
  and training cell runs.
* ``test_student_version_grades_nothing_but_runs_with_fallbacks`` turns each source into what a
  student receives (nbgrader's own ``ClearSolutions`` / ``ClearHiddenTests``), uncomments every
  "Stuck?" fallback cell and runs it: every graded test cell must fail (the tests can fail, and
  the fallbacks earn no points), while every other cell of the chapter must still run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbgrader.nbgraderformat import MetadataValidator

REPO = Path(__file__).resolve().parent.parent
#: assignment -> exercises (solution cells), total points, figures; see docs/chapters_4_5.md.
NOTEBOOKS = {
    "ch04_convolutional_networks": {"exercises": 5, "points": 15, "figures": 7},
    "ch05_deep_networks": {"exercises": 9, "points": 16, "figures": 7},
}
#: One BLAS thread per kernel: on a shared 2-core machine, threaded BLAS only thrashes.
SINGLE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _path(name: str) -> Path:
    return REPO / "solutions" / name / f"{name}.ipynb"


def _nbgrader(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def _is_fallback(cell) -> bool:
    return cell.cell_type == "code" and cell.source.lstrip().startswith("# Stuck?")


def _errors(cell) -> list[dict]:
    return [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]


def _label(cell) -> str:
    return _nbgrader(cell).get("grade_id") or cell.source.strip().splitlines()[0][:70]


def _run(nb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path, allow_errors: bool):
    from nbclient import NotebookClient

    monkeypatch.setenv("COURSE_QUICK", "1")
    monkeypatch.setenv("COURSE_LIB_DATA", str(data_dir))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend keeps figures
    for key, value in SINGLE_THREAD.items():
        monkeypatch.setenv(key, os.environ.get(key, value))
    # run in a scratch folder: files the notebook writes must not land in solutions/
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # without allow_errors: raises CellExecutionError naming the cell
    return nb


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
            assert meta["grade_id"].startswith(name[:4] + "-"), meta["grade_id"]
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (
                f"commit the source with outputs cleared ({_label(cell)})"
            )

    solutions = [c for c in nb.cells if _nbgrader(c).get("solution")]
    tests = [c for c in nb.cells if _nbgrader(c).get("grade")]
    assert len(solutions) == NOTEBOOKS[name]["exercises"]
    for cell in solutions:
        assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
        assert not _nbgrader(cell)["grade"] and not _nbgrader(cell)["locked"]
    for cell in tests:
        meta = _nbgrader(cell)
        assert meta["locked"] and not meta["solution"] and meta["points"] > 0
        assert meta["grade_id"].endswith("-tests"), meta["grade_id"]
        assert "### BEGIN HIDDEN TESTS" in cell.source and "### END HIDDEN TESTS" in cell.source
        visible = cell.source.split("### BEGIN HIDDEN TESTS")[0]
        assert re.search(r"checks\.check_|assert ", visible), "visible checks come first"
        assert 'print("Visible tests passed.' in visible or "Visible tests passed." in visible
    assert sum(_nbgrader(c)["points"] for c in tests) == NOTEBOOKS[name]["points"]

    # every exercise's last test cell is followed by a commented-out "Stuck?" fallback cell
    for i, cell in enumerate(nb.cells):
        if _nbgrader(cell).get("grade") and not _nbgrader(nb.cells[i + 1]).get("grade"):
            follower = nb.cells[i + 1]
            assert _is_fallback(follower) and not _nbgrader(follower), (
                f"no fallback cell after {_nbgrader(cell)['grade_id']}"
            )
            code = [ln for ln in follower.source.splitlines() if ln.strip()]
            assert all(ln.startswith("#") for ln in code), "the fallback stays commented out"
    assert sum(_is_fallback(c) for c in nb.cells) == NOTEBOOKS[name]["exercises"]

    setup = next(c for c in nb.cells if c.cell_type == "code")
    assert 'QUICK = os.environ.get("COURSE_QUICK") == "1"' in setup.source
    assert _nbgrader(setup).get("locked"), "the setup cell is read-only"


@pytest.mark.notebooks
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_source_notebook_runs_in_quick_mode(
    name: str, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = nbformat.read(_path(name), as_version=4)
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


def _student_version_with_fallbacks(name: str):
    """What a student receives (nbgrader's own preprocessors), with every fallback uncommented."""
    from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

    nb = nbformat.read(_path(name), as_version=4)
    nb, resources = ClearSolutions().preprocess(nb, {})
    nb, _ = ClearHiddenTests().preprocess(nb, resources)
    for cell in nb.cells:
        if _is_fallback(cell):
            lines = cell.source.splitlines()
            body = [
                ln if ln.startswith("# (") else ("" if ln == "#" else ln.removeprefix("# "))
                for ln in lines[1:]
            ]
            cell.source = "\n".join([lines[0], *body])
    return nb


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
        if not _nbgrader(cell).get("grade"):
            continue
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
