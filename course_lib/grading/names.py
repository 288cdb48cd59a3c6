"""What the notebook's code binds and refers to, read with ``ast`` (never run).

Which names the instructor's answer cells define (what students must write, the exercises and
the tests that follow each), the imports and helpers the test cells use (the verdict process's
setup), and which ``course_lib`` objects code names through its imports (:class:`Imports`) for
the static pass (:mod:`course_lib.grading.static`) and for the objects the solution itself uses
(:func:`solution_allowlist`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

import nbformat

from course_lib.grading.notebook import grade_id, is_answer, is_test

__all__ = [
    "Imports",
    "allowed",
    "bound_names",
    "code_cells",
    "collect_setup",
    "exercise_tests",
    "solution_allowlist",
    "student_names",
    "to_python",
]

#: course_lib modules any student code may use.
ALWAYS_ALLOWED = ("course_lib.datasets",)
#: Statements the verdict process's setup is made of.
_SETUP = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


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


def code_cells(
    nb: nbformat.NotebookNode,
) -> Iterator[tuple[int, nbformat.NotebookNode, ast.Module]]:
    """(index, cell, parsed source) of each code cell whose source parses."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            try:
                yield index, cell, ast.parse(to_python(cell.source))
            except (SyntaxError, ValueError):
                continue  # it fails when run; nothing to read


def bound_names(node: ast.stmt) -> set[str]:
    """Names a top-level statement binds (in the blocks of ``if``, ``for``, ``try`` ... too)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
        targets = [node.target]
    elif isinstance(node, (ast.With, ast.AsyncWith)):
        targets = [i.optional_vars for i in node.items if i.optional_vars is not None]
    names = {sub.id for t in targets for sub in ast.walk(t) if isinstance(sub, ast.Name)}
    if isinstance(node, (ast.If, ast.Try, ast.For, ast.While, ast.With)):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                names |= bound_names(child)
    return names


def loaded_names(node: ast.AST) -> set[str]:
    """Every name ``node`` reads (inside its functions too: a helper calls other helpers)."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def student_names(source_nb: nbformat.NotebookNode) -> set[str]:
    """Names the instructor's answer cells define at top level: what students must write."""
    return {
        name
        for _, cell, tree in code_cells(source_nb)
        if is_answer(cell)
        for node in tree.body
        for name in bound_names(node)
    }


def exercise_tests(source_nb: nbformat.NotebookNode) -> dict[str, set[str]]:
    """Exercise name (a name an answer cell binds) -> grade_ids of the tests that follow it."""
    mapping: dict[str, set[str]] = {}
    current: set[str] = set()
    for _, cell, tree in code_cells(source_nb):
        if is_answer(cell):
            current = {name for node in tree.body for name in bound_names(node)}
        elif is_test(cell):
            for name in current:
                mapping.setdefault(name, set()).add(grade_id(cell))
    return mapping


def collect_setup(source_nb: nbformat.NotebookNode) -> list[str]:
    """The imports and helper definitions of the instructor's (non-answer) cells that the test
    cells use, directly or through other helpers, in notebook order: the verdict process's setup.

    What no test uses stays out: a demonstration's helper may need the demonstration's own
    variables when it is defined (chapter 5's ``def fit(net, epochs=f_epochs)``), which the
    verdict process never has.
    """
    candidates: list[ast.stmt] = []
    needed: set[str] = set()
    for _, cell, tree in code_cells(source_nb):
        if is_answer(cell):
            continue
        if is_test(cell):
            needed |= loaded_names(tree)
        candidates += [node for node in tree.body if isinstance(node, _SETUP)]
    kept: list[ast.stmt] = []
    for node in reversed(candidates):
        bound = bound_names(node)
        if "*" in bound or bound & needed:
            kept.append(node)
            needed |= loaded_names(node)
    return [ast.unparse(node) for node in reversed(kept)]


def dotted(node: ast.expr) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None for anything but names and attributes."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def local_names(node: ast.AST) -> set[str]:
    """Names bound inside the functions and classes of ``node`` (not ``global`` ones): a
    parameter called ``net`` is not the notebook's global ``net``."""
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
        elif (
            isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and sub is not node
        ):
            local.add(sub.name)
        elif isinstance(sub, ast.ExceptHandler) and sub.name:
            local.add(sub.name)
    return local - declared_global


class Imports:
    """What the imported names of the notebook refer to, statement by statement (``np`` ->
    ``numpy``, ``L`` -> ``course_lib.layers``); a name bound again otherwise is forgotten."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def bind(self, node: ast.stmt) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            self.names.update(import_targets(node))
        else:
            for name in bound_names(node):
                self.names.pop(name, None)

    def resolve(self, node: ast.expr) -> str | None:
        """The dotted name ``node`` spells, its root replaced by what that root imports
        (``sys.stdout.write``); None unless the root is an imported name."""
        parts = dotted(node)
        if not parts or parts[0] not in self.names:
            return None
        return ".".join([self.names[parts[0]], *parts[1:]])

    def course_lib_objects(self, node: ast.AST) -> set[str]:
        """The ``course_lib`` objects a statement names (the most specific:
        ``course_lib.layers.Relu``, not also ``course_lib.layers``)."""
        found: set[str] = set()
        local = local_names(node)
        for sub in ast.walk(node):
            if isinstance(sub, (ast.Import, ast.ImportFrom)):
                found |= set(import_targets(sub).values())
            elif isinstance(sub, (ast.Attribute, ast.Name)) and dotted(sub):
                if dotted(sub)[0] not in local and (name := self.resolve(sub)):
                    found.add(name)
        found = {o for o in found if o.split(".")[0] == "course_lib"}
        return {o for o in found if not any(p.startswith(o + ".") for p in found)}


def import_targets(node: ast.Import | ast.ImportFrom) -> dict[str, str]:
    """Local name -> the dotted name it imports (``import a.b`` binds ``a`` to ``a``)."""
    if isinstance(node, ast.Import):
        return {
            a.asname or a.name.split(".")[0]: a.name if a.asname else a.name.split(".")[0]
            for a in node.names
        }
    module = "." * node.level + (node.module or "")
    return {a.asname or a.name: f"{module}.{a.name}" for a in node.names}


def allowed(origin: str, allow: set[str]) -> bool:
    """Whether student code may use the course_lib object ``origin`` (the solution does)."""
    return origin == "course_lib" or any(
        origin == a or origin.startswith(a + ".") for a in (*allow, *ALWAYS_ALLOWED)
    )


def solution_allowlist(source_nb: nbformat.NotebookNode) -> set[str]:
    """course_lib objects the instructor's answers use (so students may use them too)."""
    imports = Imports()
    allow: set[str] = set()
    for _, cell, tree in code_cells(source_nb):
        for node in tree.body:
            if is_answer(cell):
                allow |= imports.course_lib_objects(node)
            imports.bind(node)
    return allow
