"""Running the chapters' source notebooks in tests: paths, cell helpers, a quick-mode kernel
run, and the student version with every "Stuck?" fallback switched on.

Used by tests/test_solutions.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
#: One BLAS thread per kernel: on a shared 2-core machine, threaded BLAS only thrashes.
SINGLE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def solution_path(name: str) -> Path:
    return REPO / "solutions" / name / f"{name}.ipynb"


def nbgrader_meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def is_fallback(cell) -> bool:
    return cell.cell_type == "code" and cell.source.lstrip().startswith("# Stuck?")


def cell_errors(cell) -> list[dict]:
    return [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]


def cell_label(cell) -> str:
    return nbgrader_meta(cell).get("grade_id") or cell.source.strip().splitlines()[0][:70]


def run_quick(
    nb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path, allow_errors: bool
):
    """Execute ``nb`` in a real kernel, quick mode, one BLAS thread, in ``tmp_path``.

    Without ``allow_errors`` the first failing cell raises CellExecutionError (its source and
    traceback); with it, errors stay in the cells' outputs.
    """
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
    client.execute()
    return nb


def student_version_with_fallbacks(name: str):
    """What a student receives (nbgrader's own preprocessors), with every fallback uncommented."""
    from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

    nb = nbformat.read(solution_path(name), as_version=4)
    nb, resources = ClearSolutions().preprocess(nb, {})
    nb, _ = ClearHiddenTests().preprocess(nb, resources)
    for cell in nb.cells:
        if is_fallback(cell):
            lines = cell.source.splitlines()
            body = [
                ln if ln.startswith("# (") else ("" if ln == "#" else ln.removeprefix("# "))
                for ln in lines[1:]
            ]
            cell.source = "\n".join([lines[0], *body])
    return nb
