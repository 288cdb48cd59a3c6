"""The Trainer of the book's ``common/trainer.py``: mini-batch training with evaluation per epoch."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from course_lib._random import SeedLike, as_generator
from course_lib.optimizers import get_optimizer

__all__ = ["Trainer"]


class Trainer:
    """Train ``network`` with mini-batches, evaluating accuracy after every epoch.

    network: any object with ``params``, ``gradient(x, t)``, ``loss(x, t)`` and
    ``accuracy(x, t)``. x_train: (N, ...), t_train: (N,) or (N, C); likewise the
    test set. optimizer: a name ('SGD', 'Momentum', 'Nesterov', 'AdaGrad',
    'RMSprop', 'Adam') built with ``optimizer_param`` (default ``{'lr': 0.01}``,
    as in the book), or an optimizer object. evaluate_sample_num_per_epoch: evaluate
    on the first that many samples of each set (``None``: the full sets).

    Each epoch visits the training set once in a random order drawn from ``seed``
    (the last, smaller batch included), so runs are reproducible. ``verbose``
    prints a line per epoch and the final test accuracy; ``progress`` shows a tqdm
    bar. After :meth:`train`: ``history`` (and the book's ``train_loss_list``,
    ``train_acc_list``, ``test_acc_list``).
    """

    def __init__(
        self,
        network: Any,
        x_train: np.ndarray,
        t_train: np.ndarray,
        x_test: np.ndarray,
        t_test: np.ndarray,
        epochs: int = 20,
        mini_batch_size: int = 100,
        optimizer: str | Any = "SGD",
        optimizer_param: Mapping[str, Any] | None = None,
        evaluate_sample_num_per_epoch: int | None = None,
        verbose: bool = True,
        *,
        seed: SeedLike = None,
        progress: bool = True,
        eval_batch_size: int = 500,
    ) -> None:
        if len(x_train) != len(t_train) or len(x_test) != len(t_test):
            raise ValueError(
                f"inputs and targets differ in length: train {len(x_train)} vs {len(t_train)}, "
                f"test {len(x_test)} vs {len(t_test)}"
            )
        if len(x_train) == 0:
            raise ValueError("the training set is empty")
        self.network = network
        self.x_train, self.t_train = x_train, t_train
        self.x_test, self.t_test = x_test, t_test
        self.epochs = int(epochs)
        self.batch_size = int(mini_batch_size)
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch
        self.verbose = verbose
        self.progress = progress
        self.eval_batch_size = eval_batch_size
        self.rng = as_generator(seed)
        if hasattr(optimizer, "update"):
            self.optimizer = get_optimizer(optimizer, **dict(optimizer_param or {}))
        else:
            params = {"lr": 0.01} if optimizer_param is None else dict(optimizer_param)
            self.optimizer = get_optimizer(optimizer, **params)

        self.train_size = x_train.shape[0]
        self.iter_per_epoch = max(-(-self.train_size // self.batch_size), 1)
        self.max_iter = self.epochs * self.iter_per_epoch
        self.current_iter = 0
        self.current_epoch = 0
        self.train_loss_list: list[float] = []
        self.train_acc_list: list[float] = []
        self.test_acc_list: list[float] = []
        self.epoch_time_list: list[float] = []

    @property
    def history(self) -> dict[str, list[float]]:
        """Per-iteration ``loss``; per-epoch ``train_acc``, ``test_acc`` and ``epoch_time`` (s)."""
        return {
            "loss": self.train_loss_list,
            "train_acc": self.train_acc_list,
            "test_acc": self.test_acc_list,
            "epoch_time": self.epoch_time_list,
        }

    def _accuracy(self, x: np.ndarray, t: np.ndarray) -> float:
        try:
            return float(self.network.accuracy(x, t, batch_size=self.eval_batch_size))
        except TypeError:  # a network whose accuracy takes no batch size
            return float(self.network.accuracy(x, t))

    def train_step(self, x_batch: np.ndarray, t_batch: np.ndarray) -> float:
        """One update on a mini-batch; returns the batch loss (measured before the update)."""
        grads = self.network.gradient(x_batch, t_batch)
        loss = getattr(self.network, "last_loss", None)
        self.optimizer.update(self.network.params, grads)
        if loss is None:  # a network that does not record its loss in gradient()
            loss = self.network.loss(x_batch, t_batch)
        loss = float(loss)
        if not np.isfinite(loss):
            raise FloatingPointError(
                f"the loss became {loss} at iteration {self.current_iter}: "
                "lower the learning rate or check the gradients"
            )
        self.train_loss_list.append(loss)
        self.current_iter += 1
        return loss

    def evaluate(self) -> tuple[float, float]:
        """Train and test accuracy on the evaluation samples; appended to the history."""
        n = self.evaluate_sample_num_per_epoch
        xs, ts = (self.x_train, self.t_train) if n is None else (self.x_train[:n], self.t_train[:n])
        xv, tv = (self.x_test, self.t_test) if n is None else (self.x_test[:n], self.t_test[:n])
        train_acc, test_acc = self._accuracy(xs, ts), self._accuracy(xv, tv)
        self.train_acc_list.append(train_acc)
        self.test_acc_list.append(test_acc)
        return train_acc, test_acc

    def train(self) -> dict[str, list[float]]:
        """Run all epochs; returns :attr:`history`."""
        from tqdm.auto import tqdm

        bar = tqdm(
            total=self.max_iter, disable=not self.progress, unit="step", leave=True, file=sys.stderr
        )
        try:
            for _ in range(self.epochs):
                start = time.perf_counter()
                order = self.rng.permutation(self.train_size)
                for i in range(0, self.train_size, self.batch_size):
                    idx = order[i : i + self.batch_size]
                    loss = self.train_step(self.x_train[idx], self.t_train[idx])
                    bar.update(1)
                    if self.current_iter % 20 == 0:
                        bar.set_postfix(epoch=self.current_epoch + 1, loss=f"{loss:.4f}")
                self.epoch_time_list.append(time.perf_counter() - start)
                self.current_epoch += 1
                train_acc, test_acc = self.evaluate()
                bar.set_postfix(epoch=self.current_epoch, loss=f"{loss:.4f}", test_acc=test_acc)
                if self.verbose:
                    tqdm.write(
                        f"=== epoch:{self.current_epoch}, train acc:{train_acc:.4f}, "
                        f"test acc:{test_acc:.4f} ===",
                        file=sys.stdout,
                    )
        finally:
            bar.close()
        if self.verbose:
            test_acc = self._accuracy(self.x_test, self.t_test)
            print("=============== Final Test Accuracy ===============")
            print(f"test acc:{test_acc}")
        return self.history
