"""The course: its root, ``graders/nbgrader_config.py`` parsed once, and the grading limits.

:func:`load_course` reads the configuration once into a :class:`CourseConfig`, which release,
batch, tasks and the command line receive (nobody opens the file again). :class:`Limits` is
the one place the resource limits' defaults are written down (docs/grading.md, "Limits").
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Where the nbgrader configuration lives, relative to the course root.
CONFIG_RELATIVE_PATH = Path("graders") / "nbgrader_config.py"
#: The course id when the configuration leaves ``CourseDirectory.course_id`` empty
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
    """Resource limits of grading one submission; the configuration may set each as
    ``c.IsolatedExecute.<trait>`` (:data:`LIMIT_TRAITS`), ``course-lib grade`` per run."""

    cell_timeout: int = 120  #: seconds one cell may run before it is interrupted
    notebook_timeout: float = 900.0  #: seconds for a whole notebook
    memory: int = 4 * 1024**3  #: address-space limit of the kernel, bytes
    file_size: int = 512 * 1024**2  #: largest file the kernel may write, bytes
    max_output_chars: int = 100_000  #: output characters kept per cell
    #: seconds a task may run past ``notebook_timeout`` (per notebook) before it is killed
    kill_grace: float = 120.0

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

    def nbgrader_config(self, root: Path, db_url: str) -> Any:
        """A fresh traitlets ``Config``: the course's, for an nbgrader run in the course
        directory ``root`` (the grader's layout) with the gradebook ``db_url``."""
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


def has_notebook(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.glob("*.ipynb"))


def load_course(start: str | os.PathLike[str] | None = None) -> CourseConfig:
    """The course whose root is the nearest directory at or above ``start`` (default: cwd)
    holding ``graders/nbgrader_config.py``, its configuration read once the way nbgrader reads
    it (traitlets); ``ReleaseError`` when there is none or the grader cannot use it."""
    from traitlets.config.loader import PyFileConfigLoader

    here = Path(start if start is not None else os.getcwd()).resolve()
    root = next((d for d in (here, *here.parents) if (d / CONFIG_RELATIVE_PATH).is_file()), None)
    if root is None:
        raise ReleaseError(
            f"no {CONFIG_RELATIVE_PATH} found in {here} or any parent directory; "
            "run this command inside the course repository or pass --course-root"
        )
    config_path = root / CONFIG_RELATIVE_PATH
    try:
        cfg = PyFileConfigLoader(config_path.name, path=str(config_path.parent)).load_config()
    except Exception as exc:
        raise ReleaseError(f"could not load {config_path}: {exc}") from exc
    coursedir = cfg.get("CourseDirectory", {})
    folders = [str(coursedir.get(f"{s}_directory", s)) for s in ("source", "release")]
    if coursedir.get("root") and Path(coursedir["root"]).resolve() != root:
        raise ReleaseError(
            f"{config_path} sets CourseDirectory.root = {coursedir['root']!r}, "
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
    for name in folders:
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ReleaseError(f"{config_path}: {name!r} must be a folder inside the course root")
    execute = cfg.get("IsolatedExecute", {})
    limits = {limit: execute.get(trait) for limit, trait in LIMIT_TRAITS.items()}
    return CourseConfig(
        root,
        config_path,
        *folders,
        assignments=tuple(assignments),
        course_id=str(coursedir.get("course_id") or "") or DEFAULT_COURSE_ID,
        db_url=normalize_db_url(str(coursedir.get("db_url") or f"sqlite:///{root}/gradebook.db")),
        limits=Limits().override(**limits),
        nbgrader=cfg,
    )


def normalize_db_url(url: str) -> str:
    """``postgresql://...`` with the PostgreSQL driver that is installed: ``postgresql+psycopg2``
    where only psycopg2 is (SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
                return "postgresql+psycopg2://" + url[len(prefix) :]
            return "postgresql://" + url[len(prefix) :]
    return url


def nbgrader_environment() -> dict[str, str]:
    """``os.environ`` with this interpreter's scripts folder first on PATH (nbgrader's
    gradebook runs the ``alembic`` executable it finds there)."""
    path = os.environ.get("PATH")
    scripts = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": scripts + os.pathsep + path if path else scripts}
