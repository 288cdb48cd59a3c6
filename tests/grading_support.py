"""Temporary nbgrader course directories for tests that run the real grading pipeline.

A :class:`CourseDir` is a throw-away copy of the course layout: ``graders/nbgrader_config.py``
(the repository's, so tests exercise the real configuration) plus chosen assignments in
``solutions/``, either copied from the repository or built in the test (see
:func:`synthetic_notebook`). Every nbgrader step runs the real CLI in a subprocess from
``graders/`` (as the instructor guide says), with its own SQLite gradebook; scores are read
back through ``nbgrader.api.Gradebook``.

Used by tests/test_release.py and tests/test_chapter_grading.py; other grading tests may
import it too.
"""

from __future__ import annotations

import ast
import contextlib
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nbformat

from course_lib.grading.course import load_course, nbgrader_environment

REPO_ROOT = Path(__file__).resolve().parents[1]
REPO_CONFIG = REPO_ROOT / "graders" / "nbgrader_config.py"
#: Where the shared real datasets live on development machines and in CI.
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

#: Generous ceiling for one nbgrader invocation (many notebooks executed in quick mode).
NBGRADER_TIMEOUT = 1800


# --------------------------------------------------------------------------------------------
# The course's chapters
# --------------------------------------------------------------------------------------------


def chapter_ids() -> list[str]:
    """Registered assignments whose source notebook exists in the repository's solutions/."""
    return load_course(REPO_ROOT).available_assignments()


def find_data_dir() -> Path | None:
    """The real MNIST data directory: $COURSE_LIB_DATA, else ../shared/data; None if absent."""
    env = os.environ.get("COURSE_LIB_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(SHARED_DATA)
    for candidate in candidates:
        if (candidate / "mnist").is_dir():
            return candidate
    return None


def read_notebook(path: str | os.PathLike[str]) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def nbgrader_meta(cell: nbformat.NotebookNode) -> dict:
    return dict(cell.get("metadata", {}).get("nbgrader", {}))


def graded_cell_points(nb: nbformat.NotebookNode) -> dict[str, float]:
    """Autograded test cells of a source notebook: grade_id -> points."""
    return {
        meta["grade_id"]: float(meta.get("points", 0))
        for meta in map(nbgrader_meta, nb.cells)
        if meta.get("grade") and not meta.get("solution") and nb_cell_type(meta) == "code"
    }


def nb_cell_type(meta: Mapping) -> str:
    return str(meta.get("cell_type", "code"))


def solution_cell_ids(nb: nbformat.NotebookNode) -> list[str]:
    return [meta["grade_id"] for meta in map(nbgrader_meta, nb.cells) if meta.get("solution")]


# --------------------------------------------------------------------------------------------
# Planted wrong answers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plant:
    """A wrong answer planted into one solution cell by a targeted string replacement.

    ``cell`` is the grade_id of the solution cell, ``old`` must occur in it exactly once
    (``count`` times if given) and becomes ``new``; ``loses`` are the grade_ids of the test
    cells that must then score zero (every other test cell keeps full marks).
    """

    name: str
    cell: str
    old: str
    new: str
    loses: tuple[str, ...]
    count: int = 1


def plant(nb: nbformat.NotebookNode, wrong: Plant) -> nbformat.NotebookNode:
    """A copy of ``nb`` with ``wrong`` planted; fails loudly if the cell or text is not there."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    cells = [c for c in nb.cells if nbgrader_meta(c).get("grade_id") == wrong.cell]
    if len(cells) != 1:
        raise AssertionError(
            f"planted error {wrong.name!r}: expected one cell with grade_id {wrong.cell!r}, "
            f"found {len(cells)}; update the planted errors after editing the notebook"
        )
    (cell,) = cells
    meta = nbgrader_meta(cell)
    if not meta.get("solution") or meta.get("grade"):
        raise AssertionError(
            f"planted error {wrong.name!r}: {wrong.cell!r} is not an autograded-answer cell "
            "(solution: true, grade: false); only student code may be mutated"
        )
    found = cell.source.count(wrong.old)
    if found != wrong.count:
        raise AssertionError(
            f"planted error {wrong.name!r}: {wrong.old!r} occurs {found} times in cell "
            f"{wrong.cell!r} (expected {wrong.count}); update the planted error:\n{cell.source}"
        )
    cell.source = cell.source.replace(wrong.old, wrong.new)
    return nb


# --------------------------------------------------------------------------------------------
# Lighter submissions: drop the demonstration cells no graded cell depends on
# --------------------------------------------------------------------------------------------


def _stored_names(node: ast.AST) -> set[str]:
    """Names a statement binds or mutates (``x = ..``, ``x.a = ..``, ``x[i] += ..``, def, import)."""
    names: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store | ast.Del):
            names.add(sub.id)
        elif isinstance(sub, ast.Attribute | ast.Subscript) and isinstance(
            sub.ctx, ast.Store | ast.Del
        ):
            base = sub.value
            while isinstance(base, ast.Attribute | ast.Subscript):
                base = base.value
            if isinstance(base, ast.Name):
                names.add(base.id)
        elif isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(sub.name)
        elif isinstance(sub, ast.Import | ast.ImportFrom):
            for alias in sub.names:
                names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(sub, ast.arg):
            names.add(sub.arg)
        elif isinstance(sub, ast.Global | ast.Nonlocal):
            names.update(sub.names)
    return names


def _loaded_names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def cell_names(source: str) -> tuple[set[str], set[str]] | None:
    """(names the cell defines or mutates, names it needs from earlier cells), or None if the
    cell cannot be analysed (then it must be kept)."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        tree = ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return None
    defined: set[str] = set()
    needed: set[str] = set()
    for stmt in tree.body:
        stored = _stored_names(stmt)
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            # everything bound inside the definition is local to it
            needed |= _loaded_names(stmt) - defined - stored
            defined.add(stmt.name)
        else:
            needed |= _loaded_names(stmt) - defined
            defined |= stored
    # mutating a name defined elsewhere (x.a = 1, x[0] = 2) also reads it
    return defined, needed


def prune_demonstrations(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` without the code cells that no nbgrader cell depends on.

    A student may delete any unlocked cell; nbgrader grades the graded cells only. Walking
    backwards from the last cell, a plain code cell is kept when it defines or mutates a
    name that a kept cell after it reads (or when it cannot be parsed). What is dropped is
    the chapter's figures and training runs, so a planted-error submission grades in seconds
    while every graded cell sees the same definitions as in the full notebook.
    """
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    keep: list[nbformat.NotebookNode] = []
    wanted: set[str] = set()
    for cell in reversed(nb.cells):
        if cell.cell_type != "code":
            keep.append(cell)
            continue
        names = cell_names(cell.source)
        graded = bool(nbgrader_meta(cell))
        if names is None or graded or names[0] & wanted:
            keep.append(cell)
            if names is not None:
                wanted |= names[1]
    nb.cells = keep[::-1]
    return nb


# --------------------------------------------------------------------------------------------
# Synthetic assignment (pipeline tests that do not depend on the chapters)
# --------------------------------------------------------------------------------------------

SYNTHETIC_ID = "synthetic_assignment"


def _meta(grade_id: str, *, solution: bool, grade: bool, points: float = 0) -> dict:
    meta = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": not solution,
        "schema_version": 3,
        "solution": solution,
        "task": False,
    }
    if grade:
        meta["points"] = points
    return {"nbgrader": meta}


def synthetic_notebook() -> nbformat.NotebookNode:
    """A small nbgrader source notebook following the course conventions: two exercises
    (1 and 2 points), visible and hidden tests with actionable assertion messages, a fallback
    cell after each test cell, and a quick-mode flag. Runs in about a second."""
    v4 = nbformat.v4
    cells = [
        v4.new_markdown_cell("# Synthetic chapter\n\nTwo tiny exercises for pipeline tests."),
        v4.new_code_cell(
            'import os\n\nimport numpy as np\n\nQUICK = os.environ.get("COURSE_QUICK", "1" if "NBGRADER_EXECUTION" in os.environ else "0") == "1"\n'
            'print("quick mode" if QUICK else "full mode")'
        ),
        v4.new_markdown_cell("### Exercise 1 — `double(x)` returns `2 * x` (1 point)"),
        v4.new_code_cell(
            "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
            metadata=_meta("synthetic-double", solution=True, grade=False),
        ),
        v4.new_code_cell(
            "def check_equal(yours, expected, name):\n"
            "    assert yours == expected, f'{name}: yours {yours!r}, expected {expected!r}'\n\n"
            "check_equal(double(3), 6, 'double(3)')\n"
            "### BEGIN HIDDEN TESTS\n"
            "check_equal(double(-2.5), -5.0, 'double(-2.5)')\n"
            "### END HIDDEN TESTS",
            metadata=_meta("synthetic-double-tests", solution=False, grade=True, points=1),
        ),
        v4.new_code_cell("# double = lambda x: 2 * x  # stuck? uncomment to continue"),
        v4.new_markdown_cell(
            "### Exercise 2 — `column_sums(x)`: `x` (N, D) -> the sum of each column, (D,) "
            "(2 points)"
        ),
        v4.new_code_cell(
            "def column_sums(x):\n    ### BEGIN SOLUTION\n    return x.sum(axis=0)\n"
            "    ### END SOLUTION",
            metadata=_meta("synthetic-column_sums", solution=True, grade=False),
        ),
        v4.new_code_cell(
            "def check_array(yours, expected, name):\n"
            "    yours = np.asarray(yours)\n"
            "    assert yours.shape == expected.shape, (\n"
            "        f'{name}: shape {yours.shape}, expected {expected.shape}')\n"
            "    assert np.allclose(yours, expected), f'{name}: yours {yours}, expected {expected}'\n"
            "\n"
            "check_array(column_sums(np.ones((2, 3))), np.full(3, 2.0), 'column_sums(ones((2, 3)))')\n"
            "### BEGIN HIDDEN TESTS\n"
            "_x = np.arange(12.0).reshape(4, 3)\n"
            "check_array(column_sums(_x), np.array([18.0, 22.0, 26.0]), 'column_sums(arange)')\n"
            "### END HIDDEN TESTS",
            metadata=_meta("synthetic-column_sums-tests", solution=False, grade=True, points=2),
        ),
        v4.new_code_cell("# column_sums = lambda x: x.sum(axis=0)  # stuck? uncomment"),
    ]
    nb = v4.new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python", "version": "3.11.0"},
    }
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"synthetic-{index:02d}"
    return nb


SYNTHETIC_PLANTS = (
    Plant(
        name="double-off-by-factor",
        cell="synthetic-double",
        old="return 2 * x",
        new="return 3 * x",
        loses=("synthetic-double-tests",),
    ),
    Plant(
        name="column_sums-wrong-axis",
        cell="synthetic-column_sums",
        old="axis=0",
        new="axis=1",
        loses=("synthetic-column_sums-tests",),
    ),
)


# --------------------------------------------------------------------------------------------
# The temporary course
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellScore:
    grade_id: str
    score: float
    max_score: float
    auto_score: float | None
    needs_manual_grade: bool


def run_measured(
    cmd: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` with captured text output, plus ``cpu_seconds`` of the process and
    its waited-for descendants (from ``os.wait4``, so other threads' children do not count).
    On timeout the whole process group is killed."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, env=dict(env), stdout=out, stderr=err, start_new_session=True
        )

        def kill() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            if hasattr(os, "wait4"):
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                cpu = usage.ru_utime + usage.ru_stime
            else:  # pragma: no cover - platforms without wait4
                proc.wait()
                cpu = float("nan")
        finally:
            timer.cancel()
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(list(cmd), proc.returncode, out.read(), err.read())
    result.cpu_seconds = cpu  # type: ignore[attr-defined]
    return result


class NbgraderFailed(AssertionError):
    """An nbgrader command exited non-zero (the message holds its output)."""


class CourseDir:
    """A temporary course root: ``graders/nbgrader_config.py`` + ``solutions/<id>/<id>.ipynb``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.graders = self.root / "graders"
        self.db_path = self.graders / "gradebook.db"
        self.db_url = "sqlite:///" + str(self.db_path)

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        root: str | os.PathLike[str],
        *,
        from_repo: Iterable[str] = (),
        notebooks: Mapping[str, nbformat.NotebookNode] | None = None,
        register: Sequence[str] | None = None,
        with_chapters: bool = False,
    ) -> CourseDir:
        """Build a course at ``root``: the repository's config, its solutions for the ids in
        ``from_repo``, and ``notebooks`` (assignment id -> source notebook) written as
        ``solutions/<id>/<id>.ipynb``. ``register`` replaces the config's assignment list
        (default: the repository's list plus the ids of ``notebooks``). ``with_chapters``
        copies the repository's committed chapters/ too."""
        course = cls(Path(root))
        course.graders.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_CONFIG, course.graders / "nbgrader_config.py")
        for assignment in from_repo:
            shutil.copytree(
                REPO_ROOT / "solutions" / assignment,
                course.root / "solutions" / assignment,
                ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"),
            )
        for assignment, nb in (notebooks or {}).items():
            course.write_source(assignment, nb)
        if with_chapters and (REPO_ROOT / "chapters").is_dir():
            shutil.copytree(REPO_ROOT / "chapters", course.root / "chapters")
        if register is None:
            registered = load_course(REPO_ROOT).assignments
            register = [*registered, *(a for a in notebooks or {} if a not in registered)]
        course.append_config(f"c.CourseLib.assignments = {list(register)!r}")
        return course

    def append_config(self, *lines: str) -> None:
        with open(self.graders / "nbgrader_config.py", "a", encoding="utf-8") as fh:
            fh.write("\n# added by the test suite\n" + "\n".join(lines) + "\n")

    def write_source(self, assignment: str, nb: nbformat.NotebookNode) -> Path:
        path = self.root / "solutions" / assignment / f"{assignment}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(path))
        return path

    # -- running nbgrader --------------------------------------------------------------------

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = nbgrader_environment()
        env["COURSE_LIB_GRADEBOOK_URL"] = self.db_url
        env["JUPYTER_CONFIG_DIR"] = str(self.root / ".jupyter-config")
        env.pop("JUPYTER_CONFIG_PATH", None)
        env.pop("COURSE_QUICK", None)
        env.setdefault("MPLBACKEND", "Agg")
        data = find_data_dir()
        if data is not None:
            env.setdefault("COURSE_LIB_DATA", str(data))
        env.update(extra or {})
        return env

    def nbgrader(
        self, *args: str, env: Mapping[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``nbgrader <args>`` from ``graders/`` (the config is ./nbgrader_config.py).

        The result carries ``cpu_seconds``: the CPU time of this nbgrader process and of the
        kernels it ran (exact also when several courses are graded in parallel threads)."""
        cmd = [sys.executable, "-m", "nbgrader", *args]
        result = run_measured(cmd, cwd=self.graders, env=self.env(env), timeout=NBGRADER_TIMEOUT)
        if check and result.returncode != 0:
            raise NbgraderFailed(
                f"`nbgrader {' '.join(args)}` exited {result.returncode}:\n"
                f"{result.stdout[-6000:]}\n{result.stderr[-12000:]}"
            )
        return result

    def generate_assignment(self, assignment: str) -> subprocess.CompletedProcess[str]:
        return self.nbgrader("generate_assignment", assignment, "--force")

    def autograde(
        self, assignment: str, *, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Autograde every submitted student of ``assignment`` in one nbgrader call, as an
        instructor would type it: without COURSE_QUICK (unless ``env`` sets it), so the
        chapters' own switch to quick mode under nbgrader is what runs."""
        return self.nbgrader("autograde", assignment, "--force", env=env)

    def generate_feedback(self, assignment: str) -> subprocess.CompletedProcess[str]:
        return self.nbgrader("generate_feedback", assignment, "--force")

    # -- paths and contents ------------------------------------------------------------------

    def source_notebook(
        self, assignment: str, notebook: str | None = None
    ) -> nbformat.NotebookNode:
        return read_notebook(
            self.root / "solutions" / assignment / f"{notebook or assignment}.ipynb"
        )

    def released_notebook(
        self, assignment: str, notebook: str | None = None
    ) -> nbformat.NotebookNode:
        return read_notebook(
            self.root / "chapters" / assignment / f"{notebook or assignment}.ipynb"
        )

    def submit(
        self,
        student: str,
        assignment: str,
        nb: nbformat.NotebookNode,
        notebook: str | None = None,
    ) -> Path:
        """Place ``nb`` as ``student``'s submission (what ``nbgrader collect`` would do)."""
        path = self.graders / "submitted" / student / assignment / f"{notebook or assignment}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(path))
        return path

    def autograded_notebook(
        self, assignment: str, student: str, notebook: str | None = None
    ) -> nbformat.NotebookNode:
        return read_notebook(
            self.graders / "autograded" / student / assignment / f"{notebook or assignment}.ipynb"
        )

    def feedback_path(self, assignment: str, student: str, notebook: str | None = None) -> Path:
        return self.graders / "feedback" / student / assignment / f"{notebook or assignment}.html"

    # -- the gradebook -----------------------------------------------------------------------

    def cell_scores(
        self, assignment: str, student: str, notebook: str | None = None
    ) -> dict[str, CellScore]:
        """Per graded cell of one submission, read through nbgrader's Python API."""
        from nbgrader.api import Gradebook

        with Gradebook(self.db_url) as gb:
            submission = gb.find_submission_notebook(notebook or assignment, assignment, student)
            return {
                grade.name: CellScore(
                    grade_id=grade.name,
                    score=float(grade.score),
                    max_score=float(grade.max_score),
                    auto_score=None if grade.auto_score is None else float(grade.auto_score),
                    needs_manual_grade=bool(grade.needs_manual_grade),
                )
                for grade in submission.grades
            }

    def students(self, assignment: str) -> list[str]:
        from nbgrader.api import Gradebook

        with Gradebook(self.db_url) as gb:
            return sorted(s.student.id for s in gb.find_assignment(assignment).submissions)


# --------------------------------------------------------------------------------------------
# Reading outputs
# --------------------------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TAG = re.compile(r"<[^>]+>")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def squash(text: str) -> str:
    """Collapse all whitespace runs to one space."""
    return " ".join(text.split())


def html_text(markup: str) -> str:
    """The visible text of an HTML page, whitespace collapsed (good enough for our asserts)."""
    markup = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", markup)
    return squash(html.unescape(_TAG.sub(" ", markup)))


def cell_error(nb: nbformat.NotebookNode, grade_id: str) -> dict | None:
    """The error output of the cell with ``grade_id`` (ename, evalue, traceback), or None."""
    for cell in nb.cells:
        if nbgrader_meta(cell).get("grade_id") == grade_id:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    return {
                        "ename": output.get("ename", ""),
                        "evalue": output.get("evalue", ""),
                        "traceback": strip_ansi("\n".join(output.get("traceback", []))),
                    }
            return None
    raise KeyError(f"no cell with grade_id {grade_id!r}")
