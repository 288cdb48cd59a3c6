"""Where the data lives: argument, then ``$COURSE_LIB_DATA``, then a per-user cache."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["ENV_VAR", "get_data_dir", "user_cache_dir"]

#: Environment variable naming the data directory (it holds ``mnist/``, ``fashion-mnist/``).
ENV_VAR = "COURSE_LIB_DATA"


def user_cache_dir() -> Path:
    """The per-user cache directory of course_lib.

    ``$XDG_CACHE_HOME/course_lib`` (default ``~/.cache/course_lib``) on Linux and
    other Unix systems, ``~/Library/Caches/course_lib`` on macOS and
    ``%LOCALAPPDATA%\\course_lib\\Cache`` on Windows.
    """
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "course_lib"
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        base = Path(local) if local else Path.home() / "AppData" / "Local"
        return base / "course_lib" / "Cache"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says relative paths are invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "course_lib"


def get_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data directory to use, as an absolute path (it may not exist yet).

    Order: the ``data_dir`` argument, then the environment variable
    ``COURSE_LIB_DATA`` (if set and non-empty), then :func:`user_cache_dir`.
    Each dataset lives in a subdirectory: ``<data dir>/mnist/``, ``<data dir>/fashion-mnist/``.
    """
    if data_dir is not None:
        if not isinstance(data_dir, (str, os.PathLike)):
            raise TypeError(f"data_dir must be a path or None, got {type(data_dir).__name__}")
        if os.fspath(data_dir) == "":
            raise ValueError("data_dir must not be empty (use None for the default)")
        return Path(data_dir).expanduser().absolute()
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser().absolute()
    return user_cache_dir()
