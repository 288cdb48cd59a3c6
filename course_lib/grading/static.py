"""What notebook code binds, names and does, read with ``ast`` (never run): the static pass
(docs/grading.md, "Tamper resistance" 3: an early warning, not the judge) and what the verdict
process needs of the instructor's notebook (:func:`verdict_init`)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from typing import Any

from nbformat import NotebookNode

from course_lib.grading.findings import Finding, Kind, to_python
from course_lib.grading.notebook import grade_id, is_answer, is_test

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
#: course_lib modules any student code may use.
ALWAYS_ALLOWED = ("course_lib.datasets",)

#: Statements the verdict process's setup is made of.
_SETUP = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def code_cells(nb: NotebookNode) -> Iterator[tuple[int, NotebookNode, ast.Module]]:
    """(index, cell, parsed source) of each code cell whose source parses."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            try:
                yield index, cell, ast.parse(to_python(cell.source))
            except (SyntaxError, ValueError):
                continue  # it fails when run; nothing to read


def import_targets(node: ast.Import | ast.ImportFrom) -> dict[str, str]:
    """Local name -> the dotted name it imports (``import a.b`` binds ``a`` to ``a``)."""
    if isinstance(node, ast.Import):
        return {
            a.asname or a.name.split(".")[0]: a.name if a.asname else a.name.split(".")[0]
            for a in node.names
        }
    module = "." * node.level + (node.module or "")
    return {a.asname or a.name: f"{module}.{a.name}" for a in node.names}


def bound_names(node: ast.stmt) -> set[str]:
    """Names a top-level statement binds (in the blocks of ``if``, ``for``, ``try`` ... too)."""
    if isinstance(node, _DEFS):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return set(import_targets(node))
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
        targets = [node.target]
    elif isinstance(node, (ast.With, ast.AsyncWith)):
        targets = [i.optional_vars for i in node.items if i.optional_vars is not None]
    names = {sub.id for t in targets for sub in ast.walk(t) if isinstance(sub, ast.Name)}
    blocks = (ast.If, ast.Try, ast.For, ast.While, ast.With)
    children = ast.iter_child_nodes(node) if isinstance(node, blocks) else ()
    return names.union(*(bound_names(c) for c in children if isinstance(c, ast.stmt)))


def loaded_names(node: ast.AST) -> set[str]:
    """Every name ``node`` reads (inside its functions too: a helper calls other helpers)."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def local_names(node: ast.AST) -> set[str]:
    """Names bound inside the function or class ``node`` (not ``global`` ones): a parameter
    called ``net`` is not the notebook's global ``net``."""
    if not isinstance(node, (*_DEFS, ast.Lambda)):
        return set()
    inner = [sub for sub in ast.walk(node) if sub is not node]
    local = {sub.arg for sub in inner if isinstance(sub, ast.arg)}
    local |= {s.id for s in inner if isinstance(s, ast.Name) and not isinstance(s.ctx, ast.Load)}
    local |= {s.name for s in inner if isinstance(s, (*_DEFS, ast.ExceptHandler)) and s.name}
    return local - {n for s in inner if isinstance(s, (ast.Global, ast.Nonlocal)) for n in s.names}


def dotted(node: ast.expr | None) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None for anything but names and attributes."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else None


def _under(name: str, prefixes: frozenset[str] | tuple[str, ...]) -> str | None:
    """The entry of ``prefixes`` that ``name`` is or lies below, if any."""
    return next((p for p in prefixes if name == p or name.startswith(p + ".")), None)


def bind_imports(imports: dict[str, str], node: ast.stmt) -> None:
    """Keep ``imports`` (name -> what it imports: ``np`` -> ``numpy``, ``L`` ->
    ``course_lib.layers``) up to date after statement ``node``; a name bound otherwise is
    forgotten."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        imports.update(import_targets(node))
    else:
        for name in bound_names(node):
            imports.pop(name, None)


def verdict_init(source_nb: NotebookNode) -> dict[str, Any]:
    """The verdict process's ``init`` command for the instructor's notebook: ``setup`` (the
    imports and helpers the test cells use; docs/grading.md, "Tamper resistance" 1),
    ``student_names`` (what answer cells bind), ``exercises`` (name -> grade_ids of the tests
    after its answer cell), ``allow`` (``course_lib`` objects the answers use, never counted as
    the reference) and ``handed_out`` (the notebook's text)."""
    allow, names, needed, current = set(), set(), set(), set()
    imports: dict[str, str] = {}
    exercises: dict[str, list[str]] = {}
    candidates: list[ast.stmt] = []
    for index, cell, tree in code_cells(source_nb):
        for node in tree.body:
            if is_answer(cell):
                allow |= _Scanner(node, imports, index, ()).objects
            bind_imports(imports, node)
        if is_answer(cell):
            current = {name for node in tree.body for name in bound_names(node)}
            names |= current
            continue
        candidates += [node for node in tree.body if isinstance(node, _SETUP)]
        if is_test(cell):
            needed |= loaded_names(tree)
            for name in current:
                exercises.setdefault(name, []).append(grade_id(cell))
    kept: list[ast.stmt] = []
    for node in reversed(candidates):  # a helper's own helpers come before it
        bound = bound_names(node)
        if "*" in bound or bound & needed:
            kept.append(node)
            needed |= loaded_names(node)
    return {
        "setup": [ast.unparse(node) for node in reversed(kept)],
        "student_names": sorted(names),
        "exercises": exercises,
        "allow": sorted(allow),
        "handed_out": "\n".join(c.source for c in source_nb.cells),
    }


class _Scanner(ast.NodeVisitor):
    """One top-level statement ``node`` of cell ``index``, read: its habits and reaches for the
    grader (``found``; a reach costs the tests ``after`` it) and the ``course_lib`` objects it
    names through the notebook's imports (``objects``, the most specific:
    ``course_lib.layers.Relu``, not also ``course_lib.layers``)."""

    def __init__(self, node: ast.stmt, imports: dict[str, str], index: int, after: tuple[str, ...]):
        self.node, self.imports, self.index, self.after = node, imports, index, after
        self.local = local_names(node)  # a parameter ``net`` is not the notebook's ``net``
        self.found: list[Finding] = []
        self.named: set[str] = set()
        self.visit(node)
        named = {o for o in self.named if o.split(".")[0] == "course_lib"}
        self.objects = {o for o in named if not any(p.startswith(o + ".") for p in named)}

    def resolve(self, node: ast.expr | None) -> str | None:
        """The dotted name ``node`` spells, its root replaced by what that root imports
        (``sys.stdout.write``); None unless the root is an imported name."""
        parts = dotted(node)
        if not parts or parts[0] not in self.imports:
            return None
        return ".".join([self.imports[parts[0]], *parts[1:]])

    def hit(self, node: ast.AST, message: str, kind: Kind = "habit") -> None:
        after = self.after if kind == "grader" else ()
        finding = Finding(kind, message, self.index, node.lineno, after)
        if finding not in self.found:
            self.found.append(finding)

    def reference(self, allow: list[str], own: set[str], answer: bool) -> list[Finding]:
        """The early reference warning when the statement binds an exercise ``own`` (one a test
        after its cell judges), or any name in an answer cell, to code naming ``course_lib``
        objects the solution does not use (``allow``)."""
        allowed = (*allow, *ALWAYS_ALLOWED)
        bad = sorted(o for o in self.objects if o != "course_lib" and not _under(o, allowed))
        bound = bound_names(self.node)
        name = min(bound & own or (own if answer and bound else set()), default=None)
        if not (bad and name):
            return []
        shown = ", ".join(f"`{o}`" for o in bad[:3])
        message = f"`{name}` uses the reference implementation ({shown}) instead of your own code"
        return [Finding("reference", message, self.index, self.node.lineno, exercise=name)]

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            module = node.module or ""
            names = [module, *(f"{module}.{a.name}" for a in node.names)]
        self.named |= set(import_targets(node).values())
        grader = [n for n in names if n.startswith(GRADER) and not _under(n, GRADER_ALLOWED)]
        if grader:
            self.hit(node, f"imports `{grader[0]}`, a module of the grader", "grader")
        elif noted := next((n for n in names if _under(n, MODULES | ATTRIBUTES)), None):
            self.hit(node, f"imports `{noted}`")

    visit_ImportFrom = visit_Import

    def visit_Attribute(self, node: ast.Attribute) -> None:
        spelled = ".".join(dotted(node) or [])
        real = self.resolve(node)
        if real and spelled.split(".")[0] not in self.local:
            self.named.add(real)
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
        first = args[0] if args else None
        if isinstance(func, ast.Attribute) and func.attr in ("run_line_magic", "run_cell_magic"):
            if isinstance(first, ast.Constant) and first.value in ALLOWED_MAGICS:
                return  # %matplotlib inline, %timeit ...: nothing to report
        name = func.id if isinstance(func, ast.Name) else None
        if name == "get_ipython":
            self.hit(node, "uses the IPython shell (`get_ipython()`, magics or `!` commands)")
        elif name in CALLS and not (
            name in ("setattr", "delattr") and dotted(first) in (["self"], ["cls"])
        ):
            self.hit(node, f"calls `{name}()`")
        root = ".".join(dotted(first) or []) if self.resolve(first) else None
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
        if node.id not in self.local and (real := self.resolve(node)):
            self.named.add(real)
        if node.id in NAMES:
            self.hit(node, f"uses `{node.id}`")


def scan_submission(source: NotebookNode, submitted: NotebookNode) -> list[Finding]:
    """The static pass's findings for one submitted notebook as it runs (test cells in place):
    the habits, reaches for the grader and early reference warnings of its student code."""
    init = verdict_init(source)
    given = {c.source.strip() for c in source.cells if c.cell_type == "code" and not is_answer(c)}
    test_ids = {grade_id(c) for c in source.cells if c.cell_type == "code" and is_test(c)}
    tests = [(i, grade_id(c)) for i, c in enumerate(submitted.cells) if grade_id(c) in test_ids]
    imports: dict[str, str] = {}
    findings: list[Finding] = []
    for index, cell, tree in code_cells(submitted):
        if grade_id(cell) in test_ids:
            continue  # nbgrader restores test cells from the gradebook
        after = tuple(g for i, g in tests if i > index)
        bound_here = {n for node in tree.body for n in bound_names(node)}
        own = {n for n in bound_here if set(init["exercises"].get(n, ())) & set(after)}
        answer = is_answer(cell)
        for node in tree.body:
            if answer or cell.source.strip() not in given:  # student code
                scanner = _Scanner(node, imports, index, after)
                findings += scanner.found + scanner.reference(init["allow"], own, answer)
            bind_imports(imports, node)
    return findings
