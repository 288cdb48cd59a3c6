"""What the notebook's code binds and refers to, read with ``ast`` (never run).

Which names the instructor's answer cells define (what students must write, the exercises and
the tests that follow each), the imports and helpers of the course's cells (the verdict
process's setup), and which names of student code refer to ``course_lib`` objects
(:class:`Taint`, followed through imports and assignments) for the static pass
(:mod:`course_lib.grading.static`).
"""

from __future__ import annotations

import ast

import nbformat

from course_lib.grading.notebook import is_answer, is_test, nbgrader_meta

__all__ = [
    "Taint",
    "allowed",
    "bound_names",
    "collect_setup",
    "dotted",
    "exercise_tests",
    "fallback_lines",
    "is_code_test",
    "local_names",
    "parse_cell",
    "solution_allowlist",
    "student_names",
    "to_python",
]

#: course_lib modules any student code may use.
ALWAYS_ALLOWED = ("course_lib.datasets",)


def is_code_test(cell: nbformat.NotebookNode) -> bool:
    return cell.cell_type == "code" and is_test(cell)


def to_python(source: str) -> str:
    """A cell's source with IPython syntax (magics, ``!`` commands) turned into Python."""
    try:
        ast.parse(source)
        return source
    except SyntaxError:
        pass
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:
        return source


def parse_cell(source: str) -> ast.Module | None:
    try:
        return ast.parse(to_python(source))
    except (SyntaxError, ValueError):
        return None


def bound_names(node: ast.stmt) -> set[str]:
    names: set[str] = set()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        names.add(node.name)
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
        for alias in node.names:
            names.add((alias.asname or alias.name).split(".")[0])
    else:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            targets = [node.target]
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            targets = [i.optional_vars for i in node.items if i.optional_vars is not None]
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Name):
                    names.add(sub.id)
        if isinstance(node, (ast.If, ast.Try, ast.For, ast.While, ast.With)):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    names |= bound_names(child)
    return names


def student_names(source_nb: nbformat.NotebookNode) -> set[str]:
    """Names the instructor's answer cells define at top level: what students must write."""
    names: set[str] = set()
    for cell in source_nb.cells:
        if is_answer(cell):
            tree = parse_cell(cell.source)
            if tree is not None:
                for node in tree.body:
                    names |= bound_names(node)
    return names


def collect_setup(source_nb: nbformat.NotebookNode) -> list[str]:
    """The imports and helper definitions of the instructor's (non-answer) cells that the test
    cells use, directly or through other helpers, in notebook order: the verdict process's setup.

    What no test uses stays out: a demonstration's helper may need the demonstration's own
    variables when it is defined (chapter 5's ``def fit(net, epochs=f_epochs)``), which the
    verdict process never has.
    """
    candidates: list[ast.stmt] = []
    needed: set[str] = set()
    for cell in source_nb.cells:
        if cell.cell_type != "code" or is_answer(cell):
            continue
        tree = parse_cell(cell.source)
        if tree is None:
            continue
        if is_code_test(cell):
            needed |= loaded_names(tree)
        candidates += [node for node in tree.body if isinstance(node, _SETUP)]
    kept: list[ast.stmt] = []
    for node in reversed(candidates):
        bound = bound_names(node)
        if "*" in bound or bound & needed:
            kept.append(node)
            needed |= loaded_names(node)
    return [ast.unparse(node) for node in reversed(kept)]


def loaded_names(node: ast.AST) -> set[str]:
    """Every name ``node`` reads (inside its functions too: a helper calls other helpers)."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


_SETUP = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def local_names(node: ast.AST) -> set[str]:
    """Names bound inside the functions and classes of ``node`` (not ``global`` ones)."""
    if not isinstance(node, _SCOPES):
        return set()
    local: set[str] = set()
    declared_global: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, (ast.Global, ast.Nonlocal)):
            declared_global |= set(sub.names)
        elif isinstance(sub, ast.arg):
            local.add(sub.arg)
        elif isinstance(sub, ast.Name) and isinstance(sub.ctx, (ast.Store, ast.Del)):
            local.add(sub.id)
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and (
            sub is not node
        ):
            local.add(sub.name)
        elif isinstance(sub, ast.ExceptHandler) and sub.name:
            local.add(sub.name)
    return local - declared_global


def dotted(node: ast.expr) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return None


def fallback_lines(source_nb: nbformat.NotebookNode) -> set[str]:
    """Code lines commented out in the instructor's cells (the stuck-student fallbacks)."""
    lines = set()
    for cell in source_nb.cells:
        if cell.cell_type != "code" or is_answer(cell) or is_code_test(cell):
            continue
        for raw in cell.source.splitlines():
            stripped = raw.strip()
            if not stripped.startswith("#"):
                continue
            code = stripped.lstrip("#").strip()
            try:
                tree = ast.parse(code)
            except SyntaxError:
                continue
            if len(tree.body) == 1 and isinstance(
                tree.body[0], (ast.Assign, ast.Import, ast.ImportFrom)
            ):
                lines.add(ast.dump(tree.body[0]))
    return lines


class Taint:
    """Which names refer to (or derive from) course_lib objects, and where from."""

    def __init__(self) -> None:
        self.origins: dict[str, set[str]] = {}
        self.modules: set[str] = set()  # names bound by any import (module or object)
        self.fallback: set[str] = set()  # names bound by an official fallback line
        self.imported: dict[str, str] = {}  # local name -> what it imports ("np" -> "numpy")

    def origin_of(self, node: ast.AST) -> set[str]:
        """course_lib origins an expression (or a def/class statement) refers to.

        Inside a function or class, names bound there (arguments, assignments, loop targets)
        are its own: a parameter called ``net`` is not the notebook's global ``net``.
        """
        found: set[str] = set()
        local = local_names(node)
        for sub in ast.walk(node):
            if isinstance(sub, (ast.Import, ast.ImportFrom)) and sub is not node:
                # an import inside a function or class refers to what it imports
                if isinstance(sub, ast.Import):
                    found |= {a.name for a in sub.names if a.name.split(".")[0] == "course_lib"}
                elif (sub.module or "").split(".")[0] == "course_lib" and sub.level == 0:
                    found |= {f"{sub.module}.{a.name}" for a in sub.names}
                continue
            if isinstance(sub, ast.Attribute):
                parts = dotted(sub)
                if parts and parts[0] in local:
                    continue
                if parts and parts[0] in self.origins:
                    for base in self.origins[parts[0]]:
                        if base.startswith("course_lib") and not base.startswith("derived:"):
                            found.add(".".join([base, *parts[1:]]))
            elif isinstance(sub, ast.Name) and sub.id in self.origins and sub.id not in local:
                found |= self.origins[sub.id]
        # keep only the most specific origins
        return {o for o in found if not any(p != o and p.startswith(o + ".") for p in found)}

    def bind_import(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                self.modules.add(local)
                self.imported[local] = alias.name if alias.asname else local
                target = alias.name if alias.asname else alias.name.split(".")[0]
                if alias.name.split(".")[0] == "course_lib":
                    self.origins[local] = {target}
                else:
                    self.origins.pop(local, None)
        else:
            module = node.module or ""
            for alias in node.names:
                local = alias.asname or alias.name
                self.modules.add(local)
                self.imported[local] = f"{module}.{alias.name}"
                if module.split(".")[0] == "course_lib" and node.level == 0:
                    self.origins[local] = {f"{module}.{alias.name}"}
                else:
                    self.origins.pop(local, None)


def allowed(origin: str, allow: set[str]) -> bool:
    origin = origin.removeprefix("derived:")
    if origin in ("course_lib",):
        return True
    if origin.startswith(ALWAYS_ALLOWED):
        return True
    return any(origin == a or origin.startswith(a + ".") for a in allow)


def solution_allowlist(source_nb: nbformat.NotebookNode) -> set[str]:
    """course_lib objects the instructor's answers use (so students may use them too)."""
    taint = Taint()
    allow: set[str] = set()
    for cell in source_nb.cells:
        if cell.cell_type != "code":
            continue
        tree = parse_cell(cell.source)
        if tree is None:
            continue
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                taint.bind_import(node)
                if is_answer(cell):
                    allow |= {
                        next(iter(taint.origins[n]))
                        for n in bound_names(node)
                        if n in taint.origins
                    }
                continue
            if is_answer(cell):
                allow |= {o for o in taint.origin_of(node) if not o.startswith("derived:")}
    return allow


def exercise_tests(source_nb: nbformat.NotebookNode) -> dict[str, set[str]]:
    """Exercise name (a name an answer cell binds) -> grade_ids of the tests that follow it."""
    mapping: dict[str, set[str]] = {}
    current: set[str] = set()
    for cell in source_nb.cells:
        if is_answer(cell):
            tree = parse_cell(cell.source)
            current = set()
            if tree is not None:
                for node in tree.body:
                    current |= bound_names(node)
        elif is_code_test(cell):
            for name in current:
                mapping.setdefault(name, set()).add(nbgrader_meta(cell)["grade_id"])
    return mapping
