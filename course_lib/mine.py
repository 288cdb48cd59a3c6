"""Your own code from an earlier chapter: ``from course_lib.mine import Affine, Relu``.

A later chapter builds on what the student wrote in an earlier one. ``course_lib.mine`` takes a
class or function (any exercise name of :data:`course_lib.reference.CHAPTER_OF`) from the
student's own notebook of the chapter that taught it, and falls back to the course's reference
(:mod:`course_lib.reference`) with a visible one-line notice that says why::

    from course_lib.mine import Affine, Relu   # yours, from your chapter 2 notebook
    # course_lib.mine: Relu is the course's reference: your Relu (ch02_backpropagation) fails
    # the check ch02_backpropagation-relu-backward-tests: dx[0, 3]: yours 0, expected 1 ...

**Where your notebooks are.** The workspace is the folder ``course-lib lab`` copies the chapters
into, holding ``<chapter>/<chapter>.ipynb``. It is, in this order:

1. the environment variable ``COURSE_LIB_WORKSPACE`` (the same one ``course-lib lab`` reads);
2. the nearest folder, from the current directory (the running notebook's folder) upwards, that
   holds ``<chapter>/<chapter>.ipynb`` for a chapter of the course;
3. ``workspace/`` in the course repository (``course-lib lab``'s default).

**What runs.** Not the whole notebook (chapter 2 trains networks): in a fresh namespace, the
notebook's setup cell (its first code cell), then its answer cells (nbgrader solution cells) in
order up to the one that defines the name. Then the exercise's *visible* test cells (the test
cells after that answer cell that mention the name; hidden tests, if any, are left out) run
against it, with the few plain cells whose variables they use. Their output is kept out of
your notebook; matplotlib figures they open are closed.

**When you get the reference** (one notice line on stderr, saying which of these happened):
the notebook is missing; no answer cell defines the name; the setup cell or the name's answer
cell raises (e.g. ``NotImplementedError`` in a blank notebook); a visible check fails.

**Under the grader** (``NBGRADER_EXECUTION`` is set, as nbgrader and ``course-lib grade`` do, or
``COURSE_LIB_MINE=reference``) every name is the reference, with a notice: each chapter is
graded on its own, so a mistake in chapter 2 never costs points in chapter 4.

**Caching.** Each notebook is loaded once per process and chapter; when the file changes (its
modification time or size), it is loaded again at the next import. :func:`origin` says where an
object came from; :func:`clear_cache` forgets everything.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import linecache
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Origin", "clear_cache", "load", "notebook_path", "origin", "workspace"]

#: environment variable naming the workspace folder
WORKSPACE_ENV = "COURSE_LIB_WORKSPACE"
#: environment variable: ``reference`` makes every name the reference (as under the grader)
MODE_ENV = "COURSE_LIB_MINE"

_HIDDEN = re.compile(
    r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[^\n]*\n?", re.M | re.S
)


@dataclass(frozen=True)
class Origin:
    """Where ``course_lib.mine.<name>`` came from.

    ``student`` is True when the object is the student's own; otherwise ``reason`` says why the
    reference was given instead.
    """

    name: str
    chapter: str
    student: bool
    reason: str = ""
    notebook: Path | None = None

    def notice(self) -> str:
        """The one-line notice (for the reference) or confirmation (for the student's object)."""
        if self.student:
            return f"course_lib.mine: {self.name} is yours, from {self.notebook}"
        return f"course_lib.mine: {self.name} is the course's reference: {self.reason}"


# ----------------------------------------------------------------------------- the workspace


def _chapters() -> dict[str, str]:
    from course_lib.reference import CHAPTER_OF

    return dict(CHAPTER_OF)


def workspace(start: Path | None = None) -> Path | None:
    """The student's workspace folder (see the module docstring), or None when none is found."""
    env = os.environ.get(WORKSPACE_ENV, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    from course_lib.reference import CHAPTERS

    here = (start or Path.cwd()).resolve()
    for folder in [here, *here.parents]:
        if any((folder / ch / f"{ch}.ipynb").is_file() for ch in CHAPTERS.values()):
            return folder
    from course_lib.cli.lab import DEFAULT_WORKSPACE, find_course_root

    try:
        return find_course_root(here) / DEFAULT_WORKSPACE
    except FileNotFoundError:
        return None


def notebook_path(chapter: str, start: Path | None = None) -> Path | None:
    """``<workspace>/<chapter>/<chapter>.ipynb`` (it may not exist), or None without a workspace."""
    folder = workspace(start)
    return None if folder is None else folder / chapter / f"{chapter}.ipynb"


def _grader_mode() -> str | None:
    if "NBGRADER_EXECUTION" in os.environ:
        return "NBGRADER_EXECUTION is set"
    if os.environ.get(MODE_ENV, "").strip().lower() == "reference":
        return f"{MODE_ENV}=reference"
    return None


# ----------------------------------------------------------------------------- notebook cells


@dataclass
class _Cell:
    index: int  # position among all cells of the notebook
    source: str
    kind: str  # "setup", "answer", "test" or "plain"
    grade_id: str = ""

    def tree(self) -> ast.Module | None:
        try:
            return ast.parse(self.source)
        except SyntaxError:
            return None


def _python_source(source: str) -> str:
    """A cell's source without IPython magics / shell lines, and without hidden tests."""
    source = _HIDDEN.sub("", source)
    if source.lstrip().startswith("%%"):
        return ""
    return "\n".join(
        "pass" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
    )


def _read_cells(path: Path) -> list[_Cell]:
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    cells: list[_Cell] = []
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution"):
            kind = "answer"
        elif meta.get("grade"):
            kind = "test"
        else:
            kind = "plain"
        cells.append(_Cell(index, _python_source(source), kind, meta.get("grade_id", "")))
    if cells and cells[0].kind == "plain":
        cells[0].kind = "setup"
    return cells


def _top_level_names(tree: ast.Module) -> set[str]:
    """Names a module body binds at top level (def, class, assignment, import)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def _free_names(tree: ast.Module) -> set[str]:
    """Names a cell reads that it does not bind itself (roughly: globals it needs)."""
    bound, loaded = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return loaded - bound


# ----------------------------------------------------------------------------- running cells


class _CellError(Exception):
    def __init__(self, cell: _Cell, exc: BaseException) -> None:
        super().__init__(f"{type(exc).__name__}: {exc}")
        self.cell, self.exc = cell, exc

    def summary(self) -> str:
        first = str(self.exc).strip().splitlines()
        text = f"{type(self.exc).__name__}: {first[0]}" if first else type(self.exc).__name__
        return text if len(text) <= 200 else text[:197] + "..."


@contextlib.contextmanager
def _quietly() -> Iterator[None]:
    """Keep the cells' printed output and figures out of the caller's notebook."""
    plt = sys.modules.get("matplotlib.pyplot")
    before = set(plt.get_fignums()) if plt is not None else set()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            yield
        finally:
            plt = sys.modules.get("matplotlib.pyplot")
            if plt is not None:
                for num in set(plt.get_fignums()) - before:
                    plt.close(num)


def _run(cell: _Cell, path: Path, namespace: dict[str, Any]) -> None:
    """Execute one cell in ``namespace``; its tracebacks name the notebook and the cell."""
    filename = f"{path} [cell {cell.index}]"
    linecache.cache[filename] = (
        len(cell.source),
        None,
        cell.source.splitlines(keepends=True),
        filename,
    )
    try:
        code = compile(cell.source, filename, "exec")
        with _quietly():
            exec(code, namespace)
    except (Exception, SystemExit) as exc:  # the student's code may raise anything
        raise _CellError(cell, exc) from exc


@dataclass
class _Notebook:
    """One chapter notebook being loaded: its cells, namespace and results so far."""

    path: Path
    stamp: tuple[int, int]
    cells: list[_Cell]
    namespace: dict[str, Any] = field(default_factory=lambda: {"__name__": "__main__"})
    next_cell: int = 0  # position in ``cells`` of the next cell to run
    setup_error: str | None = None
    cell_errors: dict[int, _CellError] = field(default_factory=dict)
    results: dict[str, tuple[Any, Origin]] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path, stamp: tuple[int, int]) -> _Notebook:
        nb = cls(path, stamp, _read_cells(path))
        nb.namespace["__file__"] = str(path)
        for cell in nb.cells:
            if cell.kind == "setup":
                try:
                    _run(cell, path, nb.namespace)
                except _CellError as err:
                    nb.setup_error = err.summary()
                break
        return nb

    def defining_cell(self, name: str) -> int | None:
        """Position of the last answer cell that binds ``name`` at top level."""
        found = None
        for pos, cell in enumerate(self.cells):
            tree = cell.tree() if cell.kind == "answer" else None
            if tree is not None and name in _top_level_names(tree):
                found = pos
        return found

    def run_answers_through(self, pos: int) -> None:
        """Run the answer cells not run yet, up to and including position ``pos``."""
        while self.next_cell <= pos:
            cell = self.cells[self.next_cell]
            self.next_cell += 1
            if cell.kind == "answer":
                try:
                    for helper in self.helpers_for(cell, self.namespace):
                        _run(helper, self.path, self.namespace)
                    _run(cell, self.path, self.namespace)
                except _CellError as err:
                    self.cell_errors[cell.index] = err

    def visible_tests(self, name: str, pos: int) -> list[_Cell]:
        """The test cells after answer cell ``pos`` (before the next one) that mention ``name``."""
        span: list[_Cell] = []
        for cell in self.cells[pos + 1 :]:
            if cell.kind == "answer":
                break
            if cell.kind == "test":
                span.append(cell)
        mentioning = [c for c in span if (t := c.tree()) is not None and name in _free_names(t)]
        return mentioning or span

    def helpers_for(self, cell: _Cell, namespace: dict[str, Any]) -> list[_Cell]:
        """Earlier non-answer cells binding names that ``cell`` (or they) read, not yet bound.

        E.g. a helper function the chapter gives in a plain cell and an answer calls, or the
        data a forward test cell made that the backward test cell reuses.
        """
        import builtins

        needed: list[_Cell] = []
        tree = cell.tree()
        missing = (_free_names(tree) if tree else set()) - set(namespace) - set(dir(builtins))
        earlier = [c for c in self.cells if c.index < cell.index and c.kind in ("plain", "test")]
        while missing:
            name = missing.pop()
            provider = next(
                (c for c in reversed(earlier) if (t := c.tree()) and name in _top_level_names(t)),
                None,
            )
            if provider is None or provider in needed:
                continue
            needed.append(provider)
            t = provider.tree()
            missing |= (_free_names(t) if t else set()) - set(namespace) - set(dir(builtins))
            missing -= {n for c in needed if (t2 := c.tree()) for n in _top_level_names(t2)}
        return sorted(needed, key=lambda c: c.index)

    def resolve(self, name: str, chapter: str) -> tuple[Any, Origin]:
        """The student's ``name``, or ``(None, Origin)`` saying why it cannot be used."""
        if name in self.results:
            return self.results[name]
        where = f"your {name} ({self.path})"
        if self.setup_error is not None:
            return self._done(
                name, chapter, False, f"{self.path}: the setup cell raises {self.setup_error}"
            )
        pos = self.defining_cell(name)
        if pos is None:
            return self._done(
                name, chapter, False, f"{self.path} has no answer cell defining {name}"
            )
        self.run_answers_through(pos)
        err = self.cell_errors.get(self.cells[pos].index)
        if err is not None:
            if isinstance(err.exc, NotImplementedError):
                return self._done(name, chapter, False, f"{where} is not written yet")
            return self._done(name, chapter, False, f"{where} raises {err.summary()}")
        if name not in self.namespace:
            return self._done(name, chapter, False, f"{where}: its cell does not define it")
        obj = self.namespace[name]
        scratch = dict(self.namespace)  # the checks' own variables stay out of the namespace
        for test in self.visible_tests(name, pos):
            try:
                for helper in self.helpers_for(test, scratch):
                    _run(helper, self.path, scratch)
                _run(test, self.path, scratch)
            except _CellError as err:
                check = test.grade_id or f"in cell {test.index}"
                if err.cell is not test:
                    check += f" (its setup, cell {err.cell.index})"
                if isinstance(err.exc, NotImplementedError):
                    return self._done(
                        name,
                        chapter,
                        False,
                        f"{where} is not written yet (NotImplementedError in the check {check})",
                    )
                return self._done(
                    name, chapter, False, f"{where} fails the check {check}: {err.summary()}"
                )
        return self._done(name, chapter, True, "", obj)

    def _done(
        self, name: str, chapter: str, student: bool, reason: str, obj: Any = None
    ) -> tuple[Any, Origin]:
        result = (obj, Origin(name, chapter, student, reason, self.path))
        self.results[name] = result
        return result


# ----------------------------------------------------------------------------- the public API

_cache: dict[Path, _Notebook] = {}
_loading: set[tuple[Path, str]] = set()
_origins: dict[str, Origin] = {}


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _reference(name: str, why: Origin) -> Any:
    from course_lib.reference import reference_for

    obj = reference_for(name)
    _origins[name] = why
    print(why.notice(), file=sys.stderr, flush=True)
    return obj


def load(name: str) -> Any:
    """The student's own ``name`` from their workspace notebook, else the reference (notice).

    ``name`` is an exercise of :data:`course_lib.reference.CHAPTER_OF` (``"Affine"``,
    ``"center_of_mass"``, ...); ``KeyError`` for another name.
    """
    chapters = _chapters()
    if name not in chapters:
        from course_lib.reference import reference_for

        reference_for(name)  # raises the KeyError that lists the exercises
    chapter = chapters[name]
    grader = _grader_mode()
    if grader is not None:
        return _reference(
            name,
            Origin(
                name,
                chapter,
                False,
                f"{grader}: under the grader every chapter is graded on its own",
            ),
        )
    path = notebook_path(chapter)
    stamp = _stamp(path) if path is not None else None
    if path is None or stamp is None:
        where = path if path is not None else f"a workspace (set {WORKSPACE_ENV})"
        return _reference(
            name, Origin(name, chapter, False, f"no notebook {where} for {name}", path)
        )
    key = (path, name)
    if key in _loading:
        return _reference(
            name, Origin(name, chapter, False, f"{path} needs {name} while defining it", path)
        )
    nb = _cache.get(path)
    if nb is None or nb.stamp != stamp:
        nb = _cache[path] = _Notebook.open(path, stamp)
    _loading.add(key)
    try:
        obj, why = nb.resolve(name, chapter)
    finally:
        _loading.discard(key)
    if not why.student:
        return _reference(name, why)
    _origins[name] = why
    return obj


def origin(name: str) -> Origin | None:
    """Where the last :func:`load` of ``name`` came from (None if it was never loaded)."""
    return _origins.get(name)


def clear_cache() -> None:
    """Forget every loaded notebook (the next import loads them again)."""
    _cache.clear()
    _origins.clear()


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    if name not in _chapters():
        raise AttributeError(
            f"course_lib.mine has no {name!r}: it gives the exercises of "
            "course_lib.reference.CHAPTER_OF"
        )
    return load(name)
