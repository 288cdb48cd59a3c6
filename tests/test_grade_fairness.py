"""The fairness policy through the real ``course-lib grade``: habits reported, the reference caught.

ONE batch of chapter-2 submissions (the instructor's solution with one change each):

- **honest habits** (shell commands, magics, ``sys.stdout``, standard-library imports, setattr on
  the student's own objects, a cell that raises, comparing with the reference in a scratch
  cell, a profiler outside the tests ...) keep full marks, and each is reported with its cell;
- **routes to the reference implementation** (import forms, a dotted name resolved from a
  string, walking the object graph, a bound method or closure kept from earlier, a helper
  class, copies made at run time) cost exactly the exercise that used it, with a message naming
  the reference object;
- **reaching for the grader** (its modules, the profile hook that watches the reference) flags
  the notebook for review.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from course_lib.grading.course import load_course
from course_lib.release import generate_assignments

pytestmark = [pytest.mark.grading, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[1]
A = "ch02_backpropagation"
SOURCE = REPO / "solutions" / A / f"{A}.ipynb"
#: ungraded cells that need MNIST or train a network: emptied (they earn nothing; faster)
HEAVY = ("load_mnist(", "x_train", "Trainer(", "history[")


def gid(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def index_of(nb, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if gid(c) == grade_id)


def trim(nb):
    """Empty the ungraded cells that load MNIST or train (they earn nothing; keeps it short)."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and not meta and any(h in cell.source for h in HEAVY):
            cell.source = "pass"
    return nb


def points(source) -> dict[str, float]:
    """Each answer cell (its grade_id without the chapter) -> points of the tests after it."""
    out: dict[str, float] = {}
    current = None
    for cell in source.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code":  # written answers are graded by hand, later
            continue
        if meta.get("solution"):
            current = meta["grade_id"].removeprefix(f"{A}-")
            out[current] = 0.0
        elif meta.get("grade") and current is not None:
            out[current] += float(meta.get("points", 0))
    return out


def filled(student, solution):
    """The student version answered as in the instructor's solution."""
    nb = copy.deepcopy(student)
    answers = {gid(c): c.source for c in solution.cells if gid(c)}
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution") and gid(cell) in answers:
            cell.source = "\n".join(
                line
                for line in answers[gid(cell)].splitlines()
                if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")
            )
    return nb


def with_cell_before(nb, grade_id: str, code: str):
    nb = copy.deepcopy(nb)
    nb.cells.insert(index_of(nb, grade_id), nbformat.v4.new_code_cell(code))
    return nb


def with_answer_appended(nb, exercise: str, code: str):
    nb = copy.deepcopy(nb)
    cell = nb.cells[index_of(nb, f"{A}-{exercise}")]
    cell.source = cell.source + "\n\n\n" + code
    return nb


@dataclass
class Case:
    name: str
    nb: nbformat.NotebookNode
    loses: tuple[str, ...] = ()  # answer cells (exercises) whose tests score 0
    report: tuple[str, ...] = ()  # words the findings must contain
    routes: tuple[str, ...] = ()  # the reference routes planted (one per exercise)
    flagged: bool = False  # a grader finding (flagged for review)
    expected: float | None = None  # when not full marks minus the exercises lost


def score_of(case: Case, pts: dict[str, float]) -> float:
    if case.expected is not None:
        return case.expected
    return sum(pts.values()) - sum(pts[e] for e in case.loses)


HABITS = {
    "shell": ("!echo hello from the shell", "shell"),
    "magic_whos": ("%whos", "IPython"),
    "magic_cell": ("%%time\nsquares = [i * i for i in range(1000)]", "IPython"),
    "magic_env": ("%env COURSE_NOTE=1\n%lsmagic", "IPython"),
    "stdout": ("import sys\nsys.stdout.write('progress: 10%\\n')", "sys.stdout"),
    "types": ("from types import SimpleNamespace\ncfg = SimpleNamespace(lr=0.1)", "types"),
    "inspect": ("import inspect\nprint(inspect.signature(Relu.forward))", "inspect"),
    "threading": (
        "import threading\nt = threading.Thread(target=lambda: None)\nt.start()\nt.join()",
        "threading",
    ),
    "copy": ("import copy\nr2 = copy.deepcopy(Relu())", None),
    "setattr_own": ("layer = Relu()\nsetattr(layer, 'name', 'mine')", "setattr"),
    "vars_own": ("layer = Relu()\nprint(vars(layer))", None),
    "raises": ("raise ValueError('just trying something')", None),
    "exec": ("exec('tmp = 2 * 21')", "exec"),
    "gc": ("import gc\ngc.collect()", "gc"),
    "patch_numpy_in_kernel": ("np.set_printoptions(precision=3)\nnp.allclose = np.allclose", "np"),
    "compare_with_reference": (
        "x = np.linspace(-1, 1, 7)\n"
        "print(np.allclose(course_lib.layers.Relu().forward(x), Relu().forward(x)))",
        None,
    ),
    "profiler_outside_tests": ("%prun -q Relu().forward(np.ones(10))", "IPython"),
    "importlib": ("import importlib\nmath = importlib.import_module('math')", "importlib"),
    "get_ipython": ("get_ipython().run_line_magic('who', '')", "IPython"),
    "recursion": ("import sys\nsys.setrecursionlimit(5000)", "sys.setrecursionlimit"),
}

ROUTES = {
    # import forms
    "import_from": (
        "relu",
        "from course_lib.layers import Relu  # noqa",
    ),
    "subclass": ("sigmoid", "class Sigmoid(course_lib.layers.Sigmoid):\n    pass"),
    # a dotted name resolved from a string
    "importlib_string": (
        "affine",
        "import importlib\n\nAffine = getattr(importlib.import_module('course_lib.' + 'layers'), "
        "'Aff' + 'ine')",
    ),
    "attrgetter": (
        "softmax_with_loss",
        "import operator\n\n"
        "SoftmaxWithLoss = operator.attrgetter('layers.SoftmaxWithLoss')(course_lib)",
    ),
    # walking the object graph
    "sys_modules": (
        "relu",
        "import sys\n\nRelu = [m for n, m in sys.modules.items() if n.endswith('.activations')][0]"
        ".Relu",
    ),
    "subclasses": (
        "affine",
        "Affine = next(c for c in course_lib.layers.base.Layer.__subclasses__() "
        "if c.__name__ == 'Affine')",
    ),
    "gc_objects": (
        "sigmoid",
        "import gc\n\nSigmoid = next(o for o in gc.get_objects() if isinstance(o, type) "
        "and o.__name__ == 'Sigmoid' and o.__module__.startswith('course_lib'))",
    ),
    # a bound method / closure captured earlier
    "bound_method": (
        "relu",
        "_ref = course_lib.layers.Relu()\n_fwd, _bwd = _ref.forward, _ref.backward\n\n\n"
        "class Relu:\n    def forward(self, x):\n        return _fwd(x)\n\n"
        "    def backward(self, dout):\n        return _bwd(dout)",
    ),
    "closure": (
        "sigmoid",
        "def _make():\n    impl = course_lib.layers.Sigmoid()\n\n"
        "    def forward(self, x):\n        return impl.forward(x)\n\n"
        "    def backward(self, dout):\n        return impl.backward(dout)\n\n"
        "    return forward, backward\n\n\n"
        "class Sigmoid:\n    forward, backward = _make()",
    ),
    # delegation through a helper class
    "helper_class": (
        "softmax_with_loss",
        "class _Engine:\n    def __init__(self):\n"
        "        self.impl = getattr(course_lib.layers, 'SoftmaxWithLoss')()\n\n\n"
        "class SoftmaxWithLoss:\n    def __init__(self):\n        self.engine = _Engine()\n\n"
        "    def forward(self, x, t):\n        return self.engine.impl.forward(x, t)\n\n"
        "    def backward(self, dout=1):\n        return self.engine.impl.backward(dout)",
    ),
    # a helper function of the library doing the exercise's work
    "library_function": (
        "sigmoid",
        "class Sigmoid:\n    def forward(self, x):\n"
        "        self.out = course_lib.functions.sigmoid(x)\n        return self.out\n\n"
        "    def backward(self, dout):\n        return dout * (1.0 - self.out) * self.out",
    ),
    # copies of the class made at run time
    "type_copy": (
        "relu",
        "_R = course_lib.layers.Relu\n"
        "_Base = type('_Base', (), {k: v for k, v in vars(_R.__mro__[1]).items() "
        "if not k.startswith('__')})\n"
        "Relu = type('Relu', (_Base,), {k: v for k, v in vars(_R).items() "
        "if k not in ('__dict__', '__weakref__', '__module__')})",
    ),
    "source_copy": (
        "affine",
        "import inspect\nimport sys\n\n_g = dict(vars(sys.modules['course_lib.layers.affine']))\n"
        "_g['__name__'] = '__main__'\n"
        "_g['Layer'] = type('Layer', (), {k: v for k, v in vars(_g['Layer']).items() "
        "if not k.startswith('__')})\n"
        "exec(inspect.getsource(_g['Affine']), _g)\nAffine = _g['Affine']",
    ),
    # the stuck-student line used before the exercise's tests
    "fallback_too_early": ("relu", "Relu = course_lib.reference.Relu"),
}


def build(solution, student) -> list[Case]:
    """The solution; habits 4 to a notebook; routes one per exercise in a notebook (so each
    route is attributed to its own exercise); two reaches for the grader."""
    base = trim(filled(student, solution))
    cases = [Case("solution", base)]
    habits = list(HABITS.items())
    for k in range(0, len(habits), 4):
        nb, words = base, []
        for name, (code, word) in habits[k : k + 4]:
            nb = with_cell_before(nb, f"{A}-relu-forward-tests", f"# habit: {name}\n{code}")
            words += [word] if word else []
        cases.append(Case(f"habits_{k // 4 + 1}", nb, report=tuple(words)))
    by_exercise: dict[str, list[tuple[str, str]]] = {}
    for name, (exercise, code) in ROUTES.items():
        by_exercise.setdefault(exercise, []).append((name, code))
    for k in range(max(len(v) for v in by_exercise.values())):
        nb, loses, names = base, [], []
        for exercise, routes in by_exercise.items():
            if k < len(routes):
                name, code = routes[k]
                nb = with_answer_appended(nb, exercise, code)
                loses.append(exercise)
                names.append(name)
        cases.append(Case(f"routes_{k + 1}", nb, tuple(loses), routes=tuple(names)))
    pts = points(solution)
    # the watch itself: removing the profile hook inside graded code is reaching for the grader
    unhook = (
        "class Relu(Relu):\n    def forward(self, x):\n"
        "        __import__('sys').setprofile(None)\n        return super().forward(x)"
    )
    cases.append(
        Case(
            "grader_unhook",
            with_answer_appended(base, "relu", unhook),
            flagged=True,
            expected=pts["mul_add"],  # the tests from the first relu test on score 0
        )
    )
    # a grader module imported under a name no static reading sees: the audit hook reports it
    sneaky = "import importlib\n_m = importlib.import_module('course_lib.gra' + 'ding.ta' + 'sks')"
    last = list(pts)[-1]
    cases.append(
        Case(
            "grader_import",
            with_cell_before(base, f"{A}-{last}-tests", sneaky),
            flagged=True,
            expected=sum(pts.values()) - pts[last],
        )
    )
    return cases


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    if not SOURCE.exists():
        pytest.skip(f"{SOURCE} not written yet")
    tmp = tmp_path_factory.mktemp("fairness")
    generate_assignments(load_course(REPO), [A], tmp / "release")
    student = nbformat.read(str(tmp / "release" / A / f"{A}.ipynb"), as_version=4)
    solution = nbformat.read(str(SOURCE), as_version=4)
    cases = build(solution, student)
    pts = points(solution)
    only = os.environ.get("FAIRNESS_ONLY")  # a comma-separated subset, while debugging
    if only:
        cases = [c for c in cases if c.name in only.split(",")]
    subs = tmp / "submitted"
    for case in cases:
        (subs / case.name / A).mkdir(parents=True)
        nbformat.write(case.nb, str(subs / case.name / A / f"{A}.ipynb"))
    out = tmp / "out"
    command = [sys.executable, "-m", "course_lib.cli", "grade", str(subs), "-o", str(out)]
    proc = subprocess.run(
        [*command, "-a", A, "-j", "2", "--cell-timeout", "60", "--course-root", str(REPO)],
        capture_output=True,
        text=True,
        timeout=1700,
    )
    summary = json.loads((out / "summary.json").read_text())
    return {"cases": cases, "summary": summary, "out": out, "proc": proc, "points": pts}


def _entry(graded, name):
    students = graded["summary"].get("students", graded["summary"])
    return students[name][A]


def test_every_score(graded):
    wrong = {}
    for case in graded["cases"]:
        got = _entry(graded, case.name)
        expected = score_of(case, graded["points"])
        if abs(float(got["score"]) - expected) > 1e-9:
            wrong[case.name] = (got["score"], expected, got["findings"], got["problems"])
    assert not wrong, json.dumps(wrong, indent=1, default=str) + graded["proc"].stdout[-3000:]


def test_enough_variants():
    assert len(HABITS) >= 15 and len(ROUTES) >= 6


def test_habits_are_reported_with_their_cell(graded):
    for case in graded["cases"]:
        if not case.name.startswith("habits_"):
            continue
        findings = _entry(graded, case.name)["findings"]
        text = " ".join(f["where"] for f in findings)
        for word in case.report:
            assert word.lower() in text.lower(), (case.name, word, text)
        assert all(not f["costs_points"] for f in findings), (case.name, findings)
        assert all(f["cell"] is not None and f["line"] for f in findings), (case.name, findings)


def test_every_reference_route_is_caught_for_its_exercise(graded):
    """Each planted route costs its exercise with a message naming course_lib's object: the
    run-time watch (a ReferenceUsed finding) or, for the reference class itself reached by
    another name, the checks' "comes from course_lib" (the class is not the student's)."""
    caught_at_run_time = 0
    for case in graded["cases"]:
        if not case.name.startswith("routes_"):
            continue
        findings = [
            f
            for f in _entry(graded, case.name)["findings"]
            if f["kind"] == "reference" and f["detected"] == "runtime"
        ]
        assert all(f["costs_points"] and "course_lib." in f["message"] for f in findings)
        path = graded["out"] / "autograded" / case.name / A / f"{A}.ipynb"
        autograded = nbformat.read(str(path), as_version=4)
        for answer, route in zip(case.loses, case.routes):
            prefix = f"{A}-{answer}-"
            runtime = [f for f in findings if any(t.startswith(prefix) for t in f["tests"])]
            named = [
                o
                for c in autograded.cells
                if (gid(c) or "").startswith(prefix)
                for o in c.get("outputs", [])
                if o.get("output_type") == "error" and "course_lib." in str(o.get("evalue"))
            ]
            assert runtime or named, (case.name, route, findings)
            caught_at_run_time += bool(runtime)
    # delegation from the student's own class (bound method, closure, helper class, library
    # function) and the two copies made at run time: only the watch can see these
    assert caught_at_run_time >= 6, caught_at_run_time


def test_grader_reaches_are_flagged(graded):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{graded['out'] / 'gradebook.db'}", "") as gb:
        for case in graded["cases"]:
            notebook = gb.find_submission_notebook(A, A, case.name)
            assert bool(notebook.flagged) == case.flagged, case.name


def test_findings_reach_feedback_and_gradebook_comments(graded):
    from nbgrader.api import Gradebook

    html = (graded["out"] / "feedback" / "habits_1" / A / f"{A}.html").read_text()
    assert "Note from the grader" in html and "no points lost" in html
    html = (graded["out"] / "feedback" / "routes_3" / A / f"{A}.html").read_text()
    assert "ReferenceUsed" in html and "course_lib.layers.activations.Relu" in html
    with Gradebook(f"sqlite:///{graded['out'] / 'gradebook.db'}", "") as gb:
        notebook = gb.find_submission_notebook(A, A, "habits_1")
        comments = " ".join(c.auto_comment or "" for c in notebook.comments)
        assert "shell" in comments.lower(), comments
