"""Generate the student notebooks (``chapters/``) from the instructor sources (``solutions/``).

The course root is the directory holding ``graders/nbgrader_config.py``. That file names the
source and release directories (``solutions`` and ``chapters``) and registers the assignments
(``c.CourseLib.assignments``). :func:`release` runs the real ``nbgrader generate_assignment``
(:func:`generate`, also the grader's way of recording assignments in its gradebook) into a
temporary course directory with a throw-away SQLite gradebook (a fresh clone needs none),
normalises every generated notebook so the output is byte-for-byte reproducible across runs and
machines, and then either compares the result with ``chapters/`` (``check=True``) or swaps it in.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from course_lib.grading.course import (
    CONFIG_RELATIVE_PATH,
    CourseConfig,
    ReleaseError,
    has_notebook,
    nbgrader_environment,
)

__all__ = [
    "ReleaseResult",
    "TreeDiff",
    "compare_trees",
    "generate",
    "generate_assignments",
    "normalize_notebook",
    "normalize_tree",
    "notebook_bytes",
    "release",
    "update_gradebook",
]

#: Notebook-level metadata kept in a released notebook (everything else is volatile or personal).
KEPT_NOTEBOOK_METADATA = ("kernelspec", "language_info", "title")
#: ``language_info`` fields that depend on the machine that last saved the notebook.
VOLATILE_LANGUAGE_INFO = ("version",)
#: Cell metadata that records when or how someone ran or viewed a cell.
VOLATILE_CELL_METADATA = (
    "execution",
    "ExecuteTime",
    "collapsed",
    "scrolled",
    "trusted",
    "heading_collapsed",
    "hidden",
)
#: Editor and interpreter litter, never released nor compared (with ``*.pyc``, ``*.pyo``).
IGNORED_NAMES = frozenset({".ipynb_checkpoints", "__pycache__", ".DS_Store", ".pytest_cache"})


@dataclass
class TreeDiff:
    """Differences between the expected release and a directory, as paths relative to its root."""

    stale: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    details: dict[str, list[str]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (self.stale or self.missing or self.extra)


@dataclass
class ReleaseResult:
    """Outcome of :func:`release`."""

    assignments: list[str]
    skipped: list[str]
    diff: TreeDiff
    written: bool


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------


def normalize_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` without outputs, execution counts and volatile metadata.

    Deterministic: the same source notebook gives the same result on every machine. nbgrader
    metadata (grade ids, points, checksums) is kept untouched, so the autograder still
    recognises every cell.
    """
    nb = nbformat.from_dict(copy.deepcopy(nb))
    kept = {k: nb.metadata[k] for k in KEPT_NOTEBOOK_METADATA if k in nb.metadata}
    if isinstance(kept.get("language_info"), dict):
        kept["language_info"] = {
            k: v for k, v in kept["language_info"].items() if k not in VOLATILE_LANGUAGE_INFO
        }
    nb.metadata = nbformat.from_dict(kept)

    with_ids = (nb.nbformat, nb.nbformat_minor) >= (4, 5)
    seen_ids: set[str] = set()
    for index, cell in enumerate(nb.cells):
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        if with_ids:
            cell_id = cell.get("id")
            if not cell_id or cell_id in seen_ids:
                cell_id = f"cell-{index:03d}"
            cell["id"] = cell_id
            seen_ids.add(cell_id)
        else:
            cell.pop("id", None)
    return nb


def notebook_bytes(nb: nbformat.NotebookNode) -> bytes:
    """Stable serialisation: nbformat's JSON layout (sorted keys, indent 1) plus a newline."""
    return (nbformat.writes(nb, version=nbformat.NO_CONVERT) + "\n").encode("utf-8")


def normalize_tree(directory: str | os.PathLike[str]) -> None:
    """Normalise every notebook below ``directory`` in place and drop ignored litter."""
    directory = Path(directory)
    for path in sorted(directory.rglob("*"), reverse=True):
        if _ignored_path(path.relative_to(directory)):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            continue
        if path.suffix == ".ipynb" and path.is_file():
            nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
            path.write_bytes(notebook_bytes(normalize_notebook(nb)))
            path.chmod(0o644)


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def generate(config: CourseConfig, root: Path, db_url: str, assignments: Sequence[str]) -> None:
    """``nbgrader generate_assignment`` (its Python API) for ``assignments``: the student
    versions in ``root/release/``, the assignments recorded in the gradebook ``db_url``.

    Only the course's configuration counts (no per-user Jupyter configuration is read), and
    nbgrader executes nothing: a release of the whole course takes a few seconds.
    """
    from nbgrader.apps import NbGraderAPI

    api = NbGraderAPI(config=config.nbgrader_config(root, db_url))
    with _with_nbgrader_environment():
        for assignment in assignments:
            outcome = api.generate_assignment(assignment, force=True, create=True)
            if not outcome.get("success"):
                raise ReleaseError(
                    f"nbgrader generate_assignment failed for {assignment}:\n"
                    f"{(outcome.get('log') or '')[-3000:]}\n{(outcome.get('error') or '')[-6000:]}"
                )


@contextlib.contextmanager
def _with_nbgrader_environment() -> Iterator[None]:
    """``os.environ`` is :func:`~course_lib.grading.course.nbgrader_environment` inside: the
    gradebook nbgrader creates runs the ``alembic`` executable it finds on PATH."""
    saved = dict(os.environ)
    os.environ.update(nbgrader_environment())
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def generate_assignments(
    config: CourseConfig,
    assignments: Sequence[str],
    destination: str | os.PathLike[str],
) -> None:
    """Generate the student versions of ``assignments`` (:func:`generate`, with a gradebook
    that is thrown away) and write them, normalised, to ``destination/<assignment>/``."""
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="course-lib-release-") as tmp:
        generate(config, Path(tmp), f"sqlite:///{tmp}/gradebook.db", assignments)
        normalize_tree(Path(tmp) / "release")
        for assignment in assignments:
            target = destination / assignment
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(Path(tmp) / "release" / assignment, target)


def update_gradebook(config: CourseConfig, assignments: Sequence[str] | None = None) -> list[str]:
    """Record the assignments (notebooks, graded cells, points, test code) in the course's
    own gradebook (``CourseDirectory.db_url`` of the config, or ``COURSE_LIB_GRADEBOOK_URL``).

    ``nbgrader autograde`` needs this. The generated notebooks themselves are discarded here;
    ``chapters/`` is only ever written by :func:`release`.
    """
    names = _select(config, assignments)
    with tempfile.TemporaryDirectory(prefix="course-lib-gradebook-") as tmp:
        generate(config, Path(tmp), config.db_url, names)
    return names


# --------------------------------------------------------------------------------------------
# Comparing and releasing
# --------------------------------------------------------------------------------------------


def compare_trees(
    expected: str | os.PathLike[str],
    actual: str | os.PathLike[str],
    *,
    only: Iterable[str] | None = None,
) -> TreeDiff:
    """Compare two release trees file by file (bytes), ignoring editor litter.

    ``only`` restricts the comparison to these top-level folders (assignments).
    """
    expected_files = _tree_files(Path(expected), only)
    actual_files = _tree_files(Path(actual), only)
    diff = TreeDiff()
    for rel in sorted(expected_files.keys() | actual_files.keys()):
        if rel not in actual_files:
            diff.missing.append(rel)
        elif rel not in expected_files:
            diff.extra.append(rel)
        else:
            want = expected_files[rel].read_bytes()
            have = actual_files[rel].read_bytes()
            if want != have:
                diff.stale.append(rel)
                diff.details[rel] = _short_diff(have, want, rel)
    return diff


def release(
    config: CourseConfig,
    *,
    assignments: Sequence[str] | None = None,
    check: bool = False,
) -> ReleaseResult:
    """Regenerate ``chapters/`` from ``solutions/`` (or only compare, with ``check=True``).

    ``assignments`` limits the release to these ids (default: every registered assignment
    whose source notebook exists). Writing swaps each assignment folder in with a rename, so
    readers never see a half-written chapter; a full release also removes folders of
    assignments that are no longer released.
    """
    unregistered = unregistered_sources(config)
    if unregistered:
        raise ReleaseError(
            f"{config.source_directory}/ holds assignments not registered in "
            f"{CONFIG_RELATIVE_PATH}: {', '.join(unregistered)}; add them to "
            "c.CourseLib.assignments"
        )
    names = _select(config, assignments)
    skipped = [a for a in config.assignments if a not in names and assignments is None]
    scope = None if assignments is None else names
    target = config.release_path

    with tempfile.TemporaryDirectory(prefix="course-lib-release-out-") as tmp:
        expected = Path(tmp) / "release"
        generate_assignments(config, names, expected)
        diff = compare_trees(expected, target, only=scope)
        written = False
        if not check and not diff.clean:
            _swap_in(expected, target, names, full=assignments is None)
            written = True
    return ReleaseResult(names, skipped, diff, written)


def unregistered_sources(config: CourseConfig) -> list[str]:
    """Folders of the source directory holding notebooks but missing from the registry."""
    source = config.source_path
    folders = source.iterdir() if source.is_dir() else []
    return sorted(
        p.name
        for p in folders
        if not ignored_name(p.name) and p.name not in config.assignments and has_notebook(p)
    )


def _select(config: CourseConfig, assignments: Sequence[str] | None) -> list[str]:
    if assignments is None:
        return config.available_assignments()
    names: list[str] = []
    for name in assignments:
        if name not in config.assignments:
            raise ReleaseError(
                f"unknown assignment {name!r}; registered: {', '.join(config.assignments)}"
            )
        if not has_notebook(config.source_path / name):
            raise ReleaseError(
                f"assignment {name!r} has no notebook in {config.source_directory}/{name}/ yet"
            )
        if name not in names:
            names.append(name)
    return names


def _swap_in(expected: Path, target: Path, names: Sequence[str], *, full: bool) -> None:
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".release-", dir=target))
    try:
        for name in names:
            new = staging / name
            shutil.copytree(expected / name, new)
            old = staging / f"{name}.old"
            current = target / name
            if current.exists():
                current.rename(old)
            new.rename(current)
        if full:
            keep = set(names)
            for entry in target.iterdir():
                if entry == staging or entry.name in keep:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _tree_files(root: Path, only: Iterable[str] | None) -> dict[str, Path]:
    if not root.is_dir():
        return {}
    allowed = None if only is None else set(only)
    files: dict[str, Path] = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if _ignored_path(rel) or rel.parts[0].startswith(".release-"):
            continue
        if allowed is not None and rel.parts[0] not in allowed:
            continue
        if path.is_file():
            files[rel.as_posix()] = path
    return files


def _short_diff(have: bytes, want: bytes, rel: str, limit: int = 12) -> list[str]:
    try:
        have_lines = have.decode("utf-8").splitlines()
        want_lines = want.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return ["(binary files differ)"]
    lines = list(
        difflib.unified_diff(
            have_lines, want_lines, f"committed/{rel}", f"generated/{rel}", n=1, lineterm=""
        )
    )
    if len(lines) > limit:
        lines = [*lines[:limit], f"... ({len(lines) - limit} more diff lines)"]
    return lines


def ignored_name(name: str) -> bool:
    return name in IGNORED_NAMES or name.endswith((".pyc", ".pyo"))


def _ignored_path(rel: Path) -> bool:
    return any(ignored_name(part) for part in rel.parts)
