"""Parameter update rules (the book's ``common/optimizer.py``).

Every optimizer has ``update(params, grads)``: it walks the keys of ``params``
and updates each entry in place (arrays keep their identity and dtype, so the
layers holding them see the new values). State (velocities, squared-gradient
sums) is created on the first call, with the shape and dtype of each parameter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from typing import Any

import numpy as np

from course_lib import kernels

# "np" too: the book's ch06/optimizer_compare_mnist.py gets numpy from `from common.optimizer import *`.
__all__ = [
    "np",
    "SGD",
    "AdaGrad",
    "Adam",
    "Momentum",
    "Nesterov",
    "Optimizer",
    "RMSprop",
    "get_optimizer",
]

Params = MutableMapping[str, Any]
Grads = Mapping[str, Any]


class Optimizer:
    """Base class: subclasses implement ``update(params, grads)``."""

    lr: float

    def update(self, params: Params, grads: Grads) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _zeros_like(params: Params) -> dict[str, np.ndarray]:
        return {key: np.zeros_like(val) for key, val in params.items()}

    def _state(self, name: str, params: Params) -> dict[str, np.ndarray]:
        """The per-parameter state ``self.<name>`` (``v``, ``h``...), zeros at the first update."""
        if getattr(self, name) is None:
            setattr(self, name, self._zeros_like(params))
        return getattr(self, name)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if isinstance(v, int | float))
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent: ``W <- W - lr * dW``."""

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = lr

    def update(self, params: Params, grads: Grads) -> None:
        for key in params:
            params[key] -= self.lr * grads[key]


class Momentum(Optimizer):
    """Momentum SGD: ``v <- momentum * v - lr * dW``; ``W <- W + v``."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        self.lr = lr
        self.momentum = momentum
        self.v: dict[str, np.ndarray] | None = None

    def update(self, params: Params, grads: Grads) -> None:
        velocity = self._state("v", params)
        for key in params:
            v = velocity[key]
            v *= self.momentum
            v -= self.lr * grads[key]
            params[key] += v


class Nesterov(Momentum):
    """Nesterov's accelerated gradient (Sutskever et al., 2013), in the book's form.

    ``W <- W + momentum² v - (1 + momentum) lr dW``; then ``v <- momentum v - lr dW``.
    """

    def update(self, params: Params, grads: Grads) -> None:
        velocity = self._state("v", params)
        mu = self.momentum
        for key in params:
            v, g = velocity[key], grads[key]
            params[key] += mu * mu * v
            params[key] -= (1 + mu) * self.lr * g
            v *= mu
            v -= self.lr * g


class AdaGrad(Optimizer):
    """AdaGrad: ``h <- h + dW²``; ``W <- W - lr dW / (sqrt(h) + 1e-7)``."""

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = lr
        self.h: dict[str, np.ndarray] | None = None

    def update(self, params: Params, grads: Grads) -> None:
        squares = self._state("h", params)
        for key in params:
            g = grads[key]
            squares[key] += g * g
            params[key] -= self.lr * g / (np.sqrt(squares[key]) + 1e-7)


class RMSprop(AdaGrad):
    """RMSprop: ``h <- decay h + (1 - decay) dW²``; ``W <- W - lr dW / (sqrt(h) + 1e-7)``."""

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99) -> None:
        super().__init__(lr)
        self.decay_rate = decay_rate

    def update(self, params: Params, grads: Grads) -> None:
        squares = self._state("h", params)
        for key in params:
            g, h = grads[key], squares[key]
            h *= self.decay_rate
            h += (1 - self.decay_rate) * g * g
            params[key] -= self.lr * g / (np.sqrt(h) + 1e-7)


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), with the bias correction folded into the step size.

    ``m <- m + (1 - beta1)(dW - m)``, ``v <- v + (1 - beta2)(dW² - v)``,
    ``W <- W - lr_t m / (sqrt(v) + 1e-7)`` with
    ``lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t)`` at step t.
    """

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999) -> None:
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.iter = 0
        self.m: dict[str, np.ndarray] | None = None
        self.v: dict[str, np.ndarray] | None = None

    def update(self, params: Params, grads: Grads) -> None:
        ms, vs = self._state("m", params), self._state("v", params)
        self.iter += 1
        t = self.iter
        lr_t = self.lr * math.sqrt(1.0 - self.beta2**t) / (1.0 - self.beta1**t)
        fast = kernels.fast()
        for key in params:
            g, m, v = grads[key], ms[key], vs[key]
            p = params[key]
            if fast is not None and _fits_kernel(p, g, m, v):
                # one parallel pass instead of eight NumPy passes; the same float arithmetic
                c = p.dtype.type
                fast.adam(
                    p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1),
                    c(1 - self.beta1), c(1 - self.beta2), c(lr_t), c(1e-7),
                )  # fmt: skip
                continue
            m += (1 - self.beta1) * (g - m)
            v += (1 - self.beta2) * (g * g - v)
            params[key] -= lr_t * m / (np.sqrt(v) + 1e-7)


#: Parameters smaller than this are updated by NumPy (a parallel kernel's start-up costs more).
FAST_MIN_SIZE = 1 << 14


def _fits_kernel(p: Any, g: Any, m: np.ndarray, v: np.ndarray) -> bool:
    """Whether Adam's compiled kernel can update ``p`` in place (same dtype, contiguous arrays)."""
    return (
        isinstance(p, np.ndarray)
        and isinstance(g, np.ndarray)
        and p.size >= FAST_MIN_SIZE
        and p.dtype in (np.float32, np.float64)
        and p.dtype == g.dtype == m.dtype == v.dtype
        and p.shape == g.shape
        and p.flags.c_contiguous
        and g.flags.c_contiguous
        and p.flags.writeable
    )


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": AdaGrad,
    "rmsprop": RMSprop,
    "adam": Adam,
}


def get_optimizer(optimizer: str | Any, **optimizer_param: Any) -> Any:
    """Return an optimizer from its name (case-insensitive, e.g. ``"Adam"``) and parameters.

    An object with an ``update`` method is returned as is (then ``optimizer_param``
    must be empty).
    """
    if hasattr(optimizer, "update"):
        if optimizer_param:
            raise TypeError("optimizer_param is only used with an optimizer given by name")
        return optimizer
    try:
        cls = OPTIMIZERS[str(optimizer).lower()]
    except KeyError:
        names = ", ".join(c.__name__ for c in OPTIMIZERS.values())
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {names}") from None
    return cls(**optimizer_param)
