"""The source notebooks of chapters 4 and 5: valid nbgrader sources that run clean in quick mode.

The structural tests are fast and need no data. The execution tests run each
notebook top to bottom in a real Jupyter kernel (nbclient) with ``COURSE_QUICK=1``
on the real MNIST / Fashion-MNIST files, so every solution passes its own visible
and hidden tests and every figure and training cell runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbgrader.nbgraderformat import MetadataValidator

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = {
    "ch04_convolutional_networks": {"min_exercises": 5, "points": 15},
    "ch05_deep_networks": {"min_exercises": 7, "points": 16},
}


def _path(name: str) -> Path:
    return REPO / "solutions" / name / f"{name}.ipynb"


def _nbgrader(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


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
            assert meta["schema_version"] == 3
            assert meta["grade_id"].startswith(name[:4] + "-"), meta["grade_id"]
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (
                f"commit the source with outputs cleared (cell {meta.get('grade_id', '?')})"
            )

    solutions = [c for c in nb.cells if _nbgrader(c).get("solution")]
    tests = [c for c in nb.cells if _nbgrader(c).get("grade")]
    assert len(solutions) >= NOTEBOOKS[name]["min_exercises"]
    for cell in solutions:
        assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
        assert not _nbgrader(cell)["grade"] and not _nbgrader(cell)["locked"]
    for cell in tests:
        meta = _nbgrader(cell)
        assert meta["locked"] and not meta["solution"] and meta["points"] > 0
        assert meta["grade_id"].endswith("tests"), meta["grade_id"]
        assert "### BEGIN HIDDEN TESTS" in cell.source and "### END HIDDEN TESTS" in cell.source
        visible = cell.source.split("### BEGIN HIDDEN TESTS")[0]
        assert re.search(r"checks\.check_|assert ", visible), "visible checks come first"
    assert sum(_nbgrader(c)["points"] for c in tests) == NOTEBOOKS[name]["points"]

    # every test cell is followed (after any further test cells) by a plain fallback cell
    for i, cell in enumerate(nb.cells):
        if _nbgrader(cell).get("grade") and not _nbgrader(nb.cells[i + 1]).get("grade"):
            follower = nb.cells[i + 1]
            assert follower.cell_type == "code" and not _nbgrader(follower), (
                f"no fallback cell after {_nbgrader(cell)['grade_id']}"
            )
            assert follower.source.lstrip().startswith("#"), "the fallback line stays commented"

    setup = next(c for c in nb.cells if c.cell_type == "code")
    assert 'QUICK = os.environ.get("COURSE_QUICK") == "1"' in setup.source


@pytest.mark.notebooks
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_source_notebook_runs_in_quick_mode(
    name: str, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbclient import NotebookClient

    monkeypatch.setenv("COURSE_QUICK", "1")
    monkeypatch.setenv("COURSE_LIB_DATA", str(data_dir))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend keeps figures
    nb = nbformat.read(_path(name), as_version=4)
    # run in a scratch folder: files the notebook writes must not land in solutions/
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError with the cell and traceback on any error

    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.get("output_type") == "error"]
        assert not errors, (
            f"error output in cell {_nbgrader(cell).get('grade_id', cell.source[:60])}"
        )
        if _nbgrader(cell).get("grade"):
            text = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")
            assert "visible tests passed" in text, _nbgrader(cell)["grade_id"]
    images = sum(
        1
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    )
    assert images >= 6, f"expected the chapter's figures, found {images}"
