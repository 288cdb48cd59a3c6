"""Reference implementations of the exercises of ch02 (see :mod:`course_lib.reference`).

The layers come from :mod:`course_lib.layers`; the exercises that exist only in the chapter
(the shopping-example nodes, ``TwoLayerNet.gradient``, the two checks a practitioner runs before
training) are defined here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from course_lib.gradcheck import CHECK_H, numerical_gradient, rel_error
from course_lib.layers import Affine, Relu, Sigmoid, SoftmaxWithLoss
from course_lib.models import TwoLayerNet as _CourseTwoLayerNet

__all__ = [
    "EXERCISES",
    "AddLayer",
    "MulLayer",
    "TwoLayerNet",
    "gradient_check",
    "initial_loss_check",
]


class MulLayer:
    """z = x * y, element-wise (numbers or arrays of one shape)."""

    def __init__(self) -> None:
        self.x: Any = None
        self.y: Any = None

    def forward(self, x: Any, y: Any) -> Any:
        self.x, self.y = x, y
        return x * y

    def backward(self, dout: Any) -> tuple[Any, Any]:
        """dout: dL/dz (shape of z) -> (dL/dx, dL/dy): each input gets dout times the other."""
        return dout * self.y, dout * self.x


class AddLayer:
    """z = x + y, element-wise (numbers or arrays of one shape)."""

    def forward(self, x: Any, y: Any) -> Any:
        return x + y

    def backward(self, dout: Any) -> tuple[Any, Any]:
        """dout: dL/dz -> (dL/dx, dL/dy), both dout (a sum passes the gradient on unchanged)."""
        return dout, dout


class TwoLayerNet(_CourseTwoLayerNet):
    """The chapter's Affine - Relu - Affine - SoftmaxWithLoss network, gradient by backprop.

    :meth:`gradient` only uses ``loss``, ``last_layer`` and ``layers`` (``"Affine1"``,
    ``"Affine2"``, ... holding ``dW`` / ``db`` after ``backward``), so a stuck student can give
    their own class this method: ``TwoLayerNet.gradient = course_lib.reference.TwoLayerNet.gradient``.
    """

    def gradient(self, x: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        """Gradients by backpropagation: {"W1": (D, H), "b1": (H,), "W2": (H, C), "b2": (C,)}."""
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        grads = {}
        for name, layer in self.layers.items():
            if name.startswith("Affine"):
                k = name.removeprefix("Affine")
                grads[f"W{k}"], grads[f"b{k}"] = layer.dW, layer.db
        return grads


def initial_loss_check(
    network: Any, x: np.ndarray, t: np.ndarray, rtol: float = 0.1
) -> tuple[float, float]:
    """The loss of an untrained classifier against ``ln C`` (C classes: uniform guessing).

    x: (N, ...) inputs, t: (N,) labels. Returns ``(loss, ln C)``; raises ``AssertionError``
    saying both when they differ by more than ``rtol * ln C``.
    """
    loss = float(network.loss(x, t))
    n_classes = int(network.predict(x).shape[1])
    expected = float(np.log(n_classes))
    if abs(loss - expected) > rtol * expected:
        raise AssertionError(
            f"initial loss {loss:.4f}, but an untrained network with {n_classes} classes should "
            f"give about ln {n_classes} = {expected:.4f}: check the initial weights and the loss"
        )
    return loss, expected


def gradient_check(network: Any, x: np.ndarray, t: np.ndarray, h: float = CHECK_H) -> float:
    """Worst relative error between ``network.gradient(x, t)`` and numerical gradients.

    Over every entry of every array in ``network.params``: ``|a - b| / max(|a| + |b|, 1e-8)``,
    the numerical gradient by centred differences of ``network.loss(x, t)`` with step ``h``.
    Use a float64 network; a correct backward pass gives about 1e-7 or less.
    """
    grads = network.gradient(x, t)
    worst = 0.0
    for key, param in network.params.items():
        numerical = numerical_gradient(lambda _: network.loss(x, t), param, h)
        worst = max(worst, rel_error(grads[key], numerical))
    return worst


#: exercise name -> reference object
EXERCISES: dict[str, Any] = {
    "MulLayer": MulLayer,
    "AddLayer": AddLayer,
    "Relu": Relu,
    "Sigmoid": Sigmoid,
    "Affine": Affine,
    "SoftmaxWithLoss": SoftmaxWithLoss,
    "TwoLayerNet": TwoLayerNet,
    "initial_loss_check": initial_loss_check,
    "gradient_check": gradient_check,
}
