"""What every layer shares: its parameters and their gradients as dicts."""

from __future__ import annotations

import numpy as np


class Layer:
    """Base of the layers: ``forward`` caches what ``backward`` needs.

    A layer with parameters lists their attribute names in ``param_names``
    (e.g. ``("W", "b")``); after ``backward`` the gradient of each is stored on
    the layer under the same name prefixed by ``d`` (``dW``, ``db``), as in the book.
    """

    param_names: tuple[str, ...] = ()

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The parameters by name, e.g. ``{"W": W, "b": b}`` (the arrays themselves, not copies)."""
        return {name: getattr(self, name) for name in self.param_names}

    @property
    def grads(self) -> dict[str, np.ndarray | None]:
        """The gradients of the parameters after ``backward``, e.g. ``{"W": dW, "b": db}``."""
        return {name: getattr(self, "d" + name, None) for name in self.param_names}

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={tuple(np.shape(v))}" for k, v in self.params.items())
        return f"{type(self).__name__}({shapes})"
