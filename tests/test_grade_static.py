"""The static integrity checks on small notebooks (no kernel)."""

from __future__ import annotations

import nbformat

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


def test_subclassing_the_reference_is_flagged_for_that_exercise_only():
    found = scan_submission(
        source(),
        submit(
            "class Relu(course_lib.layers.Relu):\n    pass",
            "class Net:\n    def f(self):\n        return Relu()",
        ),
    )
    assert kinds(found) == [("reference", ("relu-tests",))]


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


def test_monkeypatching_numpy_zeroes_every_later_test():
    found = scan_submission(
        source(), submit("np.allclose = lambda *a, **k: True\nclass Relu:\n    pass")
    )
    assert kinds(found) == [("tamper", ("relu-tests", "net-tests"))]
    assert "numpy.allclose" in found[0].message or "np.allclose" in found[0].message


def test_wrapper_around_a_reference_function_is_flagged():
    answer = (
        "import course_lib.functions\n\ndef helper(x):\n    return course_lib.functions.relu(x)\n\n"
        "class Relu:\n    def forward(self, x):\n        return helper(x)"
    )
    found = scan_submission(source(), submit(answer))
    assert ("reference", ("relu-tests",)) in kinds(found)


def test_exec_builtins_gc_are_tampering():
    for code in (
        "exec('x = 1')",
        "import builtins",
        "import gc",
        "import ctypes",
        "__import__('os')",
        "import sys\nsys.modules['numpy'] = None",
        "setattr(np, 'sum', len)",
    ):
        found = scan_submission(source(), submit(code + "\nclass Relu:\n    pass"))
        assert found and all(f.kind == "tamper" for f in found), code


def test_setattr_on_self_and_magics_are_fine():
    answer = "%matplotlib inline\nclass Relu:\n    def __init__(self):\n        setattr(self, 'mask', None)"
    assert scan_submission(source(), submit(answer)) == []
