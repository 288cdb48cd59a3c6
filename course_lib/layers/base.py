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

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

__all__ = ["Layer", "MissingCacheError", "inference", "keeps_caches", "recording"]

#: None: no one asked (layers cache, as in the book); False: inference; True: recording.
_RECORDING: ContextVar[bool | None] = ContextVar("course_lib_recording", default=None)


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
