"""Seeded training recipes that reproduce the course's accuracy figures.

A recipe is data: the dataset, the network, the optimiser, the learning-rate
schedule, the data augmentation, the number of epochs and the seed. One runner
(:func:`run_recipe`) trains any of them and returns a JSON-ready record of what
happened (per-epoch loss and test accuracy, wall time, the machine).

    course-lib train --list
    course-lib train simple_convnet_mnist --out result.json
    course-lib train simple_convnet_mnist --epochs 1 --train-size 20000   # shortened

The same seed gives the same run on the same machine and library versions
(BLAS may order its sums differently on other CPUs, so the last digit of an
accuracy can move between machines).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from course_lib.optimizers import get_optimizer

__all__ = [
    "RECIPES",
    "Recipe",
    "build_model",
    "get_recipe",
    "lr_at",
    "random_hflip",
    "random_shift",
    "run_recipe",
]


@dataclass(frozen=True)
class Recipe:
    """One reproducible training run.

    model: a key of ``MODEL_BUILDERS`` (``model_kwargs`` are passed on).
    lr_schedule: ``"constant"`` or ``"cosine"`` (from ``lr`` down to ``lr * lr_final_ratio``
    over the epochs, one value per epoch). shift: random translation of up to that many
    pixels per image (0: none). hflip: random horizontal flips (Fashion-MNIST only: a
    mirrored digit is another symbol). target: the test accuracy the full recipe reaches.
    """

    name: str
    description: str
    dataset: str  # "mnist" or "fashion-mnist"
    model: str
    epochs: int
    target: float
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    flatten: bool = False
    batch_size: int = 100
    optimizer: str = "Adam"
    lr: float = 0.001
    lr_schedule: str = "cosine"
    lr_final_ratio: float = 0.01
    shift: int = 0
    hflip: bool = False
    seed: int = 0


# ----------------------------------------------------------------------------- models


def _he(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return (np.sqrt(2.0 / fan_in) * rng.standard_normal(shape)).astype(np.float32)


def _small_cnn(*, seed: int, channels: tuple[int, int] = (32, 64), hidden: int = 256,
               dropout: float = 0.3) -> Any:  # fmt: skip
    """conv(3x3, c1) - relu - pool - conv(3x3, c2) - relu - pool - affine - relu - dropout - affine.

    x: (N, 1, 28, 28) -> scores (N, 10). He initialisation, float32.
    """
    from course_lib.layers import Affine, Convolution, Dropout, Pooling, Relu
    from course_lib.models import Sequential

    rng = np.random.default_rng(seed)
    c1, c2 = channels
    flat = c2 * 7 * 7
    zeros = lambda n: np.zeros(n, dtype=np.float32)  # noqa: E731
    layers = [
        # the images need no gradient: the first convolution skips computing it
        Convolution(_he(rng, (c1, 1, 3, 3), 9), zeros(c1), stride=1, pad=1, input_grad=False),
        Relu(),
        Pooling(2, 2, stride=2),
        Convolution(_he(rng, (c2, c1, 3, 3), 9 * c1), zeros(c2), stride=1, pad=1),
        Relu(),
        Pooling(2, 2, stride=2),
        Affine(_he(rng, (flat, hidden), flat), zeros(hidden)),
        Relu(),
        Dropout(dropout, seed=rng),
        Affine(_he(rng, (hidden, 10), hidden), zeros(10)),
    ]
    return Sequential(layers, seed=rng)


def _he_reinit(net: Any, seed: int) -> Any:
    """Redraw every weight ``W*`` with He scaling, sqrt(2 / fan_in), in place (biases stay 0).

    fan_in: C*FH*FW for filters (FN, C, FH, FW), D for affine weights (D, M).
    """
    rng = np.random.default_rng(seed)
    for key, W in net.params.items():
        if key.startswith("W"):
            fan_in = int(np.prod(W.shape[1:])) if W.ndim == 4 else W.shape[0]
            W[...] = _he(rng, W.shape, fan_in)
    return net


def _simple_convnet(*, seed: int, he_init: bool = False, **kwargs: Any) -> Any:
    """The book's SimpleConvNet; ``he_init`` replaces its N(0, 0.01²) weights by He's scaling."""
    from course_lib.models import SimpleConvNet

    net = SimpleConvNet(**kwargs, seed=seed)
    return _he_reinit(net, seed) if he_init else net


def _deep_convnet(*, seed: int, **kwargs: Any) -> Any:
    from course_lib.models import DeepConvNet

    return DeepConvNet(**kwargs, seed=seed)


def _multi_layer_net(*, seed: int, **kwargs: Any) -> Any:
    from course_lib.models import MultiLayerNetExtend

    return MultiLayerNetExtend(**kwargs, seed=seed)


MODEL_BUILDERS: dict[str, Callable[..., Any]] = {
    "SimpleConvNet": _simple_convnet,
    "DeepConvNet": _deep_convnet,
    "MultiLayerNetExtend": _multi_layer_net,
    "SmallCNN": _small_cnn,
}


def build_model(recipe: Recipe, seed: int | None = None) -> Any:
    """The recipe's network, initialised from ``seed`` (default: the recipe's)."""
    try:
        builder = MODEL_BUILDERS[recipe.model]
    except KeyError:
        raise ValueError(
            f"recipe {recipe.name!r}: unknown model {recipe.model!r}; "
            f"known: {', '.join(MODEL_BUILDERS)}"
        ) from None
    return builder(seed=recipe.seed if seed is None else seed, **dict(recipe.model_kwargs))


# ----------------------------------------------------------------------------- recipes

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe(
            name="simple_convnet_mnist",
            description="The book's SimpleConvNet on MNIST, He initialisation; Adam, cosine "
            "schedule, shifts of 2 px",
            dataset="mnist",
            model="SimpleConvNet",
            model_kwargs={"he_init": True},
            epochs=15,
            target=0.990,
            shift=2,
        ),
        Recipe(
            name="deep_convnet_mnist",
            description="The book's DeepConvNet on MNIST; Adam, cosine schedule, shifts of 2 px",
            dataset="mnist",
            model="DeepConvNet",
            epochs=12,
            target=0.994,
            shift=2,
        ),
        Recipe(
            name="fashion_fc",
            description="Fully connected 784-256-256-10 with batch norm and dropout 0.2, "
            "Fashion-MNIST",
            dataset="fashion-mnist",
            model="MultiLayerNetExtend",
            model_kwargs={
                "input_size": 784,
                "hidden_size_list": [256, 256],
                "output_size": 10,
                "use_batchnorm": True,
                "use_dropout": True,
                "dropout_ration": 0.2,
            },
            flatten=True,
            epochs=30,
            target=0.88,
        ),
        Recipe(
            name="fashion_cnn",
            description="Small CNN (conv32-pool-conv64-pool-fc256, dropout 0.3) on Fashion-MNIST; "
            "flips and shifts of 2 px",
            dataset="fashion-mnist",
            model="SmallCNN",
            epochs=15,
            target=0.91,
            shift=2,
            hflip=True,
        ),
    ]
}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}") from None


# ----------------------------------------------------------------------------- training aids


def lr_at(recipe: Recipe, epoch: int, epochs: int | None = None) -> float:
    """Learning rate for ``epoch`` (0-based) of a run of ``epochs`` epochs."""
    epochs = recipe.epochs if epochs is None else epochs
    if recipe.lr_schedule == "constant" or epochs <= 1:
        return recipe.lr
    if recipe.lr_schedule == "cosine":  # the schedule chapter 5 has students write
        from course_lib.reference.ch05 import cosine_lr

        return cosine_lr(epoch, epochs - 1, recipe.lr, recipe.lr * recipe.lr_final_ratio)
    raise ValueError(f"lr_schedule {recipe.lr_schedule!r}: use 'constant' or 'cosine'")


def random_shift(x: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each image by up to ``max_shift`` pixels (zeros fill in). x: (N, C, H, W) -> same."""
    if max_shift <= 0:
        return x
    N, C, H, W = x.shape
    m = max_shift
    padded = np.zeros((N, C, H + 2 * m, W + 2 * m), dtype=x.dtype)
    padded[:, :, m : m + H, m : m + W] = x
    crops = np.lib.stride_tricks.sliding_window_view(padded, (H, W), axis=(2, 3))
    dy = rng.integers(0, 2 * m + 1, size=N)
    dx = rng.integers(0, 2 * m + 1, size=N)
    return crops[np.arange(N), :, dy, dx]  # (N, C, H, W)


def random_hflip(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirror a random half of the images left to right. x: (N, C, H, W) -> same."""
    flip = rng.random(x.shape[0]) < 0.5
    return np.where(flip[:, None, None, None], x[..., ::-1], x)


# ----------------------------------------------------------------------------- runner


def machine_info() -> dict[str, Any]:
    """CPU, thread settings and library versions, for the record."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    from course_lib.cli.bench import openblas_corename

    env_keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE")
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "openblas_core": openblas_corename(),
        "env": {k: os.environ[k] for k in env_keys if k in os.environ},
    }


def _load(recipe: Recipe, data_dir: str | os.PathLike | None) -> tuple:
    from course_lib.datasets import load_fashion_mnist, load_mnist

    loader = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}[recipe.dataset]
    return loader(normalize=True, flatten=recipe.flatten, data_dir=data_dir, progress=False)


def run_recipe(
    recipe: Recipe | str,
    *,
    data_dir: str | os.PathLike | None = None,
    epochs: int | None = None,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int | None = None,
    save_params: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = print,
    progress_every: int = 0,
) -> dict[str, Any]:
    """Train ``recipe`` and return its record (also written to ``out`` as JSON if given).

    epochs / train_size / test_size shorten the run (the first ``train_size`` training
    images, the first ``test_size`` test images); seed overrides the recipe's seed.
    progress_every: also log the mean loss and step time every that many steps.
    The record holds ``test_accuracy`` (after the last epoch), per-epoch ``history``,
    ``wall_time_s`` and the machine.
    """
    if isinstance(recipe, str):
        recipe = get_recipe(recipe)
    if seed is not None:
        recipe = replace(recipe, seed=seed)
    epochs = recipe.epochs if epochs is None else epochs
    for name, value in (("epochs", epochs), ("train_size", train_size), ("test_size", test_size)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    say = log or (lambda _msg: None)
    started = time.perf_counter()
    cpu_started = time.process_time()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    (x_train, t_train), (x_test, t_test) = _load(recipe, data_dir)
    x_train, t_train = x_train[:train_size], t_train[:train_size]
    x_test, t_test = x_test[:test_size], t_test[:test_size]
    n, bs = len(x_train), recipe.batch_size
    if n < bs:
        raise ValueError(f"train_size {n} is smaller than the batch size {bs}")

    rng = np.random.default_rng(recipe.seed)  # shuffling and augmentation
    net = build_model(recipe)
    optimizer = get_optimizer(recipe.optimizer, lr=recipe.lr)
    say(
        f"{recipe.name}: {recipe.description}\n"
        f"  {n} training / {len(x_test)} test images, {epochs} epochs of {n // bs} steps, "
        f"seed {recipe.seed}"
    )

    history: list[dict[str, float]] = []
    train_time = 0.0
    for epoch in range(epochs):
        optimizer.lr = lr_at(recipe, epoch, epochs)
        t0 = time.perf_counter()
        order = rng.permutation(n)
        losses = []
        for start in range(0, n - bs + 1, bs):  # full batches only
            idx = order[start : start + bs]
            xb = x_train[idx]
            if recipe.shift:
                xb = random_shift(xb, recipe.shift, rng)
            if recipe.hflip:
                xb = random_hflip(xb, rng)
            grads = net.gradient(xb, t_train[idx])
            optimizer.update(net.params, grads)
            losses.append(net.last_loss)
            if progress_every and len(losses) % progress_every == 0:
                say(
                    f"    step {len(losses)}/{n // bs}  loss {np.mean(losses[-progress_every:]):.4f}"
                    f"  {1e3 * (time.perf_counter() - t0) / len(losses):.0f} ms/step"
                )
        epoch_time = time.perf_counter() - t0
        train_time += epoch_time
        t1 = time.perf_counter()
        acc = net.accuracy(x_test, t_test, batch_size=500)
        eval_time = time.perf_counter() - t1
        history.append(
            {
                "epoch": epoch + 1,
                "lr": optimizer.lr,
                "train_loss": float(np.mean(losses)),
                "test_acc": acc,
                "epoch_time_s": epoch_time,
                "eval_time_s": eval_time,
            }
        )
        say(
            f"  epoch {epoch + 1:>3}/{epochs}  lr {optimizer.lr:.2e}  "
            f"loss {np.mean(losses):.4f}  test acc {acc:.4f}  ({epoch_time:.1f} s + eval {eval_time:.1f} s)"
        )

    record: dict[str, Any] = {
        "recipe": asdict(replace(recipe, model_kwargs=dict(recipe.model_kwargs))),
        "epochs_run": epochs,
        "train_size": n,
        "test_size": len(x_test),
        "shortened": epochs < recipe.epochs or train_size is not None or test_size is not None,
        "test_accuracy": history[-1]["test_acc"],
        "target": recipe.target,
        "history": history,
        "train_time_s": train_time,
        "wall_time_s": time.perf_counter() - started,
        "cpu_time_s": time.process_time() - cpu_started,
        "loadavg_1min": {
            "start": load_start,
            "end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine_info(),
        "command": " ".join(sys.argv),
    }
    say(
        f"  test accuracy {record['test_accuracy']:.4f} (target {recipe.target:.3f}), "
        f"wall time {record['wall_time_s'] / 60:.1f} min"
    )
    if save_params:
        net.save_params(save_params)
        record["params_file"] = os.fspath(save_params)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(record, indent=2) + "\n")
    return record
