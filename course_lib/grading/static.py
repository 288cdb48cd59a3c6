"""The static pass: reads student code (``ast``, never runs it) and reports what it sees.

It is not the judge (see :mod:`course_lib.grading.findings` for the policy): tests run in the
verdict process, so habits inside the kernel cannot change a verdict, and use of the reference
is decided by what runs (:mod:`course_lib.grading.refwatch`). This pass gives the instructor
(and the student's feedback) an early, located account:

``habit``      shell commands and magics, ``sys.stdout``, ``exec``, ``setattr``, imports of
               ``inspect`` / ``types`` / ``gc`` ..., assigning attributes of imported modules:
               reported with cell and line, no points lost;
``reference``  a statement that binds an exercise's name (``Relu``), or any name in an answer
               cell, names ``course_lib`` objects the instructor's solution does not use
               (through the notebook's imports): an early warning at that line, no points lost
               (the run-time watch decides). The notebook's stuck-student fallback line, used
               where it stands (after the exercise's tests), binds no exercise a later test
               judges: it is allowed; used before the tests, it is warned;
``grader``     code that names the grader itself: importing ``course_lib.grading`` modules
               or ``course_lib.release`` (not the checks the notebooks use), assigning
               attributes of the checks (``course_lib.checks``), strings naming the grader's
               modules, its socket or the gradebook: the notebook is flagged for review and
               the tests after the statement score 0.

Only *student code* is read: answer cells and every code cell the student added or changed.
Cells identical to a cell of the instructor's notebook are the course's own code.
"""

from __future__ import annotations

import ast
from typing import Any

import nbformat

from course_lib.grading.findings import Finding
from course_lib.grading.names import (
    Imports,
    allowed,
    bound_names,
    code_cells,
    collect_setup,
    dotted,
    exercise_tests,
    solution_allowlist,
    student_names,
    to_python,
)
from course_lib.grading.notebook import grade_id, is_answer, is_test

__all__ = ["Finding", "exercise_tests", "scan_submission", "to_python", "verdict_init"]

# What student code may do, reported as a habit (no points lost). Whitespace-separated lists.
#: Modules (and their submodules) whose import is reported.
MODULES = frozenset(
    "builtins importlib gc ctypes inspect marshal pickle dill cloudpickle subprocess signal "
    "resource socket pty multiprocessing threading _thread sysconfig site runpy code codeop "
    "types IPython ipykernel jupyter_client nbgrader course_lib.cli unittest.mock mock".split()
)
#: ``module.attribute`` uses that reach into the interpreter or control processes.
ATTRIBUTES = frozenset(
    "sys.modules sys._getframe sys.settrace sys.setprofile sys.meta_path sys.path_hooks "
    "sys.path_importer_cache sys.setrecursionlimit sys.stdout sys.stderr sys.excepthook "
    "sys.displayhook os.system os.popen os.fork os.forkpty os.kill os.killpg os.setuid "
    "os.setgid os.execv os.execve os.execvp os.execl os.execlp os.spawnv os.spawnl "
    "os.posix_spawn os.chmod os.chown os.putenv os.unsetenv".split()
)
#: Builtins whose call is reported (``setattr`` / ``delattr`` on ``self`` or ``cls`` are not).
CALLS = frozenset("exec eval compile __import__ globals breakpoint setattr delattr".split())
#: Attribute names that reach into frames, code objects, modules' and functions' internals.
DUNDERS = frozenset(
    "__globals__ __code__ __closure__ __defaults__ __kwdefaults__ __subclasses__ __bases__ "
    "__mro__ __builtins__ __import__ __loader__ __spec__ __class__ __dict__ __getattribute__ "
    "__setattr__ f_back f_globals f_locals f_builtins gi_frame cr_frame ag_frame tb_frame "
    "tb_next".split()
)
#: Names whose mere use is reported.
NAMES = frozenset({"__builtins__", "__import__", "__loader__", "__spec__"})
#: Subscripted objects whose entries a student should not assign.
ENTRIES = frozenset({"sys.modules", "os.environ", "__builtins__"})
#: IPython line / cell magics a student may use silently.
ALLOWED_MAGICS = frozenset({"matplotlib", "timeit", "time", "precision", "pprint", "capture"})

#: The grader's modules (prefixes): the engine, the checks the test cells call, the release.
GRADER = ("course_lib.grading.", "course_lib.checks", "course_lib.release")
#: The grader's modules a notebook may import (its visible test cells use the checks).
GRADER_ALLOWED = ("course_lib.checks",)
#: Text in a string constant that names the grader itself (a file or module name: the word
#: "gradebook" in a printed sentence is not an attempt to reach anything).
GRADER_WORDS = (*GRADER, "gradebook.db", "cg-verdict")


def _under(name: str, prefixes: frozenset[str] | tuple[str, ...]) -> str | None:
    """The entry of ``prefixes`` that ``name`` is or lies below, if any."""
    return next((p for p in prefixes if name == p or name.startswith(p + ".")), None)


def _is_grader(name: str) -> bool:
    return name.startswith(GRADER) and not _under(name, GRADER_ALLOWED)


class _Scanner(ast.NodeVisitor):
    """Habit and grader hits of one statement of student code: (line, message, kind)."""

    def __init__(self, imports: Imports):
        self.imports = imports
        self.hits: list[tuple[int, str, str]] = []

    def hit(self, node: ast.AST, message: str, kind: str = "habit") -> None:
        if (node.lineno, message, kind) not in self.hits:
            self.hits.append((node.lineno, message, kind))

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            module = node.module or ""
            names = [module, *(f"{module}.{a.name}" for a in node.names)]
        if grader := next((n for n in names if _is_grader(n)), None):
            self.hit(node, f"imports `{grader}`, a module of the grader", "grader")
        elif noted := next((n for n in names if _under(n, MODULES | ATTRIBUTES)), None):
            self.hit(node, f"imports `{noted}`")

    visit_ImportFrom = visit_Import

    def visit_Attribute(self, node: ast.Attribute) -> None:
        spelled = ".".join(dotted(node) or [])
        real = self.imports.resolve(node)
        if isinstance(node.ctx, (ast.Store, ast.Del)) and real is not None:
            verb = "assigns" if isinstance(node.ctx, ast.Store) else "deletes"
            shown = f"`{spelled}`" if real == spelled else f"`{spelled}` (`{real}`)"
            if real.startswith(GRADER):
                self.hit(node, f"{verb} {shown}, part of the grader", "grader")
            else:
                self.hit(node, f"{verb} {shown}, an attribute of an imported module or object")
        if node.attr in DUNDERS and not (
            (node.attr == "__dict__" and dotted(node.value) == ["self"])
            or (node.attr == "__class__" and isinstance(node.ctx, ast.Load))
        ):
            self.hit(node, f"uses `{node.attr}`")
        if noted := _under(real or spelled, ATTRIBUTES):
            self.hit(node, f"uses `{noted}`")
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        base = ".".join(dotted(node.value) or [])
        if isinstance(node.ctx, (ast.Store, ast.Del)) and base in ENTRIES:
            verb = "assigns" if isinstance(node.ctx, ast.Store) else "deletes"
            self.hit(node, f"{verb} an entry of `{base}`")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func, args = node.func, node.args
        if isinstance(func, ast.Attribute) and func.attr in ("run_line_magic", "run_cell_magic"):
            magic = args[0] if args else None
            if isinstance(magic, ast.Constant) and magic.value in ALLOWED_MAGICS:
                return  # %matplotlib inline, %timeit ...: nothing to report
        name = func.id if isinstance(func, ast.Name) else None
        first = args[0] if args else None
        if name == "get_ipython":
            self.hit(node, "uses the IPython shell (`get_ipython()`, magics or `!` commands)")
        elif name in CALLS and not (
            name in ("setattr", "delattr") and dotted(first) in (["self"], ["cls"])
        ):
            self.hit(node, f"calls `{name}()`")
        root = ".".join(dotted(first) or []) if first and self.imports.resolve(first) else None
        if name == "vars" and first and (root or not isinstance(first, ast.Name)):
            self.hit(node, "calls `vars()` on a module or object it did not create")
        if name == "getattr" and len(args) > 1:
            attr = args[1]
            if not isinstance(attr, ast.Constant) and root:
                self.hit(node, f"reads an attribute of `{root}` by a computed name")
            elif isinstance(attr, ast.Constant) and attr.value in DUNDERS:
                self.hit(node, f"reads `{attr.value}` through getattr")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        text = node.value
        if isinstance(text, str) and not any(a in text for a in GRADER_ALLOWED):
            if any(word in text for word in GRADER_WORDS):
                self.hit(node, f"names the grader in a string ({text[:60]!r})", "grader")

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in NAMES:
            self.hit(node, f"uses `{node.id}`")


def scan_submission(
    source_nb: nbformat.NotebookNode, submitted_nb: nbformat.NotebookNode
) -> list[Finding]:
    """Findings of the static pass for one submitted notebook (see the module docstring)."""
    trusted = {
        c.source.strip() for c in source_nb.cells if c.cell_type == "code" and not is_answer(c)
    }
    test_ids = {grade_id(c) for c in source_nb.cells if c.cell_type == "code" and is_test(c)}
    allow = solution_allowlist(source_nb)
    exercises = exercise_tests(source_nb)
    # the test cells in the order they run; nbgrader re-adds deleted ones at the end
    order = [grade_id(c) for c in submitted_nb.cells if grade_id(c) in test_ids]
    positions = [i for i, c in enumerate(submitted_nb.cells) if grade_id(c) in test_ids]
    missing = sorted(test_ids - set(order))
    positions += range(len(submitted_nb.cells), len(submitted_nb.cells) + len(missing))
    order += missing

    def tests_after(index: int) -> tuple[str, ...]:
        return tuple(g for pos, g in zip(positions, order) if pos > index)

    imports = Imports()
    findings: list[Finding] = []
    for index, cell, tree in code_cells(submitted_nb):
        if grade_id(cell) in test_ids:
            continue  # nbgrader restores test cells from the gradebook
        after = tests_after(index)
        # the exercises an answer cell is for: those it binds that a test after it judges
        own = {
            n
            for node in tree.body
            for n in bound_names(node)
            if set(exercises.get(n, ())) & set(after)
        }
        student = is_answer(cell) or cell.source.strip() not in trusted
        for node in tree.body:
            if student:
                findings += _findings(node, imports, allow, own, index, after, is_answer(cell))
            imports.bind(node)
    return findings


def _findings(
    node: ast.stmt,
    imports: Imports,
    allow: set[str],
    own: set[str],
    index: int,
    after: tuple[str, ...],
    answer: bool,
) -> list[Finding]:
    """The findings of one statement of student code in cell ``index``: its habits and reaches
    for the grader, and the early reference warning when it binds an exercise ``own`` (one a
    test ``after`` the cell judges), or any name in an answer cell, to code naming a
    ``course_lib`` object the solution does not use."""
    scanner = _Scanner(imports)
    scanner.visit(node)
    found = [
        Finding("grader", message, index, line, after)
        if kind == "grader"
        else Finding("habit", message, index, line)
        for line, message, kind in scanner.hits
    ]
    bad = sorted(o for o in imports.course_lib_objects(node) if not allowed(o, allow))
    bound = bound_names(node)
    names = sorted(bound & own) or (sorted(own) if answer and bound else [])
    if bad and names:
        shown = ", ".join(f"`{o}`" for o in bad[:3])
        message = (
            f"`{names[0]}` uses the reference implementation ({shown}) instead of your own code"
        )
        found.append(Finding("reference", message, index, node.lineno, exercise=names[0]))
    return found


def verdict_init(
    source_nb: nbformat.NotebookNode, allow_from: nbformat.NotebookNode | None = None
) -> dict[str, Any]:
    """What the verdict process needs of the instructor's notebook: the ``init`` command.

    ``setup`` (imports and helpers the test cells use), ``student_names``, ``exercises``
    (name -> grade_ids of its tests) and ``allow`` (course_lib objects the solution's answers
    use, which the run-time watch does not count as the reference), ``handed_out`` (the
    notebook's text).
    """
    return {
        "setup": collect_setup(source_nb),
        "student_names": sorted(student_names(source_nb)),
        "exercises": {k: sorted(v) for k, v in exercise_tests(source_nb).items()},
        "allow": sorted(solution_allowlist(allow_from if allow_from is not None else source_nb)),
        "handed_out": "\n".join(c.source for c in source_nb.cells),
    }
