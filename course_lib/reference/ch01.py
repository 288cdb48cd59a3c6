"""Reference implementations of the exercises of ch01 (see :mod:`course_lib.reference`).

Where :mod:`course_lib` already has the object (``softmax``, ``numerical_gradient``, ...) it is
re-exported; the exercises that exist only in the chapter are defined here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from course_lib.functions import cross_entropy_error, numerical_diff, softmax
from course_lib.gradcheck import numerical_gradient

__all__ = ["EXERCISES", "difference_errors", "gradient_descent", "least_squares_gradient"]


def difference_errors(
    f: Callable[[float], float], dfdx: float, x: float, hs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Absolute errors of the forward and the central difference of ``f`` at ``x``.

    dfdx: the exact derivative f'(x); hs: (K,) step sizes, used in their own dtype (float32
    steps with a float32 ``x`` show float32 rounding). Returns ``(forward, central)``, both (K,)
    float64: ``|(f(x + h) - f(x)) / h - dfdx|`` and ``|(f(x + h) - f(x - h)) / (2 h) - dfdx|``.
    """
    forward = [abs((f(x + h) - f(x)) / h - dfdx) for h in hs]
    central = [abs((f(x + h) - f(x - h)) / (2 * h) - dfdx) for h in hs]
    return np.array(forward, dtype=np.float64), np.array(central, dtype=np.float64)


def gradient_descent(
    grad_f: Callable[[np.ndarray], np.ndarray],
    init_x: np.ndarray,
    lr: float = 0.01,
    step_num: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """``step_num`` steps of ``x <- x - lr * grad_f(x)`` from ``init_x`` (left unchanged).

    init_x: any shape S. Returns ``(x, path)``: the final point (S) and every point visited,
    the start included, ``(step_num + 1, *S)``.
    """
    x = np.array(init_x, dtype=np.float64, copy=True)
    path = [x]
    for _ in range(step_num):
        x = x - lr * grad_f(x)
        path.append(x)
    return x, np.array(path)


def least_squares_gradient(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of ``L(w) = sum((x @ w - y) ** 2) / (2 N)`` with respect to ``w``.

    w: (D,); x: (N, D); y: (N,). Returns (D,): ``x.T @ (x @ w - y) / N``.
    """
    return x.T @ (x @ w - y) / x.shape[0]


#: exercise name -> reference object
EXERCISES: dict[str, Any] = {
    "numerical_diff": numerical_diff,
    "difference_errors": difference_errors,
    "numerical_gradient": numerical_gradient,
    "gradient_descent": gradient_descent,
    "least_squares_gradient": least_squares_gradient,
    "softmax": softmax,
    "cross_entropy_error": cross_entropy_error,
}
