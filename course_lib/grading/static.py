"""The static pass: reads student code (``ast``, never runs it) and reports what it sees.

It is no longer the judge (see :mod:`course_lib.grading.findings` for the policy): tests run in
the verdict process, so habits inside the kernel cannot change a verdict, and use of the
reference is decided by what runs (:mod:`course_lib.grading.refwatch`). This pass gives the
instructor (and the student's feedback) an early, located account:

``habit``      shell commands and magics, ``sys.stdout``, ``exec``, ``setattr``, imports of
               ``inspect`` / ``types`` / ``gc`` ..., assigning attributes of imported modules:
               reported with cell and line, no points lost;
``reference``  a statement binds an exercise's name (``Relu``) to code that uses ``course_lib``
               objects the instructor's solution does not use (followed through imports and
               assignments; the notebook's stuck-student fallback lines are allowed): an early
               warning, no points lost here (the run-time watch decides);
``grader``     code that names the grader itself: importing ``course_lib.grading`` modules
               other than the checks the notebooks use, assigning attributes of the checks,
               strings naming the grader's modules, its socket or the gradebook: the notebook
               is flagged for review and the tests after the statement score 0.

Only *student code* is read: answer cells and every code cell the student added or changed.
Cells identical to a cell of the instructor's notebook are the course's own code.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import nbformat

from course_lib.grading.findings import Finding
from course_lib.grading.names import (
    Taint,
    allowed,
    bound_names,
    collect_setup,
    dotted,
    exercise_tests,
    fallback_lines,
    is_code_test,
    solution_allowlist,
    student_names,
    to_python,
)
from course_lib.grading.notebook import is_answer, nbgrader_meta

__all__ = [
    "Finding",
    "collect_setup",
    "exercise_tests",
    "scan_submission",
    "student_names",
    "to_python",
    "verdict_init",
]

#: Modules whose import in student code is tampering.
FORBIDDEN_MODULES = frozenset(
    {
        "builtins",
        "importlib",
        "gc",
        "ctypes",
        "inspect",
        "marshal",
        "pickle",
        "dill",
        "cloudpickle",
        "subprocess",
        "signal",
        "resource",
        "socket",
        "pty",
        "multiprocessing",
        "threading",
        "_thread",
        "sysconfig",
        "site",
        "runpy",
        "code",
        "codeop",
        "types",
        "IPython",
        "ipykernel",
        "jupyter_client",
        "nbgrader",
        "course_lib.cli",
        "unittest.mock",
        "mock",
    }
)
#: ``module.attribute`` uses that are tampering or process control.
FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "sys.modules",
        "sys._getframe",
        "sys.settrace",
        "sys.setprofile",
        "sys.meta_path",
        "sys.path_hooks",
        "sys.path_importer_cache",
        "sys.setrecursionlimit",
        "sys.stdout",
        "sys.stderr",
        "sys.excepthook",
        "sys.displayhook",
        "os.system",
        "os.popen",
        "os.fork",
        "os.forkpty",
        "os.kill",
        "os.killpg",
        "os.setuid",
        "os.setgid",
        "os.execv",
        "os.execve",
        "os.execvp",
        "os.execl",
        "os.execlp",
        "os.spawnv",
        "os.spawnl",
        "os.posix_spawn",
        "os.chmod",
        "os.chown",
        "os.putenv",
        "os.unsetenv",
    }
)
#: Builtins whose call is tampering.
FORBIDDEN_CALLS = frozenset(
    {
        "exec",
        "eval",
        "compile",
        "__import__",
        "globals",
        "breakpoint",
        "get_ipython",
        "setattr",
        "delattr",
    }
)
#: Attribute names that reach into frames, code objects, modules' and functions' internals.
FORBIDDEN_DUNDERS = frozenset(
    {
        "__globals__",
        "__code__",
        "__closure__",
        "__defaults__",
        "__kwdefaults__",
        "__subclasses__",
        "__bases__",
        "__mro__",
        "__builtins__",
        "__import__",
        "__loader__",
        "__spec__",
        "__class__",
        "__dict__",
        "__getattribute__",
        "__setattr__",
        "f_back",
        "f_globals",
        "f_locals",
        "f_builtins",
        "gi_frame",
        "cr_frame",
        "ag_frame",
        "tb_frame",
        "tb_next",
    }
)
#: IPython line / cell magics a student may use.
ALLOWED_MAGICS = frozenset({"matplotlib", "timeit", "time", "precision", "pprint", "capture"})


#: The grader's modules a notebook may import (its visible test cells use the checks).
GRADER_ALLOWED = ("course_lib.grading.checks",)
#: Text in a string constant that names the grader itself (a file or module name: the word
#: "gradebook" in a printed sentence is not an attempt to reach anything).
GRADER_WORDS = ("course_lib.grading.", "gradebook.db", "cg-verdict")


def _is_grader_module(name: str) -> bool:
    if not name.startswith("course_lib.grading."):
        return False
    return not any(name == a or name.startswith(a + ".") for a in GRADER_ALLOWED)


# ----------------------------------------------------------------------------------------------
# the scan


class _Scanner(ast.NodeVisitor):
    def __init__(self, taint: Taint):
        self.taint = taint
        self.hits: list[tuple[int, str, str]] = []

    def hit(self, node: ast.AST, message: str, kind: str = "habit") -> None:
        self.hits.append((getattr(node, "lineno", 0), message, kind))

    def _root_is_import(self, node: ast.expr) -> str | None:
        parts = dotted(node)
        if parts and parts[0] in self.taint.modules:
            return ".".join(parts)
        return None

    def _check_target(self, target: ast.expr, verb: str) -> None:
        if isinstance(target, ast.Attribute):
            root = self._root_is_import(target)
            if root is not None:
                parts = root.split(".")
                real = ".".join([self.taint.imported.get(parts[0], parts[0]), *parts[1:]])
                shown = f"`{root}`" if real == root else f"`{root}` (`{real}`)"
                if real.startswith("course_lib.grading"):
                    self.hit(target, f"{verb} {shown}, part of the grader", "grader")
                else:
                    self.hit(
                        target, f"{verb} {shown}, an attribute of an imported module or object"
                    )
        if isinstance(target, ast.Subscript):
            base = dotted(target.value)
            if base and ".".join(base) in ("sys.modules", "os.environ", "__builtins__"):
                self.hit(target, f"{verb} an entry of `{'.'.join(base)}`")
        if isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                self._check_target(elt, verb)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._check_target(target, "assigns")
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._check_target(node.target, "modifies")
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._check_target(node.target, "assigns")
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._check_target(target, "deletes")
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module(node, alias.name)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        self._check_module(node, module)
        for alias in node.names:
            self._check_module(node, f"{module}.{alias.name}")
            if f"{module}.{alias.name}" in FORBIDDEN_ATTRIBUTES:
                self.hit(node, f"imports `{module}.{alias.name}`")
        self.generic_visit(node)

    def _check_module(self, node: ast.AST, name: str) -> None:
        if _is_grader_module(name):
            self.hit(node, f"imports `{name}`, a module of the grader", "grader")
            return
        for forbidden in FORBIDDEN_MODULES:
            if name == forbidden or name.startswith(forbidden + "."):
                self.hit(node, f"imports `{name}`")
                return

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
            if func.id in ("setattr", "delattr") and node.args:
                first = node.args[0]
                if isinstance(first, ast.Name) and first.id in ("self", "cls"):
                    self.generic_visit(node)
                    return
            if func.id == "get_ipython":
                self._check_ipython(node)
            else:
                self.hit(node, f"calls `{func.id}()`")
        if isinstance(func, ast.Name) and func.id in ("vars", "getattr") and node.args:
            first = node.args[0]
            root = (
                self._root_is_import(first)
                if isinstance(first, (ast.Name, ast.Attribute))
                else None
            )
            if func.id == "vars" and (root is not None or not isinstance(first, ast.Name)):
                self.hit(node, "calls `vars()` on a module or object it did not create")
            if func.id == "getattr" and len(node.args) > 1:
                name = node.args[1]
                if not isinstance(name, ast.Constant):
                    if root is not None:
                        self.hit(node, f"reads an attribute of `{root}` by a computed name")
                elif isinstance(name.value, str) and name.value in FORBIDDEN_DUNDERS:
                    self.hit(node, f"reads `{name.value}` through getattr")
        self.generic_visit(node)

    def _check_ipython(self, node: ast.Call) -> None:
        # IPython syntax arrives as get_ipython().run_line_magic('name', ...) etc.
        self.hit(node, "uses the IPython shell (`get_ipython()`, magics or `!` commands)")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in FORBIDDEN_DUNDERS:
            base = dotted(node.value)
            if not (node.attr == "__dict__" and base == ["self"]) and not (
                node.attr == "__class__" and isinstance(node.ctx, ast.Load)
            ):
                self.hit(node, f"uses `{node.attr}`")
        parts = dotted(node)
        if parts:
            full = ".".join(parts)
            for forbidden in FORBIDDEN_ATTRIBUTES:
                if full == forbidden or full.startswith(forbidden + "."):
                    self.hit(node, f"uses `{forbidden}`")
                    break
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            for word in GRADER_WORDS:
                if word in node.value and not any(a in node.value for a in GRADER_ALLOWED):
                    self.hit(node, f"names the grader in a string ({node.value[:60]!r})", "grader")
                    break

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in ("__builtins__", "__import__", "__loader__", "__spec__"):
            self.hit(node, f"uses `{node.id}`")


_MAGIC_CALL = re.compile(r"get_ipython\(\)\.run_(line|cell)_magic\(\s*['\"](\w+)['\"]")


def _strip_allowed_magics(python_source: str) -> str:
    """Drop harmless magics (``%matplotlib inline``, ``%timeit``) before scanning."""
    lines = []
    for line in python_source.splitlines():
        match = _MAGIC_CALL.search(line)
        if match and match.group(2) in ALLOWED_MAGICS and line.strip().startswith("get_ipython()"):
            indent = line[: len(line) - len(line.lstrip())]
            lines.append(indent + "pass")
        else:
            lines.append(line)
    return "\n".join(lines)


def scan_submission(
    source_nb: nbformat.NotebookNode, submitted_nb: nbformat.NotebookNode
) -> list[Finding]:
    """Findings of the static checks for one submitted notebook (see the module docstring)."""
    trusted = {
        cell.source.strip()
        for cell in source_nb.cells
        if cell.cell_type == "code" and not is_answer(cell)
    }
    test_ids = {nbgrader_meta(c)["grade_id"] for c in source_nb.cells if is_code_test(c)}
    allow = solution_allowlist(source_nb)
    fallbacks = fallback_lines(source_nb)
    exercises = exercise_tests(source_nb)

    # positions of the test cells in the submission, in order
    positions: list[tuple[int, str]] = []
    for index, cell in enumerate(submitted_nb.cells):
        gid = nbgrader_meta(cell).get("grade_id")
        if cell.cell_type == "code" and gid in test_ids:
            positions.append((index, gid))
    # tests nbgrader will re-add at the end of their region if deleted: treat them as last
    missing = sorted(test_ids - {g for _, g in positions})
    positions += [(len(submitted_nb.cells) + i, g) for i, g in enumerate(missing)]

    def tests_after(index: int) -> list[str]:
        return [g for pos, g in positions if pos > index]

    taint = Taint()
    findings: list[Finding] = []
    for index, cell in enumerate(submitted_nb.cells):
        if cell.cell_type != "code":
            continue
        gid = nbgrader_meta(cell).get("grade_id")
        if gid in test_ids:
            continue  # nbgrader restores test cells from the gradebook
        python = to_python(cell.source)
        is_student_code = is_answer(cell) or cell.source.strip() not in trusted
        try:
            tree = ast.parse(_strip_allowed_magics(python) if is_student_code else python)
        except (SyntaxError, ValueError):
            continue  # it fails when run; nothing to analyse
        for node in tree.body:
            bound = bound_names(node)
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                taint.bind_import(node)
                if is_student_code and is_answer(cell):
                    for name in bound:
                        for origin in taint.origins.get(name, ()):
                            if not allowed(origin, allow):
                                findings.append(
                                    Finding(
                                        "reference",
                                        f"imports the reference implementation `{origin}` in an "
                                        "answer cell; write your own code instead",
                                        index,
                                        node.lineno,
                                    )
                                )
                if is_student_code:
                    findings += _scan(node, taint, index, tests_after(index))
                continue
            origins = taint.origin_of(node)
            if is_student_code:
                findings += _scan(node, taint, index, tests_after(index))
                sanctioned = ast.dump(node) in fallbacks
                bad = sorted(o for o in origins if not allowed(o, allow))
                if bad and not sanctioned:
                    exercise_names = sorted(n for n in bound if n in exercises)
                    affected = [
                        g
                        for g in tests_after(index)
                        if any(g in exercises[n] for n in exercise_names)
                    ]
                    if exercise_names and affected:
                        shown = ", ".join(f"`{o.removeprefix('derived:')}`" for o in bad[:3])
                        findings.append(
                            Finding(
                                "reference",
                                f"`{exercise_names[0]}` uses the reference implementation "
                                f"({shown}) instead of your own code",
                                index,
                                node.lineno,
                                exercise=exercise_names[0],
                            )
                        )
                if sanctioned:
                    taint.fallback |= bound
            # propagate: names bound here now refer to what the statement refers to. An
            # exercise's own name does not propagate: its tests judge it (statically above,
            # dynamically in the checks), and later exercises may build on it like on a fallback.
            for name in bound:
                if name in exercises:
                    taint.origins.pop(name, None)
                    taint.modules.discard(name)
                elif origins and name not in taint.fallback:
                    taint.origins[name] = (
                        {o if o.startswith("derived:") else f"derived:{o}" for o in origins}
                        if not isinstance(node, ast.Assign)
                        else set(origins)
                    )
                elif name in taint.fallback and origins:
                    taint.origins[name] = {"course_lib"}  # allowed from now on
                else:
                    taint.origins.pop(name, None)
                    taint.modules.discard(name)
    return findings


def _scan(node: ast.stmt, taint: Taint, index: int, after: list[str]) -> list[Finding]:
    """Habit and grader findings of one statement of student code."""
    scanner = _Scanner(taint)
    scanner.visit(node)
    return [
        Finding("grader", message, index, line, tuple(after))
        if kind == "grader"
        else Finding("habit", message, index, line)
        for line, message, kind in scanner.hits
    ]


def verdict_init(
    source_nb: nbformat.NotebookNode, allow_from: nbformat.NotebookNode | None = None
) -> dict[str, Any]:
    """What the verdict process needs of the instructor's notebook: the ``init`` command.

    ``setup`` (imports and helpers of the course's cells), ``student_names``, ``exercises``
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
