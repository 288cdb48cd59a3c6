"""Reference implementations of the exercises of ch03 (see :mod:`course_lib.reference`).

The optimizers and the ``BatchNormalization`` and ``Dropout`` layers are ``course_lib``'s own;
``split_validation`` and the two practitioners' habits, ``overfit_tiny_batch`` and
``lr_sweep``, have no counterpart in ``course_lib`` and are defined here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from course_lib._random import SeedLike
from course_lib.layers import BatchNormalization, Dropout
from course_lib.optimizers import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop

__all__ = ["EXERCISES", "lr_sweep", "overfit_tiny_batch", "split_validation"]


def split_validation(
    x: np.ndarray, t: np.ndarray, validation_rate: float = 0.2, seed: SeedLike = None
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Shuffle (x, t) row by row and split off a validation set.

    x: (N, ...), t: (N,) or (N, C). The first ``int(N * validation_rate)`` rows of
    ``np.random.default_rng(seed).permutation(N)`` become the validation set. Returns
    ``(x_train, t_train), (x_val, t_val)``; the inputs are not modified. ``ValueError`` for a
    rate outside (0, 1), rows that do not match, or an empty part.
    """
    if not 0 < validation_rate < 1:
        raise ValueError(f"validation_rate must be strictly between 0 and 1, got {validation_rate}")
    if len(x) != len(t):
        raise ValueError(f"x has {len(x)} rows but t has {len(t)}: they must match")
    n_val = int(len(x) * validation_rate)
    if n_val == 0 or n_val == len(x):
        raise ValueError(f"validation_rate {validation_rate} of {len(x)} rows leaves a part empty")
    order = np.random.default_rng(seed).permutation(len(x))
    val, train = order[:n_val], order[n_val:]
    return (x[train], t[train]), (x[val], t[val])


def overfit_tiny_batch(
    network: Any, x: np.ndarray, t: np.ndarray, optimizer: Any, max_iters: int = 1000
) -> list[float]:
    """Train ``network`` on the one batch (x, t) until it classifies all of it correctly.

    Each step: ``network.gradient(x, t)``, ``optimizer.update(network.params, grads)``, then
    the loss ``network.loss(x, t)`` is recorded; training stops as soon as
    ``network.accuracy(x, t) == 1.0`` or after ``max_iters`` steps. Returns the losses, one
    float per step. x: (N, ...) a few examples; t: (N,) labels.
    """
    losses: list[float] = []
    for _ in range(max_iters):
        grads = network.gradient(x, t)
        optimizer.update(network.params, grads)
        losses.append(float(network.loss(x, t)))
        if network.accuracy(x, t) == 1.0:
            break
    return losses


def lr_sweep(
    make_network: Callable[[], Any],
    make_optimizer: Callable[[float], Any],
    lrs: Sequence[float],
    x: np.ndarray,
    t: np.ndarray,
    iters: int = 50,
    batch_size: int = 100,
    seed: SeedLike = 0,
) -> np.ndarray:
    """Train a fresh network for each learning rate on the same mini-batches.

    For each ``lr`` of ``lrs``: ``make_network()``, ``make_optimizer(lr)`` and a new
    ``np.random.default_rng(seed)``; then ``iters`` steps, each on the batch
    ``rng.integers(0, len(x), size=batch_size)``: the loss ``network.loss(xb, tb)`` is
    recorded *before* the update (``network.gradient``, ``optimizer.update``). A loss that is
    not finite ends that learning rate's run. Returns losses (len(lrs), iters), ``np.inf``
    where a run had ended.
    """
    losses = np.full((len(lrs), iters), np.inf)
    for row, lr in enumerate(lrs):
        network, optimizer = make_network(), make_optimizer(lr)
        rng = np.random.default_rng(seed)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for i in range(iters):
                batch = rng.integers(0, len(x), size=batch_size)
                loss = float(network.loss(x[batch], t[batch]))
                if not np.isfinite(loss):
                    break
                losses[row, i] = loss
                optimizer.update(network.params, network.gradient(x[batch], t[batch]))
    return losses


#: exercise name -> reference object
EXERCISES: dict[str, Any] = {
    "SGD": SGD,
    "Momentum": Momentum,
    "Nesterov": Nesterov,
    "AdaGrad": AdaGrad,
    "RMSprop": RMSprop,
    "Adam": Adam,
    "BatchNormalization": BatchNormalization,
    "Dropout": Dropout,
    "split_validation": split_validation,
    "overfit_tiny_batch": overfit_tiny_batch,
    "lr_sweep": lr_sweep,
}
