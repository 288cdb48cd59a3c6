"""Reference implementations of the exercises of ch05 (see :mod:`course_lib.reference`).

Chapter 5 (deep networks) asks for small functions and layers that ``course_lib`` has no
public counterpart of; they are defined here. ``LeakyRelu`` and ``GlobalAvgPooling`` are
``course_lib.layers``'.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from course_lib._random import SeedLike, as_generator
from course_lib.layers import (
    Affine,
    Convolution,
    Dropout,
    GlobalAvgPooling,
    Layer,
    LeakyRelu,
    Pooling,
    Relu,
)
from course_lib.models import Sequential

__all__ = [
    "EXERCISES",
    "InvertedDropout",
    "ResidualBlock",
    "build_fashion_cnn",
    "build_linear_net",
    "build_my_cnn",
    "conv_param_count",
    "cosine_lr",
    "load_params",
    "random_shift",
    "receptive_field",
    "save_params",
    "shift_images",
    "stratified_split",
    "torch_affine",
    "torch_conv",
]


# ----------------------------------------------------------------------------- §1 depth


def conv_param_count(c_in: int, c_out: int, kernel_h: int, kernel_w: int, bias: bool = True) -> int:
    """Parameters of one convolution C_in -> C_out with a kernel_h x kernel_w kernel."""
    return int(c_out * c_in * kernel_h * kernel_w + (c_out if bias else 0))


def receptive_field(kernel_sizes: Iterable[int]) -> int:
    """Receptive field of stacked stride-1 convolutions with these (square) kernel sizes."""
    sizes = list(kernel_sizes)
    if not sizes:
        raise ValueError("receptive_field needs at least one kernel size")
    if any(k < 1 for k in sizes):
        raise ValueError(f"kernel sizes must be >= 1, got {sizes}")
    return int(1 + sum(k - 1 for k in sizes))


# ----------------------------------------------------------------------------- §4 augmentation


def shift_images(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """x: (N, C, H, W) moved dy rows down and dx columns right; entering pixels are 0."""
    H, W = x.shape[-2:]
    out = np.zeros_like(x)
    if abs(dy) >= H or abs(dx) >= W:
        return out
    rows_to, rows_from = slice(max(0, dy), H + min(0, dy)), slice(max(0, -dy), H - max(0, dy))
    cols_to, cols_from = slice(max(0, dx), W + min(0, dx)), slice(max(0, -dx), W - max(0, dx))
    out[..., rows_to, cols_to] = x[..., rows_from, cols_from]
    return out


def random_shift(x: np.ndarray, rng: np.random.Generator, max_shift: int = 2) -> np.ndarray:
    """Each image of x: (N, C, H, W) shifted by its own (dy, dx), uniform in [-m, m]^2."""
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    offsets = rng.integers(-max_shift, max_shift + 1, size=(x.shape[0], 2))
    out = np.empty_like(x)
    for dy, dx in np.unique(offsets, axis=0):
        chosen = np.flatnonzero((offsets[:, 0] == dy) & (offsets[:, 1] == dx))
        out[chosen] = shift_images(x[chosen], int(dy), int(dx))
    return out


# ----------------------------------------------------------------------------- §6 files


def save_params(params: Mapping[str, np.ndarray], path: str | os.PathLike[str]) -> None:
    """Write name -> array to an ``.npz`` file; ``TypeError`` for what needs a pickle."""
    for name, value in params.items():
        if not isinstance(value, np.ndarray) or value.dtype == object:
            raise TypeError(f"parameter {name!r} is not a numeric NumPy array")
    with open(path, "wb") as f:
        np.savez(f, **params)


def load_params(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read an ``.npz`` file into a plain dict (pickled arrays are refused)."""
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


# ----------------------------------------------------------------------------- §7 validation


def stratified_split(
    t: np.ndarray, n_val: int, seed: SeedLike = None
) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx), sorted; per-class validation counts by largest remainder."""
    t = np.asarray(t)
    n = t.shape[0]
    if not 0 < n_val < n:
        raise ValueError(f"n_val must be between 1 and {n - 1}, got {n_val}")
    rng = as_generator(seed)
    classes, counts = np.unique(t, return_counts=True)
    share = n_val * counts / n
    quota = np.floor(share).astype(int)
    missing = n_val - int(quota.sum())
    quota[np.argsort(quota - share, kind="stable")[:missing]] += 1
    val_idx = np.sort(
        np.concatenate(
            [rng.permutation(np.flatnonzero(t == k))[:q] for k, q in zip(classes, quota)]
        )
    )
    return np.setdiff1d(np.arange(n), val_idx), val_idx


# ----------------------------------------------------------------------------- §9-10 networks


def torch_affine(
    rng: np.random.Generator, n_in: int, n_out: int, dtype: Any = np.float32
) -> Affine:
    """An Affine layer n_in -> n_out initialised like ``torch.nn.Linear``."""
    bound = 1.0 / np.sqrt(n_in)
    W = rng.uniform(-bound, bound, size=(n_in, n_out)).astype(dtype)
    return Affine(W, rng.uniform(-bound, bound, size=n_out).astype(dtype))


def torch_conv(
    rng: np.random.Generator, c_in: int, c_out: int, k: int, stride: int = 1, pad: int = 0,
    dtype: Any = np.float32,
) -> Convolution:  # fmt: skip
    """A k x k Convolution c_in -> c_out initialised like ``torch.nn.Conv2d``."""
    bound = 1.0 / np.sqrt(c_in * k * k)
    W = rng.uniform(-bound, bound, size=(c_out, c_in, k, k)).astype(dtype)
    b = rng.uniform(-bound, bound, size=c_out).astype(dtype)
    return Convolution(W, b, stride=stride, pad=pad)


def build_linear_net(seed: SeedLike = None) -> Sequential:
    """784-256-64-10 with LeakyReLU, PyTorch's initialisation: 218,058 parameters."""
    rng = np.random.default_rng(seed)
    return Sequential(
        [torch_affine(rng, 784, 256), LeakyRelu(0.01), torch_affine(rng, 256, 64),
         LeakyRelu(0.01), torch_affine(rng, 64, 10)]
    )  # fmt: skip


def build_fashion_cnn(seed: SeedLike = None) -> Sequential:
    """4 x (conv 3x3 pad 1, max-pool 2x2, LeakyReLU), global average pooling, 64-24-10."""
    rng = np.random.default_rng(seed)
    layers: list[Any] = []
    for c_in, c_out in [(1, 8), (8, 16), (16, 32), (32, 64)]:
        layers += [torch_conv(rng, c_in, c_out, 3, pad=1), Pooling(2, 2, stride=2), LeakyRelu()]
    layers += [
        GlobalAvgPooling(),
        torch_affine(rng, 64, 24),
        LeakyRelu(),
        torch_affine(rng, 24, 10),
    ]
    return Sequential(layers)


def build_my_cnn(seed: SeedLike = None) -> Sequential:
    """conv 32 - relu - pool - conv 64 - relu - pool - affine 128 - relu - dropout - affine 10."""
    rng = np.random.default_rng(seed)

    def he(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    zeros = functools.partial(np.zeros, dtype=np.float32)
    return Sequential(
        [Convolution(he((32, 1, 3, 3), 9), zeros(32), pad=1), Relu(), Pooling(2, 2, stride=2),
         Convolution(he((64, 32, 3, 3), 288), zeros(64), pad=1), Relu(), Pooling(2, 2, stride=2),
         Affine(he((3136, 128), 3136), zeros(128)), Relu(), Dropout(0.3, seed=rng),
         Affine(he((128, 10), 128), zeros(10))]
    )  # fmt: skip


# ----------------------------------------------------------------------------- §11-13 chapter 8


class ResidualBlock(Layer):
    """y = x + relu(x @ Wa + ba) @ Wb + bb: a fully connected residual (skip) block.

    Wa: (D, H), ba: (H,), Wb: (H, D), bb: (D,); x: (N, D) -> y: (N, D).
    The identity path passes ``dout`` back unchanged: dx = dout + (gradient through F).
    """

    param_names = ("Wa", "ba", "Wb", "bb")

    def __init__(self, Wa: np.ndarray, ba: np.ndarray, Wb: np.ndarray, bb: np.ndarray) -> None:
        self.Wa, self.ba, self.Wb, self.bb = Wa, ba, Wb, bb
        self.x: np.ndarray | None = None
        self.h: np.ndarray | None = None  # relu(x @ Wa + ba), (N, H)
        self.dWa = self.dba = self.dWb = self.dbb = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        self.h = np.maximum(x @ self.Wa + self.ba, 0)
        return x + self.h @ self.Wb + self.bb

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.dWb = self.h.T @ dout
        self.dbb = dout.sum(axis=0)
        dpre = (dout @ self.Wb.T) * (self.h > 0)
        self.dWa = self.x.T @ dpre
        self.dba = dpre.sum(axis=0)
        return dout + dpre @ self.Wa.T


def cosine_lr(step: int, total_steps: int, lr_max: float, lr_min: float = 0.0) -> float:
    """Cosine learning-rate schedule: lr_max at step 0, lr_min at total_steps."""
    if total_steps < 1 or not 0 <= step <= total_steps:
        raise ValueError(
            f"need 0 <= step <= total_steps and total_steps >= 1, got {step}, {total_steps}"
        )
    return float(lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos(math.pi * step / total_steps)))


class InvertedDropout(Layer):
    """Dropout that scales at training time: out = x * mask / (1 - p); identity at test time.

    x: any shape -> same shape. Randomness from ``seed`` (an int or a ``np.random.Generator``).
    """

    def __init__(self, dropout_ratio: float = 0.5, seed: SeedLike = None) -> None:
        if not 0.0 <= dropout_ratio < 1.0:
            raise ValueError(f"dropout_ratio must be in [0, 1), got {dropout_ratio}")
        self.dropout_ratio = dropout_ratio
        self.rng = as_generator(seed)
        self.mask: np.ndarray | None = None

    def forward(self, x: np.ndarray, train_flg: bool = True) -> np.ndarray:
        if not train_flg:
            return x.copy()
        keep = 1.0 - self.dropout_ratio
        self.mask = (self.rng.random(x.shape) >= self.dropout_ratio) / keep
        return (x * self.mask).astype(x.dtype, copy=False)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return (dout * self.mask).astype(dout.dtype, copy=False)


#: exercise name -> reference object
EXERCISES: dict[str, Any] = {
    "conv_param_count": conv_param_count,
    "receptive_field": receptive_field,
    "shift_images": shift_images,
    "random_shift": random_shift,
    "save_params": save_params,
    "load_params": load_params,
    "stratified_split": stratified_split,
    "LeakyRelu": LeakyRelu,
    "GlobalAvgPooling": GlobalAvgPooling,
    "build_linear_net": build_linear_net,
    "build_fashion_cnn": build_fashion_cnn,
    "build_my_cnn": build_my_cnn,
    "ResidualBlock": ResidualBlock,
    "cosine_lr": cosine_lr,
    "InvertedDropout": InvertedDropout,
}
