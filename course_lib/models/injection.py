"""Building a model from other layer classes: the ``layers=`` keyword of the models.

A chapter trains a course model built from the student's own layers::

    net = SimpleConvNet(seed=0, layers={"Convolution": Convolution, "Pooling": Pooling})

``layers`` maps a kind of layer (the book's class name) to the class, or any callable, that
builds it with the book's arguments; kinds left out use :mod:`course_lib.layers`. A layer
built this way needs only the book's interface (``forward``, ``backward``, parameters as
attributes such as ``W`` and their gradients as ``dW``); it need not derive from
:class:`course_lib.layers.base.Layer`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["LayerFactories", "layer_factories", "with_param_names"]

#: kind of layer -> the callable that builds it (e.g. ``{"Affine": Affine}``)
LayerFactories = Mapping[str, Callable[..., Any]]


def layer_factories(
    layers: LayerFactories | None, defaults: Mapping[str, Callable[..., Any]], model: str
) -> dict[str, Callable[..., Any]]:
    """``defaults`` with the entries of ``layers`` in their place.

    Raises ``ValueError`` naming the kinds ``model`` builds when ``layers`` has another key,
    and ``TypeError`` when a value cannot be called.
    """
    chosen = dict(defaults)
    for kind, factory in (layers or {}).items():
        if kind not in defaults:
            raise ValueError(
                f"{model} has no layer kind {kind!r} to replace; its kinds are "
                f"{', '.join(sorted(defaults))}"
            )
        if not callable(factory):
            raise TypeError(f"layers[{kind!r}] must be a class or function, not {factory!r}")
        chosen[kind] = factory
    return chosen


def with_param_names(layer: Any, names: tuple[str, ...]) -> Any:
    """``layer``, with ``param_names`` set to ``names`` when its class does not define them.

    :meth:`course_lib.models.network.Network._collect_params` finds a layer's parameters
    through ``param_names``; a student's ``Affine`` has ``W`` and ``b`` but no such list.
    """
    if not hasattr(layer, "param_names"):
        missing = [name for name in names if not hasattr(layer, name)]
        if missing:
            raise AttributeError(
                f"{type(layer).__name__} has no attribute(s) {missing}: a layer of this kind "
                f"keeps its parameters as {', '.join(names)}"
            )
        layer.param_names = names
    return layer
