"""The course home (START_HERE.ipynb) and `course-lib progress`: the chapter map and the
student's progress per check, from saved outputs or from the last validate."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat

from course_lib.cli import main
from course_lib.course_home import (
    CHAPTERS,
    FAILING,
    NOT_ATTEMPTED,
    NOT_RUN,
    PASSING,
    chapter_checks,
    record_validation,
    write_home_notebook,
)

REPO = Path(__file__).resolve().parent.parent
CHAPTER = "ch02_backpropagation"


def gid(cell) -> str:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")


def workspace_with_some_work(tmp_path: Path) -> Path:
    """ch02 with: Relu written, its forward test run fine, its backward test failing;
    Sigmoid written but not tested; everything else untouched."""
    ws = tmp_path / "ws"
    shutil.copytree(REPO / "chapters" / CHAPTER, ws / CHAPTER)
    path = ws / CHAPTER / f"{CHAPTER}.ipynb"
    nb = nbformat.read(str(path), 4)
    for cell in nb.cells:
        if gid(cell) in (f"{CHAPTER}-relu", f"{CHAPTER}-sigmoid"):
            cell.source = cell.source.replace("raise NotImplementedError()", "pass")
        if gid(cell) == f"{CHAPTER}-relu-forward-tests":
            cell.execution_count = 5
            cell.outputs = [nbformat.v4.new_output("stream", text="Visible tests passed.\n")]
        if gid(cell) == f"{CHAPTER}-relu-backward-tests":
            cell.execution_count = 6
            cell.outputs = [
                nbformat.v4.new_output(
                    "error",
                    ename="AssertionError",
                    evalue="Relu backward[1, 1]: yours -40",
                    traceback=[],
                )
            ]
    nbformat.write(nb, str(path))
    return ws


def test_progress_from_the_saved_outputs(tmp_path):
    ws = workspace_with_some_work(tmp_path)
    checks = {c.label: c for c in chapter_checks(ws, CHAPTER)}
    assert checks["relu-forward"].status == PASSING
    assert checks["relu-backward"].status == FAILING
    assert checks["relu-backward"].message == "AssertionError: Relu backward[1, 1]: yours -40"
    assert checks["sigmoid-forward"].status == NOT_RUN
    assert checks["mul"].status == NOT_ATTEMPTED
    assert {c.source for c in checks.values()} == {"notebook"}
    assert chapter_checks(ws, "ch01_differentiation") is None  # not in the workspace


def test_validate_results_count_until_the_notebook_changes(tmp_path):
    ws = workspace_with_some_work(tmp_path)
    path = ws / CHAPTER / f"{CHAPTER}.ipynb"
    checks = chapter_checks(ws, CHAPTER)
    for check in checks:
        check.status = PASSING
    record_validation(ws, CHAPTER, path, checks)
    assert {c.status for c in chapter_checks(ws, CHAPTER)} == {PASSING}
    assert {c.source for c in chapter_checks(ws, CHAPTER)} == {"validate"}
    path.write_text(path.read_text().replace("Visible tests passed.", "Visible tests passed!"))
    assert chapter_checks(ws, CHAPTER)[0].source == "notebook"


def test_start_here_has_the_map_and_the_progress(tmp_path):
    ws = workspace_with_some_work(tmp_path)
    home = write_home_notebook(ws, REPO / "chapters")
    nb = nbformat.read(str(home), 4)
    text = "\n".join(c.source for c in nb.cells)
    for chapter, info in CHAPTERS.items():
        assert f"[{info.title}]({chapter}/{chapter}.ipynb)" in text
    assert "about 4-5 h" in text  # study time of chapter 2
    assert "❌ `relu-backward`" in text and "✅ `relu-forward`" in text
    assert "**1. Numerical differentiation**: not in your workspace yet." in text
    assert nb.cells[-1].cell_type == "code" and "show()" in nb.cells[-1].source


def test_progress_command_prints_the_table(tmp_path, capsys):
    ws = workspace_with_some_work(tmp_path)
    assert main(["progress", "--workspace", str(ws)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "relu-backward" in line)
    assert row.split()[:4] == [CHAPTER, "relu-backward", "1", "failing"]
    assert "ch01_differentiation" in out and "(not in your workspace yet)" in out
    assert "1 passing, 1 failing" in out.splitlines()[-1]
