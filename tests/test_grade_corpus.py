"""A corpus of broken and adversarial submissions of a real chapter, graded in ONE batch.

Built from chapter 2 (backpropagation: 11 test cells, 14 points): the instructor's solution
(full marks) and the generated student version, mutated the way students (and cheaters) do.
Every entry states its expected score; the batch runs with 2 jobs and must neither crash nor
lose a submission, and must leave the submitted files untouched.

Most entries drop the chapter's ungraded MNIST-training cells (a student may delete unlocked
cells) so that the batch stays within a few minutes on two cores; ``good`` keeps them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from course_lib.grading.batch import GradeOptions, grade_batch
from course_lib.grading.course import load_course
from course_lib.release import generate_assignments

pytestmark = [pytest.mark.grading, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[1]
A = "ch02_backpropagation"
SOURCE = REPO / "solutions" / A / f"{A}.ipynb"
FULL = 14.0
POINTS = {
    "mul": 1,
    "add": 1,
    "relu-forward": 1,
    "relu-backward": 1,
    "sigmoid-forward": 1,
    "sigmoid-backward": 1,
    "affine-forward": 1,
    "affine-backward": 2,
    "softmax_with_loss-forward": 1,
    "softmax_with_loss-backward": 2,
    "two_layer_net": 2,
}


def all_points() -> float:
    """Points of every autograded test cell of the chapter (``good`` keeps every exercise)."""
    if not SOURCE.exists():
        return FULL
    nb = nbformat.read(str(SOURCE), as_version=4)
    return sum(
        float(c.metadata["nbgrader"].get("points", 0))
        for c in nb.cells
        if c.cell_type == "code"
        and c.get("metadata", {}).get("nbgrader", {}).get("grade")
        and not c.metadata["nbgrader"].get("solution")
    )


def lost(*names: str) -> float:
    return FULL - sum(POINTS[n] for n in names)


def gid(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def find(nb, grade_id: str):
    for cell in nb.cells:
        if gid(cell) == grade_id:
            return cell
    raise KeyError(grade_id)


def trim(nb):
    """Drop everything after the last exercise (the ungraded MNIST training part)."""
    nb = copy.deepcopy(nb)
    last = max(i for i, c in enumerate(nb.cells) if gid(c) == f"{A}-two_layer_net-tests")
    nb.cells = nb.cells[: last + 2]
    return nb


def prepend(nb, grade_id: str, code: str):
    nb = copy.deepcopy(nb)
    cell = find(nb, grade_id)
    cell.source = code + "\n" + cell.source
    return nb


def append(nb, grade_id: str, code: str):
    nb = copy.deepcopy(nb)
    cell = find(nb, grade_id)
    cell.source = cell.source + "\n" + code
    return nb


def replace(nb, grade_id: str, old: str, new: str):
    nb = copy.deepcopy(nb)
    cell = find(nb, grade_id)
    assert old in cell.source, (grade_id, old)
    cell.source = cell.source.replace(old, new)
    return nb


def insert_before(nb, grade_id: str, code: str):
    nb = copy.deepcopy(nb)
    index = next(i for i, c in enumerate(nb.cells) if gid(c) == grade_id)
    nb.cells.insert(index, nbformat.v4.new_code_cell(code))
    return nb


@dataclass
class Entry:
    name: str
    expected: float
    files: dict[str, bytes]  # file name -> content (in <student>/<assignment>/ unless loose)
    problem: str | None = None  # a word the student's problems/findings must mention
    loose: bool = False  # files directly in the student folder


def nb_bytes(nb) -> bytes:
    return nbformat.writes(nb).encode()


def filled(student, solution):
    """The student version with every answer cell answered as in the instructor's solution."""
    nb = copy.deepcopy(student)
    answers = {gid(c): c.source for c in solution.cells if gid(c)}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and gid(cell) in answers:
            cell.source = "\n".join(
                line
                for line in answers[gid(cell)].splitlines()
                if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")
            )
    return nb


def build_corpus(solution, student) -> list[Entry]:
    full = filled(student, solution)
    sol = trim(full)
    name = f"{A}.ipynb"
    wrong_add = replace(sol, f"{A}-mul_add", "return x + y", "return x * y")
    E = Entry
    v3 = nbformat.v4.convert.downgrade(copy.deepcopy(sol))  # a real nbformat 3 notebook
    entries = [
        E("good", all_points(), {name: nb_bytes(full)}),
        E("blank", 0.0, {name: nb_bytes(student)}),
        E(
            "infinite_loop",
            lost("sigmoid-forward", "sigmoid-backward"),
            {name: nb_bytes(prepend(sol, f"{A}-sigmoid", "while True:\n    pass\n"))},
        ),
        E(
            # a test cell times out inside the student's code (the verdict interrupts the
            # kernel); the very next test must reach the kernel again over a new connection
            "test_cell_timeout",
            lost("mul"),
            {
                name: nb_bytes(
                    replace(
                        sol,
                        f"{A}-mul_add",
                        "return dout * self.y, dout * self.x",
                        "while True:\n            pass",
                    )
                )
            },
        ),
        E(
            "os_exit",
            lost("affine-forward", "affine-backward", "two_layer_net"),
            {name: nb_bytes(prepend(sol, f"{A}-affine", "import os\nos._exit(3)\n"))},
        ),
        E(
            "segfault",
            lost("softmax_with_loss-forward", "softmax_with_loss-backward", "two_layer_net"),
            {
                name: nb_bytes(
                    prepend(
                        sol,
                        f"{A}-softmax_with_loss",
                        "import faulthandler\nfaulthandler._sigsegv()\n",
                    )
                )
            },
        ),
        E(
            "memory_error",
            lost("relu-forward", "relu-backward", "two_layer_net"),
            {name: nb_bytes(prepend(sol, f"{A}-relu", "big = np.ones((60000, 60000))\n"))},
        ),
        E(
            "output_flood",
            FULL,
            {
                name: nb_bytes(
                    insert_before(sol, f"{A}-relu", "while True:\n    print('x' * 10000)")
                )
            },
        ),
        E(
            "sys_exit",
            FULL,
            {name: nb_bytes(append(sol, f"{A}-mul_add", "import sys\nsys.exit(1)"))},
        ),
        E(
            "ipython_exit",
            FULL,
            {name: nb_bytes(insert_before(sol, f"{A}-relu", "print('bye')\nexit()"))},
        ),
        E(
            "deleted_test_cell",
            FULL,
            {
                name: nb_bytes(
                    nbformat.from_dict(
                        {
                            **sol,
                            "cells": [c for c in sol.cells if gid(c) != f"{A}-relu-forward-tests"],
                        }
                    )
                )
            },
            problem="deleted",
        ),
        E(
            "edited_test_cell",
            lost("add"),
            {
                name: nb_bytes(
                    replace(
                        wrong_add,
                        f"{A}-add-tests",
                        "check_own_implementation(AddLayer",
                        "pass  # (AddLayer",
                    )
                )
            },
            problem="edited",
        ),
        E("invalid_json", 0.0, {name: b'{"cells": [ this is not json'}, problem="not a valid"),
        E("empty_file", 0.0, {name: b""}, problem="empty"),
        E("wrong_file_name", FULL, {"ch02 (1).ipynb": nb_bytes(sol)}, problem="graded as"),
        E("loose_files", FULL, {name: nb_bytes(sol)}, loose=True, problem="folder"),
        E(
            # patching numpy in the kernel is reported, never punished: the wrong Relu costs
            # its own tests only (the verdict's numpy is untouched)
            "patch_numpy",
            lost("relu-forward", "relu-backward"),
            {
                name: nb_bytes(
                    prepend(
                        replace(sol, f"{A}-relu", "return np.where(self.mask, 0, x)", "return x"),
                        f"{A}-relu",
                        "np.allclose = lambda *a, **k: True\n"
                        "np.testing.assert_allclose = lambda *a, **k: None\n",
                    )
                )
            },
            problem="numpy",
        ),
        E(
            "patch_checks",
            lost("softmax_with_loss-forward", "softmax_with_loss-backward", "two_layer_net"),
            {
                name: nb_bytes(
                    prepend(
                        sol,
                        f"{A}-softmax_with_loss",
                        "import course_lib.checks as C\nC.check_close = lambda *a, **k: None\n",
                    )
                )
            },
            problem="course_lib.checks",
        ),
        E(
            # patching builtins breaks only the student's own kernel: that answer cell hangs
            # (its tests score 0), the kernel is restarted and the rest is graded normally
            "patch_builtins",
            lost("sigmoid-forward", "sigmoid-backward"),
            {
                name: nb_bytes(
                    prepend(
                        sol,
                        f"{A}-sigmoid",
                        "import builtins\nbuiltins.isinstance = lambda *a: True\n",
                    )
                )
            },
            problem="builtins",
        ),
        E(
            # a library patched inside the kernel changes nothing the verdict computes
            "patch_gradcheck",
            FULL,
            {
                name: nb_bytes(
                    prepend(
                        sol,
                        f"{A}-two_layer_net",
                        "course_lib.gradcheck.numerical_gradient = lambda f, x, h=1e-4: 0 * x\n",
                    )
                )
            },
            problem="gradcheck",
        ),
        E(
            "shadow_helpers_in_kernel",
            lost("add"),
            {
                name: nb_bytes(
                    insert_before(
                        wrong_add,
                        f"{A}-add-tests",
                        "check_close = lambda *a, **k: None\n"
                        "check_own_implementation = lambda *a, **k: None\n",
                    )
                )
            },
        ),
        E(
            "subclass_reference",
            lost("relu-forward", "relu-backward"),
            {
                name: nb_bytes(
                    replace(
                        sol,
                        f"{A}-relu",
                        "class Relu:",
                        "class Relu(course_lib.layers.Relu):\n    pass\n\n\nclass _Unused:",
                    )
                )
            },
            problem="reference",
        ),
        E(
            "alias_reference",
            lost("affine-forward", "affine-backward"),
            {name: nb_bytes(append(sol, f"{A}-affine", "Affine = course_lib.layers.Affine"))},
        ),
        E(
            "import_reference",
            lost("sigmoid-forward", "sigmoid-backward"),
            {
                name: nb_bytes(
                    append(
                        sol,
                        f"{A}-sigmoid",
                        "import course_lib.layers as L\n\n\nclass Sigmoid(L.Sigmoid):\n    pass",
                    )
                )
            },
            problem="reference",
        ),
        E(
            "wrapper_reference",
            lost("sigmoid-forward", "sigmoid-backward"),
            {
                name: nb_bytes(
                    append(
                        sol,
                        f"{A}-sigmoid",
                        "import course_lib.functions\n\n\ndef _helper(x):\n"
                        "    return course_lib.functions.sigmoid(x)\n\n\n"
                        "class Sigmoid(Sigmoid):\n    def forward(self, x):\n"
                        "        self.out = _helper(x)\n        return self.out",
                    )
                )
            },
            problem="reference",
        ),
        E(
            # an everyday habit: reported with its cell and line, full marks
            "exec_string",
            FULL,
            {name: nb_bytes(append(sol, f"{A}-mul_add", "exec('x = 1')"))},
            problem="exec",
        ),
        E(
            "gc_walk",
            FULL,
            {
                name: nb_bytes(
                    prepend(sol, f"{A}-two_layer_net", "import gc\n_objs = gc.get_objects()\n")
                )
            },
            problem="gc",
        ),
        E(
            "stolen_fallback_before_test",
            lost("relu-forward", "relu-backward"),
            {
                name: nb_bytes(
                    insert_before(sol, f"{A}-relu-forward-tests", "Relu = course_lib.layers.Relu")
                )
            },
        ),
    ]
    assert v3["nbformat"] == 3
    entries.append(E("old_nbformat", FULL, {name: json.dumps(v3).encode()}, problem="old"))
    return entries


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if not SOURCE.exists():
        pytest.skip(f"{SOURCE} not written yet")
    tmp = tmp_path_factory.mktemp("corpus")
    config = load_course(REPO)
    generate_assignments(config, [A], tmp / "release")
    student = nbformat.read(str(tmp / "release" / A / f"{A}.ipynb"), as_version=4)
    solution = nbformat.read(str(SOURCE), as_version=4)
    entries = build_corpus(solution, student)
    subs = tmp / "submitted"
    for entry in entries:
        folder = subs / entry.name if entry.loose else subs / entry.name / A
        folder.mkdir(parents=True)
        for fname, content in entry.files.items():
            (folder / fname).write_bytes(content)
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in subs.rglob("*") if p.is_file()}
    result = grade_batch(
        subs,
        tmp / "out",
        course_root=REPO,
        assignments=[A],
        options=GradeOptions(jobs=2, cell_timeout=30, notebook_timeout=600, feedback=True),
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in subs.rglob("*") if p.is_file()}
    return {
        "entries": entries,
        "result": result,
        "before": before,
        "after": after,
        "out": tmp / "out",
    }


def test_corpus_is_large_enough(corpus):
    assert len(corpus["entries"]) >= 20


def test_no_submission_lost(corpus):
    students = corpus["result"].students
    assert sorted(students) == sorted(e.name for e in corpus["entries"])
    for entry in corpus["entries"]:
        assert A in students[entry.name], entry.name


def test_submissions_are_not_modified(corpus):
    assert corpus["before"] == corpus["after"]


def test_every_expected_score(corpus):
    students = corpus["result"].students
    wrong = {}
    for entry in corpus["entries"]:
        got = students[entry.name][A]
        if abs(float(got["score"]) - entry.expected) > 1e-9:
            wrong[entry.name] = (got["score"], entry.expected, got["problems"], got["findings"])
    assert not wrong, json.dumps(wrong, indent=1, default=str)


def test_every_problem_is_explained(corpus):
    students = corpus["result"].students
    for entry in corpus["entries"]:
        if entry.problem is None:
            continue
        got = students[entry.name][A]
        text = " ".join(got["problems"]) + " " + " ".join(f["where"] for f in got["findings"])
        assert entry.problem.lower() in text.lower(), (entry.name, text)


def test_gradebook_matches_summary(corpus):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{corpus['out'] / 'gradebook.db'}", "") as gb:
        for entry in corpus["entries"]:
            submission = gb.find_submission(A, entry.name)
            assert float(submission.score) == pytest.approx(entry.expected), entry.name
    csv = (corpus["out"] / "grades.csv").read_text()
    for entry in corpus["entries"]:
        assert entry.name in csv


def test_feedback_names_the_failed_check(corpus):
    html = (corpus["out"] / "feedback" / "patch_numpy" / A / f"{A}.html").read_text()
    assert "Note from the grader" in html and "no points lost" in html
    assert "numpy.allclose" in html
    html = (corpus["out"] / "feedback" / "patch_checks" / A / f"{A}.html").read_text()
    assert "IntegrityCheckFailed" in html and "course_lib.checks" in html
    html = (corpus["out"] / "feedback" / "shadow_helpers_in_kernel" / A / f"{A}.html").read_text()
    assert "AssertionError" in html
