"""What every layer shares: its parameters and their gradients as dicts, and the cache switch.

A layer's ``forward`` normally keeps what ``backward`` will need (the book's
design). Inference needs none of it, so :class:`~course_lib.models.Network`'s
``predict`` runs inside :func:`inference`: the layers of ``course_lib`` then
keep no caches (and drop any from an earlier pass), which is most of the memory
of a convolutional network's forward pass. ``Network.loss`` runs inside
:func:`recording`, so ``loss`` followed by ``backward`` works as in the book
even though ``loss`` calls ``predict``. Outside both, layers keep their caches.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

__all__ = [
    "Layer",
    "MissingCacheError",
    "image_blocks",
    "inference",
    "keeps_caches",
    "recording",
    "reused",
]

#: None: no one asked (layers cache, as in the book); False: inference; True: recording.
_RECORDING: ContextVar[bool | None] = ContextVar("course_lib_recording", default=None)

#: glibc malloc: arrays up to this size come from the heap, and up to TRIM_THRESHOLD of freed
#: memory stays with the process (see keep_freed_memory).
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20


def keep_freed_memory() -> bool:
    """Let glibc reuse freed arrays instead of returning them to the OS at every ``free``.

    Every layer allocates fresh outputs and gradients each step (6.8 MB each for
    SimpleConvNet's first activations). glibc serves an allocation that large with
    its own ``mmap`` and unmaps it when freed (its adaptive threshold never passes
    an allocation of the very size just freed), so each step touched new pages:
    about 1,700 page faults, each zero-filling 4 KB, for every such array.
    Measured: SimpleConvNet step 22.6 -> 15.8 ms of CPU (1 thread, compiled path),
    NumPy path 21.2 -> 20.0 ms (docs/performance.md). Arrays up to
    :data:`MMAP_THRESHOLD` now come from the heap; up to :data:`TRIM_THRESHOLD` of
    freed heap stays with the process. Nothing changes when ``MALLOC_MMAP_THRESHOLD_``
    or ``MALLOC_TRIM_THRESHOLD_`` is set (glibc reads those itself) or outside glibc.
    Returns whether the setting was applied. Called once, when the layers load.
    """
    if not sys.platform.startswith("linux") or any(
        k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    ):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    return bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and bool(
        mallopt(m_trim_threshold, TRIM_THRESHOLD)
    )


keep_freed_memory()


def image_blocks(N: int, image_bytes: int, block_bytes: int) -> list[tuple[int, int]]:
    """(first image, images) of each block of a batch of N: about ``block_bytes`` each.

    ``image_bytes`` is what one image takes in the block's working buffers; a block
    holds at least one image. The convolution's compiled paths work a block at a time
    so that its buffers stay in the CPU cache.
    """
    per_block = max(1, block_bytes // image_bytes)
    return [(start, min(per_block, N - start)) for start in range(0, N, per_block)]


def reused(buffer: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``buffer`` when it has this shape, else a new empty array (one working buffer per thread)."""
    return buffer if buffer is not None and buffer.shape == shape else np.empty(shape, dtype=dtype)


def keeps_caches() -> bool:
    """Whether a layer's ``forward`` should keep what ``backward`` needs right now."""
    return _RECORDING.get() is not False


@contextmanager
def inference(*, unless_recording: bool = False) -> Iterator[None]:
    """Layers run forward only: no caches kept (``backward`` is then impossible).

    ``unless_recording=True`` leaves an enclosing :func:`recording` in force (how
    ``Network.predict`` is called from ``Network.loss``).
    """
    if unless_recording and _RECORDING.get() is True:
        yield
        return
    token = _RECORDING.set(False)
    try:
        yield
    finally:
        _RECORDING.reset(token)


@contextmanager
def recording() -> Iterator[None]:
    """Layers keep their caches for ``backward``, even inside a ``predict``."""
    token = _RECORDING.set(True)
    try:
        yield
    finally:
        _RECORDING.reset(token)


class MissingCacheError(RuntimeError):
    """``backward`` called after a forward pass that kept no caches (inference)."""


class Layer:
    """Base of the layers: ``forward`` caches what ``backward`` needs.

    A layer with parameters lists their attribute names in ``param_names``
    (e.g. ``("W", "b")``); after ``backward`` the gradient of each is stored on
    the layer under the same name prefixed by ``d`` (``dW``, ``db``), as in the book.
    ``cache_names`` lists the attributes ``forward`` keeps for ``backward``.
    """

    param_names: tuple[str, ...] = ()
    cache_names: tuple[str, ...] = ()

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The parameters by name, e.g. ``{"W": W, "b": b}`` (the arrays themselves, not copies)."""
        return {name: getattr(self, name) for name in self.param_names}

    @property
    def grads(self) -> dict[str, np.ndarray | None]:
        """The gradients of the parameters after ``backward``, e.g. ``{"W": dW, "b": db}``."""
        return {name: getattr(self, "d" + name, None) for name in self.param_names}

    def clear_caches(self) -> None:
        """Forget what the last ``forward`` kept for ``backward`` (frees its memory)."""
        for name in self.cache_names:
            setattr(self, name, None)

    def _cache(self, **values: object) -> None:
        """Keep ``values`` for ``backward`` as attributes, or None when running inference."""
        keep = keeps_caches()
        for name, value in values.items():
            setattr(self, name, value if keep else None)

    def _require_cache(self, value: object) -> None:
        if value is None:
            raise MissingCacheError(
                f"{type(self).__name__}.backward needs the caches of a training forward pass, "
                "but the last forward kept none (net.predict runs without caches): call "
                "net.loss(x, t) (or layer.forward outside predict) before backward"
            )

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={tuple(np.shape(v))}" for k, v in self.params.items())
        return f"{type(self).__name__}({shapes})"
