"""The course: its root, its nbgrader configuration parsed ONCE, and the grading limits.

``graders/nbgrader_config.py`` below the course root is read once, by :func:`load_course`, into
a :class:`CourseConfig`; everything else (release, batch, tasks, worker, the command line)
receives that object and never opens the file again. The resource limits of a grading run and
their defaults live in :class:`Limits` only: the command line's defaults, the worker's
configuration of :class:`course_lib.grading.execute.IsolatedExecute` and the trait defaults of
that preprocessor all come from here.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.util
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG_RELATIVE_PATH",
    "DEFAULT_COURSE_ID",
    "DEFAULT_KERNEL_USER",
    "LIMIT_TRAITS",
    "CourseConfig",
    "Limits",
    "ReleaseError",
    "find_course_root",
    "load_course",
    "load_course_config",
    "nbgrader_environment",
    "normalize_db_url",
    "with_nbgrader_environment",
]

#: Where the nbgrader configuration lives, relative to the course root.
CONFIG_RELATIVE_PATH = Path("graders") / "nbgrader_config.py"
#: The course id used when the configuration leaves ``CourseDirectory.course_id`` empty
#: (nbgrader then omits the course row, which PostgreSQL's foreign keys refuse).
DEFAULT_COURSE_ID = "course_lib"
#: The account a student's kernel runs as when the grader runs as root.
DEFAULT_KERNEL_USER = "nobody"


class ReleaseError(RuntimeError):
    """The course cannot be used (bad configuration, nbgrader failed, ...)."""


#: The ``IsolatedExecute`` trait of each limit (``kill_grace`` belongs to the batch only).
LIMIT_TRAITS = {
    "cell_timeout": "timeout",
    "notebook_timeout": "notebook_timeout",
    "memory": "memory_limit",
    "file_size": "file_size_limit",
    "max_output_chars": "max_output_chars",
}


@dataclass(frozen=True)
class Limits:
    """Resource limits of grading one submission: the one place their defaults live.

    The course configuration may set any of them as ``c.IsolatedExecute.<trait>`` (the trait
    names are in :data:`LIMIT_TRAITS`); ``course-lib grade`` options override them per run.
    """

    cell_timeout: int = 120  #: seconds one cell may run before it is interrupted
    notebook_timeout: float = 900.0  #: seconds for a whole notebook
    memory: int = 4 * 1024**3  #: address-space limit of the kernel, bytes
    file_size: int = 512 * 1024**2  #: largest file the kernel may write, bytes
    max_output_chars: int = 100_000  #: output characters kept per cell
    #: seconds a task may run past ``notebook_timeout`` (per notebook) before it is killed
    kill_grace: float = 120.0

    def task_seconds(self, notebooks: int) -> float:
        """Wall-clock seconds after which a task grading ``notebooks`` notebooks is killed."""
        return self.notebook_timeout * max(1, notebooks) + self.kill_grace

    def override(self, **values: Any) -> Limits:
        """A copy with the values that are not None replaced (command-line options)."""
        return dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})


@dataclass(frozen=True)
class CourseConfig:
    """``graders/nbgrader_config.py`` of one course, parsed once (see :func:`load_course`)."""

    root: Path
    config_path: Path
    source_directory: str
    release_directory: str
    assignments: tuple[str, ...]
    #: the course id nbgrader records assignments under (never empty)
    course_id: str
    #: the gradebook the configuration names, with an installed PostgreSQL driver
    db_url: str
    limits: Limits
    #: the parsed traitlets ``Config`` (merged into every nbgrader run of the grader)
    nbgrader: Any = field(default=None, compare=False, repr=False)

    @property
    def source_path(self) -> Path:
        return self.root / self.source_directory

    @property
    def release_path(self) -> Path:
        return self.root / self.release_directory

    def available_assignments(self) -> list[str]:
        """Registered assignments whose source notebook exists, in registration order."""
        return [a for a in self.assignments if has_notebook(self.source_path / a)]

    def notebooks(self, assignment: str) -> list[str]:
        """Names (without ``.ipynb``) of the source notebooks of ``assignment``."""
        return sorted(p.stem for p in (self.source_path / assignment).glob("*.ipynb"))

    def unregistered_sources(self) -> list[str]:
        """Folders of the source directory holding notebooks but missing from the registry."""
        if not self.source_path.is_dir():
            return []
        return sorted(
            p.name
            for p in self.source_path.iterdir()
            if p.is_dir()
            and not ignored_name(p.name)
            and p.name not in self.assignments
            and has_notebook(p)
        )

    def nbgrader_config(self, root: Path, db_url: str) -> Any:
        """A fresh traitlets ``Config`` for an nbgrader run in course directory ``root``.

        The course's own configuration, with the directory layout of the grader's private
        course folders and the gradebook ``db_url``.
        """
        from traitlets.config import Config

        c = Config()
        if self.nbgrader is not None:
            c.merge(copy.deepcopy(self.nbgrader))
        c.CourseDirectory.root = str(root)
        c.CourseDirectory.source_directory = str(self.source_path)
        for step in ("release", "submitted", "autograded", "feedback"):
            c.CourseDirectory[f"{step}_directory"] = step
        c.CourseDirectory.db_url = db_url
        c.CourseDirectory.course_id = self.course_id
        return c


IGNORED_NAMES = frozenset({".ipynb_checkpoints", "__pycache__", ".DS_Store", ".pytest_cache"})
IGNORED_SUFFIXES = (".pyc", ".pyo")


def ignored_name(name: str) -> bool:
    """Editor and interpreter litter, never released nor compared."""
    return name in IGNORED_NAMES or name.endswith(IGNORED_SUFFIXES)


def has_notebook(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.glob("*.ipynb"))


def find_course_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: cwd) holding the nbgrader config.

    Raises ``ReleaseError`` when there is none.
    """
    here = Path(start if start is not None else os.getcwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / CONFIG_RELATIVE_PATH).is_file():
            return candidate
    raise ReleaseError(
        f"no {CONFIG_RELATIVE_PATH} found in {here} or any parent directory; "
        "run this command inside the course repository or pass --course-root"
    )


def load_course(start: str | os.PathLike[str] | None = None) -> CourseConfig:
    """The course whose root is at or above ``start`` (default: cwd), its config parsed once."""
    return load_course_config(find_course_root(start))


def load_course_config(root: str | os.PathLike[str]) -> CourseConfig:
    """Read ``<root>/graders/nbgrader_config.py`` the way nbgrader does (traitlets)."""
    from traitlets.config.loader import PyFileConfigLoader

    root = Path(root).resolve()
    config_path = root / CONFIG_RELATIVE_PATH
    if not config_path.is_file():
        raise ReleaseError(f"{config_path} does not exist: {root} is not a course root")
    try:
        cfg = PyFileConfigLoader(config_path.name, path=str(config_path.parent)).load_config()
    except Exception as exc:
        raise ReleaseError(f"could not load {config_path}: {exc}") from exc

    coursedir = cfg.get("CourseDirectory", {})
    source = str(coursedir.get("source_directory", "source"))
    release_dir = str(coursedir.get("release_directory", "release"))
    configured_root = coursedir.get("root")
    if configured_root and Path(configured_root).resolve() != root:
        raise ReleaseError(
            f"{config_path} sets CourseDirectory.root = {configured_root!r}, "
            f"but the course root is {root}"
        )
    assignments = cfg.get("CourseLib", {}).get("assignments", [])
    if not isinstance(assignments, list | tuple) or not all(
        isinstance(a, str) and a for a in assignments
    ):
        raise ReleaseError(
            f"{config_path}: c.CourseLib.assignments must be a list of assignment ids, "
            f"got {assignments!r}"
        )
    for name in (source, release_dir):
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ReleaseError(f"{config_path}: {name!r} must be a folder inside the course root")
    execute = cfg.get("IsolatedExecute", {})
    limits = Limits().override(
        **{limit: execute.get(trait) for limit, trait in LIMIT_TRAITS.items()}
    )
    db_url = coursedir.get("db_url") or "sqlite:///" + str(root / "gradebook.db")
    return CourseConfig(
        root=root,
        config_path=config_path,
        source_directory=source,
        release_directory=release_dir,
        assignments=tuple(assignments),
        course_id=str(coursedir.get("course_id") or "") or DEFAULT_COURSE_ID,
        db_url=normalize_db_url(str(db_url)),
        limits=limits,
        nbgrader=cfg,
    )


def normalize_db_url(url: str) -> str:
    """``postgresql://...`` with the PostgreSQL driver that is installed.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3; where only ``psycopg2`` is
    installed (the ``test`` extra's ``psycopg2-binary``) the URL is rewritten to
    ``postgresql+psycopg2://``. Other URLs are returned unchanged.
    """
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
                return "postgresql+psycopg2://" + url[len(prefix) :]
            return "postgresql://" + url[len(prefix) :]
    return url


@contextlib.contextmanager
def with_nbgrader_environment() -> Iterator[None]:
    """``os.environ`` is :func:`nbgrader_environment` inside (for nbgrader's Python API)."""
    saved = dict(os.environ)
    os.environ.update(nbgrader_environment())
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def nbgrader_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for an nbgrader subprocess: ``base`` (default ``os.environ``) with this
    interpreter's scripts folder first on PATH (nbgrader's gradebook runs the ``alembic``
    executable it finds there)."""
    env = dict(os.environ if base is None else base)
    scripts = str(Path(sys.executable).parent)
    env["PATH"] = scripts + os.pathsep + env.get("PATH", "") if env.get("PATH") else scripts
    return env
