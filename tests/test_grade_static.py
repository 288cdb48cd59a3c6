"""The static pass on small notebooks (no kernel): habits reported, grader reaches costly."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from course_lib.grading.notebook import is_answer, is_test
from course_lib.grading.static import scan_submission

V4 = nbformat.v4


def meta(gid, *, solution, grade, points=0):
    return {
        "nbgrader": {
            "grade_id": gid,
            "solution": solution,
            "grade": grade,
            "locked": not solution,
            "points": points,
            "schema_version": 3,
        }
    }


def source(answer="class Relu:\n    pass"):
    return V4.new_notebook(
        cells=[
            V4.new_code_cell("import numpy as np\nimport course_lib.layers"),
            V4.new_code_cell(answer, metadata=meta("relu", solution=True, grade=False)),
            V4.new_code_cell(
                "check(Relu)", metadata=meta("relu-tests", solution=False, grade=True, points=1)
            ),
            V4.new_code_cell("# Relu = course_lib.layers.Relu  # stuck?"),
            V4.new_code_cell(
                "class Net:\n    pass", metadata=meta("net", solution=True, grade=False)
            ),
            V4.new_code_cell(
                "check(Net)", metadata=meta("net-tests", solution=False, grade=True, points=1)
            ),
        ]
    )


def submit(answer_relu, answer_net="class Net:\n    pass", extra=None):
    nb = source()
    nb.cells[1].source = answer_relu
    nb.cells[4].source = answer_net
    if extra:
        nb.cells[3].source = extra
    return nb


def kinds(findings):
    return sorted((f.kind, tuple(f.tests)) for f in findings)


def test_own_code_is_clean():
    assert (
        scan_submission(
            source(),
            submit("class Relu:\n    def forward(self, x):\n        return np.maximum(0, x)"),
        )
        == []
    )


def test_subclassing_the_reference_is_an_early_warning_for_that_exercise():
    found = scan_submission(
        source(),
        submit(
            "class Relu(course_lib.layers.Relu):\n    pass",
            "class Net:\n    def f(self):\n        return Relu()",
        ),
    )
    assert kinds(found) == [("reference", ())]  # the run-time watch decides, not this pass
    assert found[0].exercise == "Relu" and found[0].cell == 1 and found[0].line == 1
    assert not found[0].costs_points and "early warning" in found[0].summary_line()


def test_uncommented_fallback_after_the_test_is_allowed():
    found = scan_submission(
        source(),
        submit(
            "class Relu:\n    pass",
            "class Net:\n    r = Relu()",
            extra="Relu = course_lib.layers.Relu  # stuck?",
        ),
    )
    assert found == []


def test_every_chapters_fallback_lines_used_where_they_stand_are_not_warned():
    """Each chapter's stuck-student lines (``# Relu = course_lib.reference.Relu``) uncommented in
    place: they come after their exercise's tests, so no reference warning."""
    uncommented = 0
    for path in sorted(Path(__file__).parents[1].glob("solutions/*/*.ipynb")):
        solution = nbformat.read(str(path), as_version=4)
        nb = nbformat.read(str(path), as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "code" or is_answer(cell) or is_test(cell):
                continue
            lines = cell.source.splitlines()
            for i, line in enumerate(lines):
                code = line.strip().lstrip("#").strip()
                if line.strip().startswith("#") and re.fullmatch(
                    r"[\w, .]+ = course_lib\.\S+", code
                ):
                    lines[i], uncommented = code, uncommented + 1
            cell.source = "\n".join(lines)
        found = [f for f in scan_submission(solution, nb) if f.kind == "reference"]
        assert found == [], (path.name, found)
    assert uncommented >= 30


def test_the_fallback_line_used_before_the_exercises_test_is_warned():
    nb = submit("class Relu:\n    pass")
    nb.cells.insert(2, V4.new_code_cell("Relu = course_lib.layers.Relu  # stuck?"))
    found = scan_submission(source(), nb)
    assert kinds(found) == [("reference", ())]
    assert found[0].exercise == "Relu" and found[0].cell == 2


def test_monkeypatching_numpy_in_the_kernel_is_reported_not_punished():
    found = scan_submission(
        source(), submit("np.allclose = lambda *a, **k: True\nclass Relu:\n    pass")
    )
    assert kinds(found) == [("habit", ())]
    assert "np.allclose" in found[0].message and found[0].line == 1


def test_wrapper_around_a_reference_function_is_warned():
    answer = (
        "import course_lib.functions\n\ndef helper(x):\n    return course_lib.functions.relu(x)\n\n"
        "class Relu:\n    def forward(self, x):\n        return helper(x)"
    )
    found = scan_submission(source(), submit(answer))
    assert ("reference", ()) in kinds(found)


HABITS = (
    "exec('x = 1')",
    "import builtins",
    "import gc\ngc.collect()",
    "import ctypes",
    "__import__('os')",
    "import sys\nsys.stdout.write('hi')",
    "from types import SimpleNamespace",
    "import inspect",
    "import threading",
    "!echo hello",
    "%whos",
    "%%time\nx = 1",
    "setattr(np, 'sum', len)",
    "import sys\nsys.modules['numpy'] = None",
)


def test_everyday_habits_are_reported_with_their_line_and_cost_nothing():
    for code in HABITS:
        found = scan_submission(source(), submit("x = 0\n" + code + "\nclass Relu:\n    pass"))
        assert found, code
        assert all(f.kind == "habit" and not f.costs_points for f in found), (code, found)
        assert all(f.cell == 1 and f.line in (2, 3) for f in found), (code, found)


def test_setattr_on_own_objects_copy_and_magics_allowed_are_silent():
    answer = (
        "%matplotlib inline\nimport copy\nclass Relu:\n    def __init__(self):\n"
        "        setattr(self, 'mask', None)\n        self.twin = copy.copy(self)"
    )
    assert scan_submission(source(), submit(answer)) == []


def test_reaching_for_the_grader_is_flagged_and_zeroes_the_tests_after_it():
    for code in (
        "import course_lib.grading.verdict",
        "from course_lib.grading import worker",
        "from course_lib import release",
        "import course_lib.checks as C\nC.check_close = lambda *a, **k: None",
        "import importlib\nimportlib.import_module('course_lib.grading.agent')",
        "open('../gradebook.db', 'rb')",
    ):
        found = [f for f in scan_submission(source(), submit(code + "\nclass Relu:\n    pass"))]
        grader = [f for f in found if f.kind == "grader"]
        assert grader, (code, found)
        assert grader[0].tests == ("relu-tests", "net-tests"), (code, grader)
        assert "flagged for review" in grader[0].summary_line()


def test_the_word_gradebook_in_a_sentence_is_not_a_reach_for_the_grader():
    code = "print('my scores will be in the gradebook')\nclass Relu:\n    pass"
    assert [f for f in scan_submission(source(), submit(code)) if f.kind == "grader"] == []


def test_the_checks_the_notebooks_import_are_not_the_grader():
    for code in ("from course_lib.checks import check_close", "from course_lib import checks"):
        code += "\nclass Relu:\n    pass"
        assert [f for f in scan_submission(source(), submit(code)) if f.kind == "grader"] == []


def test_findings_reach_comments_feedback_and_grades():
    from types import SimpleNamespace

    from course_lib.grading.findings import (
        Finding,
        apply_findings,
        collect_findings,
        report_outputs,
    )

    nb = submit("class Relu:\n    pass")
    # what the kernel's watch reports (verdict side): the reference ran, called from cell 1 line 2
    hit = {"exercise": "Relu", "label": "course_lib.layers.Relu.forward", "line": 2}
    hit["source"] = nb.cells[1].source
    (output,) = report_outputs({"hits": [hit]}, [c.source for c in nb.cells])
    nb.cells[2].outputs = [
        nbformat.from_dict(output),
        # a student's own exception quoting the mark is not a finding (and breaks nothing)
        nbformat.from_dict(
            {
                "output_type": "error",
                "ename": "ReferenceUsed",
                "evalue": "mine",
                "traceback": ["[course-lib finding] not json"],
            }
        ),
    ]
    (found,) = collect_findings(source(), nb)  # the static pass finds nothing here
    assert found == Finding("reference", found.message, 1, 2, ("relu-tests",), "Relu", "runtime")
    assert "ran the reference implementation `course_lib.layers.Relu.forward`" in found.message
    habit = Finding("habit", "uses the IPython shell", 3, 1)
    # the gradebook's grades and comments, as nbgrader's Grade and Comment carry them
    grades = {g: SimpleNamespace(auto_score=1.0) for g in ("relu-tests", "net-tests")}
    comments = {g: SimpleNamespace(auto_comment=None) for g in ("relu", "net")}
    flagged = apply_findings([found, habit], nb, grades, comments)
    assert grades["relu-tests"].auto_score == 0.0
    assert grades["net-tests"].auto_score == 1.0
    assert not flagged  # the reference costs points, no review
    assert "course_lib.layers.Relu.forward" in comments["relu"].auto_comment
    assert "shell" in comments["relu"].auto_comment  # cell 3 belongs to the Relu region
    assert "IntegrityCheckFailed" not in str(nb.cells[2].outputs)  # it says ReferenceUsed
    notes = [o for o in nb.cells[3].outputs if o.get("name") == "stderr"]
    assert notes and "no points lost" in notes[0].text
    grader = Finding("grader", "imports `course_lib.grading.worker`", 3, 1, ("net-tests",))
    assert apply_findings([grader], nb, grades, comments)
    assert grades["net-tests"].auto_score == 0.0
    assert "IntegrityCheckFailed" in str(nb.cells[5].outputs)
    assert grader.to_dict("nb")["costs_points"] and grader.to_dict("nb")["cell"] == 3
