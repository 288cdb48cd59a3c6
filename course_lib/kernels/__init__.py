"""Which implementation the layers run: the readable NumPy code or compiled Numba kernels.

The NumPy code in :mod:`course_lib.layers` is the reference: it is what the
chapters explain. Where NumPy cannot use both cores or needs several passes over
memory (ReLU, max pooling, the convolution's patch copy and input-gradient
scatter, the bias add, Adam), the layers can hand the work to small parallel
Numba kernels (:mod:`course_lib.kernels._numba`) that give the same numbers up to
float32 rounding. One switch chooses:

* the environment variable ``COURSE_LIB_KERNELS`` = ``numpy`` | ``numba`` | ``auto``
  (default ``auto``: Numba when it can be imported, else NumPy; NumPy under the
  grader, ``NBGRADER_EXECUTION`` set, where every submission is a fresh process and
  compiling would cost more than it saves), read once;
* :func:`use_kernels` (``course_lib.kernels.use_kernels("numpy")``) at run time.

Numba is imported only when a layer first takes the fast path (it costs about
0.5 s), so ``import course_lib`` stays quick. Compiled kernels are cached on
disk (``cache=True``); see :func:`cache_dir` for where.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

__all__ = ["BACKENDS", "active", "cache_dir", "compiled", "fast", "use_kernels"]

BACKENDS = ("numpy", "numba")
_ENV = "COURSE_LIB_KERNELS"

_choice: str | None = None  # "numpy" or "numba" once decided
_module: ModuleType | None = None


def _numba_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("numba") is not None


def _decide(name: str) -> str:
    name = name.strip().lower() or "auto"
    if name == "auto":
        if os.environ.get("NBGRADER_EXECUTION"):
            return "numpy"
        return "numba" if _numba_available() else "numpy"
    if name not in BACKENDS:
        raise ValueError(f"{_ENV}={name!r}: choose numpy, numba or auto")
    if name == "numba" and not _numba_available():
        raise ImportError(f"{_ENV}=numba, but numba is not installed (pip install numba)")
    return name


def use_kernels(name: str) -> str:
    """Choose the layers' implementation: ``"numpy"`` (reference), ``"numba"`` or ``"auto"``.

    Returns the implementation now in use. Takes effect at the next ``forward``.
    """
    global _choice
    _choice = _decide(name)
    return _choice


def active() -> str:
    """The implementation in use: ``"numpy"`` or ``"numba"``."""
    global _choice
    if _choice is None:
        _choice = _decide(os.environ.get(_ENV, "auto"))
    return _choice


def cache_dir() -> Path:
    """Where compiled kernels are cached, made writable before Numba is imported.

    ``NUMBA_CACHE_DIR`` when set and writable; else ``$XDG_CACHE_HOME/course_lib/numba``
    (``~/.cache/course_lib/numba``) when that can be created and written; else a
    folder in the system's temporary directory. Numba's own default (next to the
    package's source) fails when the package is installed read-only, so the
    variable is always set (to the folder returned) before Numba loads. A given
    ``NUMBA_CACHE_DIR`` that cannot be written is replaced, with a warning. Raises
    ``OSError`` when no folder can be written. ``course-lib warm-kernels`` fills
    this folder ahead (:mod:`course_lib.kernels.warm`).
    """
    given = os.environ.get("NUMBA_CACHE_DIR")
    if given and _writable(Path(given)):
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    candidates = [Path(base) / "course_lib" / "numba"]
    try:  # gettempdir raises when no temporary folder can be written
        user = os.getuid() if hasattr(os, "getuid") else "user"
        candidates.append(Path(tempfile.gettempdir()) / f"course_lib-numba-{user}")
    except OSError:
        pass
    for candidate in candidates:
        if not _writable(candidate):
            continue
        if given:
            import warnings

            warnings.warn(
                f"course_lib: NUMBA_CACHE_DIR={given} cannot be written; compiled kernels are "
                f"cached in {candidate} instead",
                stacklevel=2,
            )
        os.environ["NUMBA_CACHE_DIR"] = str(candidate)
        return candidate
    raise OSError("no writable folder for Numba's cache: set NUMBA_CACHE_DIR")


def _writable(folder: Path) -> bool:
    """Whether ``folder`` exists or can be made, and a file can be written in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        return False
    return True


def fast() -> ModuleType | None:
    """The compiled kernels module when the Numba path is active, else None (NumPy path).

    With no writable folder for the cache (see :func:`cache_dir`) the NumPy path is
    used, with a warning: compiling in every process would cost more than it saves.
    """
    global _choice
    if active() != "numba":
        return None
    try:
        return compiled()
    except OSError as exc:
        import warnings

        warnings.warn(f"course_lib: compiled kernels off, NumPy layers used ({exc})", stacklevel=2)
        _choice = "numpy"
        return None


def compiled() -> ModuleType:
    """The compiled kernels module whatever the switch (for a backward whose forward used it)."""
    global _module
    if _module is None:
        folder = cache_dir()
        if "numba" in sys.modules:  # imported before us: its configuration read the variable
            sys.modules["numba"].config.CACHE_DIR = str(folder)
        from course_lib import threads

        threads.prepare_numba()
        from course_lib.kernels import _numba

        _module = _numba
    return _module
