"""`course-lib release`: chapters/ is generated from solutions/ by nbgrader, reproducibly.

The pipeline tests run the real `course-lib release` command (and through it the real
`nbgrader generate_assignment`) on temporary course directories; the synthetic assignment of
tests/grading_support.py keeps them independent of the chapters' contents.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from grading_support import (
    REPO_ROOT,
    SYNTHETIC_ID,
    CourseDir,
    chapter_ids,
    nbgrader_meta,
    read_notebook,
    synthetic_notebook,
)

from course_lib.grading.course import (
    ReleaseError,
    load_course,
    nbgrader_environment,
)
from course_lib.release import (
    compare_trees,
    normalize_notebook,
    notebook_bytes,
    release,
    unregistered_sources,
)

CHAPTERS = chapter_ids()
OTHER_ID = "synthetic_other"


def course_lib_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real `course-lib` command (as installed: the console script's module)."""
    env = nbgrader_environment()
    env.pop("COURSE_LIB_GRADEBOOK_URL", None)  # never touch a real gradebook from a test
    return subprocess.run(
        [sys.executable, "-m", "course_lib.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def second_notebook() -> nbformat.NotebookNode:
    nb = synthetic_notebook()
    nb.cells[0].source = "# Another synthetic chapter"
    return nb


@pytest.fixture
def course(tmp_path: Path) -> CourseDir:
    """A course with two synthetic assignments and a registered one without solutions."""
    return CourseDir.create(
        tmp_path / "course",
        notebooks={SYNTHETIC_ID: synthetic_notebook(), OTHER_ID: second_notebook()},
        register=[SYNTHETIC_ID, OTHER_ID, "not_written_yet"],
    )


# --------------------------------------------------------------------------------------------
# The repository itself
# --------------------------------------------------------------------------------------------


@pytest.mark.grading
def test_release_check_passes_on_the_committed_tree() -> None:
    proc = course_lib_cli("release", "--check", cwd=REPO_ROOT)
    assert proc.returncode == 0, (
        "chapters/ is stale; run `course-lib release` and commit chapters/.\n"
        f"{proc.stdout}\n{proc.stderr}"
    )
    assert "up to date" in proc.stdout


def test_config_registers_the_course_assignments() -> None:
    config = load_course(REPO_ROOT)
    # every chapter of solutions/, in teaching order (their names start chNN_)
    folders = (REPO_ROOT / "solutions").iterdir()
    chapters = sorted(p.name for p in folders if p.is_dir() and not p.name.startswith("."))
    assert len(chapters) >= 6 and all(name.startswith("ch") for name in chapters), chapters
    assert config.assignments == tuple(chapters)
    assert (config.source_directory, config.release_directory) == ("solutions", "chapters")
    assert unregistered_sources(config) == []


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_committed_chapter_is_a_student_version(chapter: str) -> None:
    """Every answer cell is a stub, hidden tests are gone, tests are locked, no outputs."""
    source = read_notebook(REPO_ROOT / "solutions" / chapter / f"{chapter}.ipynb")
    released_path = REPO_ROOT / "chapters" / chapter / f"{chapter}.ipynb"
    assert released_path.is_file(), f"{released_path} missing: run `course-lib release`"
    released = read_notebook(released_path)
    assert len(released.cells) == len(source.cells)
    solutions = tests = 0
    for cell in released.cells:
        meta = nbgrader_meta(cell)
        assert "BEGIN SOLUTION" not in cell.source and "HIDDEN TESTS" not in cell.source
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
        if meta.get("solution") and cell.cell_type == "code":
            solutions += 1
            assert "raise NotImplementedError()" in cell.source, meta["grade_id"]
        if meta.get("grade") and not meta.get("solution"):
            tests += 1
            assert meta.get("locked") and "checksum" in meta, meta["grade_id"]
    assert solutions >= 3 and tests >= 3, f"{chapter}: the course wants >= 3 graded exercises"


# --------------------------------------------------------------------------------------------
# The command on temporary courses
# --------------------------------------------------------------------------------------------


@pytest.mark.grading
def test_release_then_check_and_staleness(course: CourseDir) -> None:
    chapters = course.root / "chapters"
    syn_dir = chapters / SYNTHETIC_ID
    (course.root / "solutions" / SYNTHETIC_ID / "data.txt").write_text("1 2 3\n")
    proc = course_lib_cli("release", "--check", cwd=course.root)
    assert proc.returncode == 1
    assert f"missing: chapters/{SYNTHETIC_ID}/{SYNTHETIC_ID}.ipynb" in proc.stderr
    assert "course-lib release" in proc.stderr

    proc = course_lib_cli("release", cwd=course.root / "solutions")  # root found upwards
    assert proc.returncode == 0, proc.stderr
    assert "skipped not_written_yet" in proc.stdout
    assert sorted(p.name for p in chapters.iterdir()) == [SYNTHETIC_ID, OTHER_ID]
    assert (syn_dir / "data.txt").read_text() == "1 2 3\n"  # other files are released too

    # An edited source makes its chapter stale (the message shows what changed); deleted
    # and stray files are reported; editor litter is not.
    nb = read_notebook(course.root / "solutions" / SYNTHETIC_ID / f"{SYNTHETIC_ID}.ipynb")
    nb.cells[0].source = "# Synthetic chapter, revised"
    course.write_source(SYNTHETIC_ID, nb)
    (syn_dir / "data.txt").unlink()
    (syn_dir / "notes.txt").write_text("stray", encoding="utf-8")
    (syn_dir / ".ipynb_checkpoints").mkdir()
    (syn_dir / ".ipynb_checkpoints" / "x-checkpoint.ipynb").write_text("{}")
    proc = course_lib_cli("release", "--check", "--assignment", SYNTHETIC_ID, cwd=course.root)
    assert proc.returncode == 1
    assert f"stale:   chapters/{SYNTHETIC_ID}/{SYNTHETIC_ID}.ipynb" in proc.stderr
    assert "revised" in proc.stderr
    assert f"missing: chapters/{SYNTHETIC_ID}/data.txt" in proc.stderr
    assert f"extra:   chapters/{SYNTHETIC_ID}/notes.txt" in proc.stderr
    assert "checkpoint" not in proc.stderr and OTHER_ID not in proc.stderr
    assert f"course-lib release --assignment {SYNTHETIC_ID}" in proc.stderr

    # An unrelated assignment checked on its own is fine, and releasing one assignment
    # leaves the other one untouched.
    assert release(load_course(course.root), assignments=[OTHER_ID], check=True).diff.clean
    other = chapters / OTHER_ID / f"{OTHER_ID}.ipynb"
    other_before = other.stat().st_mtime_ns
    assert release(load_course(course.root), assignments=[SYNTHETIC_ID]).written
    assert other.stat().st_mtime_ns == other_before
    assert not (syn_dir / "notes.txt").exists() and (syn_dir / "data.txt").is_file()

    # A full release removes the chapter of a source that is gone.
    shutil.rmtree(course.root / "solutions" / OTHER_ID)
    assert release(load_course(course.root)).written
    assert sorted(p.name for p in chapters.iterdir()) == [SYNTHETIC_ID]
    assert release(load_course(course.root), check=True).diff.clean


@pytest.mark.grading
def test_release_output_is_the_normalised_student_version(course: CourseDir) -> None:
    first = release(load_course(course.root))
    assert first.written and first.assignments == [SYNTHETIC_ID, OTHER_ID]
    path = course.root / "chapters" / SYNTHETIC_ID / f"{SYNTHETIC_ID}.ipynb"
    text = path.read_text(encoding="utf-8")
    nb = json.loads(text)

    by_id = {c["metadata"].get("nbgrader", {}).get("grade_id"): c for c in nb["cells"]}
    answer = "".join(by_id["synthetic-double"]["source"])
    assert "return 2 * x" not in answer and "BEGIN SOLUTION" not in answer
    assert "# YOUR CODE HERE\n    raise NotImplementedError()" in answer
    tests = "".join(by_id["synthetic-column_sums-tests"]["source"])
    assert "column_sums(ones((2, 3)))" in tests and "arange" not in tests
    assert by_id["synthetic-column_sums-tests"]["metadata"]["nbgrader"]["locked"] is True
    assert all(
        c.get("outputs") == [] and c.get("execution_count") is None
        for c in nb["cells"]
        if c["cell_type"] == "code"
    )
    assert nb["metadata"] == {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    assert text == json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"

    # Running the source notebook (outputs, counts, timing metadata, another Python) and
    # releasing again changes nothing: --check is stable across runs and machines.
    executed = synthetic_notebook()
    executed.metadata["language_info"]["version"] = "3.12.9"
    executed.metadata["widgets"] = {"state": {"abc": 1}}
    for n, cell in enumerate(executed.cells):
        cell.metadata["execution"] = {"iopub.status.busy": "2024-01-01T00:00:00.000000Z"}
        cell.metadata["trusted"] = True
        if cell.cell_type == "code":
            cell.execution_count = n
            cell.outputs = [nbformat.v4.new_output("stream", text=f"output {n}\n")]
    course.write_source(SYNTHETIC_ID, executed)
    again = release(load_course(course.root), check=True)
    assert again.diff.clean, again.diff
    assert not again.written


def test_a_personal_jupyter_config_does_not_change_the_release(
    course: CourseDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    personal = tmp_path / "jupyter-config"
    personal.mkdir()
    (personal / "nbgrader_config.py").write_text(
        'c.ClearSolutions.code_stub = {"python": "# PERSONAL STUB"}\n', encoding="utf-8"
    )
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(personal))
    release(load_course(course.root), assignments=[SYNTHETIC_ID])
    text = (course.root / "chapters" / SYNTHETIC_ID / f"{SYNTHETIC_ID}.ipynb").read_text()
    assert "PERSONAL STUB" not in text and "# YOUR CODE HERE" in text


def test_normalize_notebook_is_idempotent_and_keeps_nbgrader_metadata() -> None:
    nb = synthetic_notebook()
    nb.cells[3].metadata["nbgrader"]["checksum"] = "abc"
    nb.cells[3].metadata["scrolled"] = True
    nb.cells[4].outputs = [nbformat.v4.new_output("stream", text="hi\n")]
    nb.cells[4].execution_count = 7
    del nb.cells[5]["id"]
    nb.cells[6]["id"] = nb.cells[7]["id"]  # duplicate ids get replaced deterministically
    before = json.dumps(nb, sort_keys=True)

    once = normalize_notebook(nb)
    assert json.dumps(nb, sort_keys=True) == before, "the input must not be modified"
    assert notebook_bytes(normalize_notebook(once)) == notebook_bytes(once)
    assert once.cells[3].metadata == {
        "nbgrader": {**nb.cells[3].metadata["nbgrader"], "checksum": "abc"}
    }
    assert once.cells[4].outputs == [] and once.cells[4].execution_count is None
    assert once.cells[5]["id"] == "cell-005"
    ids = [c["id"] for c in once.cells]
    assert len(set(ids)) == len(ids)
    assert "version" not in once.metadata["language_info"]


def test_compare_trees_reports_stale_missing_extra(tmp_path: Path) -> None:
    expected, actual = tmp_path / "expected", tmp_path / "actual"
    for root in (expected, actual):
        (root / "a").mkdir(parents=True)
        (root / "a" / "same.txt").write_text("same")
    (expected / "a" / "nb.ipynb").write_text('{\n "x": 1\n}\n')
    (actual / "a" / "nb.ipynb").write_text('{\n "x": 2\n}\n')
    (expected / "b").mkdir()
    (expected / "b" / "new.ipynb").write_text("{}")
    (actual / "a" / "old.txt").write_text("old")
    (actual / "a" / "__pycache__").mkdir()
    (actual / "a" / "__pycache__" / "m.pyc").write_bytes(b"\0")

    diff = compare_trees(expected, actual)
    assert (diff.stale, diff.missing, diff.extra) == (
        ["a/nb.ipynb"],
        ["b/new.ipynb"],
        ["a/old.txt"],
    )
    assert any(line.startswith('- "x": 2') for line in diff.details["a/nb.ipynb"])
    assert compare_trees(expected, actual, only=["b"]).missing == ["b/new.ipynb"]
    assert compare_trees(expected, expected).clean


def test_release_refuses_unregistered_and_unknown_assignments(tmp_path: Path) -> None:
    course = CourseDir.create(
        tmp_path / "course", notebooks={SYNTHETIC_ID: synthetic_notebook()}, register=[]
    )
    with pytest.raises(ReleaseError, match=f"not registered.*{SYNTHETIC_ID}"):
        release(load_course(course.root), check=True)
    course.append_config(f"c.CourseLib.assignments = [{SYNTHETIC_ID!r}, 'later']")
    with pytest.raises(ReleaseError, match="unknown assignment 'nope'"):
        release(load_course(course.root), assignments=["nope"], check=True)
    with pytest.raises(ReleaseError, match="'later' has no notebook"):
        release(load_course(course.root), assignments=["later"], check=True)
    with pytest.raises(ReleaseError, match=r"elsewhere or any parent directory"):
        load_course(tmp_path / "elsewhere")  # not there
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(ReleaseError, match=r"no graders/nbgrader_config\.py found"):
        load_course(tmp_path / "elsewhere")
    assert load_course(course.root / "solutions" / SYNTHETIC_ID).root == course.root.resolve()


@pytest.mark.grading
def test_release_reports_nbgrader_errors(tmp_path: Path) -> None:
    nb = synthetic_notebook()
    nb.cells[4].metadata["nbgrader"]["grade_id"] = "synthetic-double"  # duplicate grade_id
    course = CourseDir.create(tmp_path / "course", notebooks={SYNTHETIC_ID: nb})
    proc = course_lib_cli("release", "--check", cwd=course.root)
    assert proc.returncode == 2
    assert "nbgrader generate_assignment failed" in proc.stderr
    assert "synthetic-double" in proc.stderr
    assert not (course.root / "chapters").exists()


@pytest.mark.grading
def test_update_gradebook_records_the_assignments(course: CourseDir) -> None:
    from nbgrader.api import Gradebook

    proc = course_lib_cli("release", "--update-gradebook", cwd=course.root)
    assert proc.returncode == 0, proc.stderr
    assert "in the gradebook sqlite:///" in proc.stdout
    db_url = "sqlite:///" + str(course.graders / "gradebook.db")
    with Gradebook(db_url) as gb:
        assignment = gb.find_assignment(SYNTHETIC_ID)
        (notebook,) = assignment.notebooks
        assert sorted(c.name for c in notebook.grade_cells) == [
            "synthetic-column_sums-tests",
            "synthetic-double-tests",
        ]
        assert notebook.max_score == 3
        assert sorted(a.name for a in gb.assignments) == [SYNTHETIC_ID, OTHER_ID]
