"""course_lib.mine: the student's own code carried forward, with real chapter notebooks.

Each test makes a workspace like ``course-lib lab`` does (``<ws>/<chapter>/<chapter>.ipynb``)
from the released chapter 2 notebook, with the student's ``Relu`` answer cell written in one
way or another, and imports ``Relu`` through ``course_lib.mine``.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import course_lib.mine as mine
import course_lib.reference
from course_lib.layers import Relu as ReferenceRelu

ROOT = Path(__file__).resolve().parents[1]
CH02 = "ch02_backpropagation"

RIGHT_RELU = '''\
class Relu:
    """a student's ReLU, written their own way"""

    def __init__(self):
        self.negative = None

    def forward(self, x):
        self.negative = x <= 0
        return np.where(self.negative, 0.0, x)

    def backward(self, dout):
        return np.where(self.negative, 0.0, dout)
'''
# backward passes every gradient through, also where the input was negative
WRONG_RELU = RIGHT_RELU.replace("return np.where(self.negative, 0.0, dout)", "return dout")
RAISING_RELU = "import numpy as np\nnp.relu_of_my_dreams(0)\n" + RIGHT_RELU
MISSING_RELU = "# I deleted my Relu by mistake\n"


def _is_relu_answer(cell: dict) -> bool:
    source = "".join(cell["source"])
    return cell["metadata"].get("nbgrader", {}).get("solution", False) and "class Relu" in source


def make_workspace(root: Path, relu_source: str | None, source_dir: str = "chapters") -> Path:
    """A workspace holding chapter 2 from ``source_dir``, its Relu answer cell replaced."""
    nb_path = root / CH02 / f"{CH02}.ipynb"
    nb_path.parent.mkdir(parents=True)
    shutil.copy(ROOT / source_dir / CH02 / f"{CH02}.ipynb", nb_path)
    if relu_source is not None:
        nb = json.loads(nb_path.read_text())
        cells = [c for c in nb["cells"] if _is_relu_answer(c)]
        assert len(cells) == 1, "the chapter 2 notebook should have one answer cell with Relu"
        cells[0]["source"] = relu_source
        nb_path.write_text(json.dumps(nb))
    return root


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    for var in ("NBGRADER_EXECUTION", mine.MODE_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COURSE_QUICK", "1")
    ws = tmp_path / "workspace"
    monkeypatch.setenv(mine.WORKSPACE_ENV, str(ws))
    mine.clear_cache()
    yield ws
    mine.clear_cache()


def notice(capsys) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("course_lib.mine")]
    assert len(lines) == 1, f"expected one notice line, got {lines}"
    return lines[0]


def test_right_layer_is_the_students_own(workspace, capsys):
    make_workspace(workspace, RIGHT_RELU)
    from course_lib.mine import Relu

    assert Relu is not ReferenceRelu
    assert Relu.__doc__ == "a student's ReLU, written their own way"
    code_file = inspect.getsourcefile(Relu.forward) or Relu.forward.__code__.co_filename
    assert str(workspace / CH02 / f"{CH02}.ipynb") in code_file
    assert mine.origin("Relu").student
    layer = Relu()
    np.testing.assert_array_equal(layer.forward(np.array([-1.0, 2.0])), [0.0, 2.0])
    assert "course_lib.mine" not in capsys.readouterr().err  # no notice for the student's own


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (MISSING_RELU, "has no answer cell defining Relu"),
        (
            RAISING_RELU,
            "raises AttributeError: module 'numpy' has no attribute 'relu_of_my_dreams'",
        ),
        (WRONG_RELU, f"fails the check {CH02}-relu-backward-tests: "),
        (None, "is not written yet"),  # the released notebook, untouched
    ],
    ids=["missing", "raising", "wrong", "blank"],
)
def test_falls_back_to_the_reference_with_a_notice(workspace, capsys, source, expected):
    make_workspace(workspace, source)
    from course_lib.mine import Relu

    assert Relu is ReferenceRelu
    line = notice(capsys)
    assert line.startswith("course_lib.mine: Relu is the course's reference: ")
    assert expected in line
    assert not mine.origin("Relu").student


def test_wrong_backward_notice_says_what_is_wrong(workspace, capsys):
    make_workspace(workspace, WRONG_RELU)
    mine.load("Relu")
    line = notice(capsys)
    assert "backward" in line and "yours" in line, line  # the check's own message


def test_missing_notebook(workspace, capsys):
    workspace.mkdir()
    assert mine.load("Relu") is ReferenceRelu
    assert f"no notebook {workspace / CH02 / CH02}.ipynb" in notice(capsys)


def test_under_the_grader_always_the_reference(workspace, capsys, monkeypatch):
    make_workspace(workspace, RIGHT_RELU)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert mine.load("Relu") is ReferenceRelu
    assert "NBGRADER_EXECUTION is set" in notice(capsys)
    monkeypatch.delenv("NBGRADER_EXECUTION")
    monkeypatch.setenv(mine.MODE_ENV, "reference")
    assert mine.load("Relu") is ReferenceRelu
    assert f"{mine.MODE_ENV}=reference" in notice(capsys)
    monkeypatch.delenv(mine.MODE_ENV)
    assert mine.load("Relu") is not ReferenceRelu


def test_cached_per_process_and_reloaded_when_the_notebook_changes(workspace, capsys):
    make_workspace(workspace, RIGHT_RELU)
    first = mine.load("Relu")
    assert mine.load("Relu") is first  # loaded once
    nb_path = workspace / CH02 / f"{CH02}.ipynb"
    nb = json.loads(nb_path.read_text())
    for cell in nb["cells"]:
        if _is_relu_answer(cell):
            cell["source"] = WRONG_RELU
    nb_path.write_text(json.dumps(nb))
    stat = nb_path.stat()
    os.utime(nb_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert mine.load("Relu") is ReferenceRelu
    assert "fails the check" in notice(capsys)


def test_hidden_tests_are_not_run(workspace):
    """A solution notebook (hidden tests included) as the workspace: only visible checks count."""
    make_workspace(workspace, None, source_dir="solutions")
    nb_path = workspace / CH02 / f"{CH02}.ipynb"
    nb = json.loads(nb_path.read_text())
    for cell in nb["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == f"{CH02}-relu-backward-tests":
            cell["source"] = "".join(cell["source"]) + (
                "\n### BEGIN HIDDEN TESTS\nraise AssertionError('a hidden test')\n"
                "### END HIDDEN TESTS\n"
            )
    nb_path.write_text(json.dumps(nb))
    assert mine.origin("Relu") is None
    assert mine.load("Relu") is not ReferenceRelu


def test_found_from_the_running_notebooks_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(mine.WORKSPACE_ENV, raising=False)
    ws = make_workspace(tmp_path / "my_course_work", RIGHT_RELU)
    (ws / "ch04_convolutional_networks").mkdir()
    monkeypatch.chdir(ws / "ch04_convolutional_networks")
    assert mine.workspace() == ws.resolve()


def test_unknown_name():
    with pytest.raises(ImportError):
        from course_lib.mine import NotAnExercise  # noqa: F401


def test_every_exercise_of_the_solution_notebooks_is_taken_from_them(tmp_path, monkeypatch):
    """The solutions as a workspace: each exercise their answer cells define passes its checks.

    This is the contract for chapter authors: a chapter's visible test cells run with the setup
    cell, the answer cells and the cells whose variables they use.
    """
    monkeypatch.setenv(mine.WORKSPACE_ENV, str(ROOT / "solutions"))
    monkeypatch.setenv("COURSE_QUICK", "1")
    for var in ("NBGRADER_EXECUTION", mine.MODE_ENV):
        monkeypatch.delenv(var, raising=False)
    mine.clear_cache()
    failed, taken = [], 0
    for name in course_lib.reference.CHAPTER_OF:
        mine.load(name)
        why = mine.origin(name)
        if why.student:
            taken += 1
        elif "has no answer cell defining" not in why.reason:
            failed.append(why.notice())
    mine.clear_cache()
    assert not failed, "\n".join(failed)
    assert taken >= 30, f"only {taken} exercises taken from the solution notebooks"
