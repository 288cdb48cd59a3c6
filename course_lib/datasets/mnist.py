"""``load_mnist`` and ``load_fashion_mnist``, with the book's signature and results."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from ._errors import DatasetError
from .download import DEFAULT_TIMEOUT
from .idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, parse_idx
from .registry import DatasetSpec, get_dataset
from .store import fetch_files

__all__ = ["load_dataset", "load_fashion_mnist", "load_mnist"]

Split = tuple[np.ndarray, np.ndarray]


def _float_dtype(dtype: DTypeLike) -> np.dtype:
    try:
        result = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype!r}") from exc
    if result.kind != "f":
        raise TypeError(f"dtype must be a floating-point dtype (e.g. np.float32), got {result}")
    return result


def _parse_split(
    spec: DatasetSpec, images: tuple[Path, bytes], labels: tuple[Path, bytes]
) -> tuple[np.ndarray, np.ndarray]:
    """Parse and cross-check an images file and a labels file (read-only views)."""
    (image_path, image_bytes), (label_path, label_bytes) = images, labels
    x = parse_idx(image_bytes, source=image_path, expected_magic=IDX_IMAGES_MAGIC, copy=False)
    if x.shape[1:] != spec.image_shape:
        raise DatasetError(
            f"{image_path}: images of shape {x.shape[1:]}, expected {spec.image_shape}",
            path=image_path,
        )
    t = parse_idx(label_bytes, source=label_path, expected_magic=IDX_LABELS_MAGIC, copy=False)
    if len(t) != len(x):
        raise DatasetError(
            f"{label_path}: {len(t)} labels for {len(x)} images in {image_path}", path=label_path
        )
    if len(t) and int(t.max()) >= spec.num_classes:
        raise DatasetError(
            f"{label_path}: label {int(t.max())} out of range for {spec.num_classes} classes",
            path=label_path,
        )
    return x, t


def _images(x: np.ndarray, *, normalize: bool, flatten: bool, dtype: np.dtype) -> np.ndarray:
    n = x.shape[0]
    x = x.reshape(n, -1) if flatten else x.reshape(n, 1, *x.shape[1:])
    if not normalize:
        return x.copy()  # writable uint8, like the book's
    out = x.astype(dtype)
    out /= 255.0
    return out


def _labels(t: np.ndarray, *, one_hot: bool, num_classes: int, dtype: np.dtype) -> np.ndarray:
    if not one_hot:
        return t.copy()  # uint8, like the book's
    out = np.zeros((t.shape[0], num_classes), dtype=dtype)
    out[np.arange(t.shape[0]), t] = 1
    return out


def load_dataset(
    dataset: str | DatasetSpec,
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    dtype: DTypeLike = np.float32,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
) -> tuple[Split, Split]:
    """Load an MNIST-like dataset by name (``"mnist"``, ``"fashion-mnist"``) or spec.

    Same arguments and results as :func:`load_mnist`.
    """
    spec = get_dataset(dataset)
    float_dtype = _float_dtype(dtype)
    files = fetch_files(
        spec, data_dir, download=download, mirrors=mirrors, timeout=timeout, progress=progress
    )
    result = []
    for split in ("train", "test"):
        x, t = _parse_split(spec, files[f"{split}_images"], files[f"{split}_labels"])
        result.append(
            (
                _images(x, normalize=normalize, flatten=flatten, dtype=float_dtype),
                _labels(t, one_hot=one_hot_label, num_classes=spec.num_classes, dtype=float_dtype),
            )
        )
    return result[0], result[1]


def _named_loader(dataset: str, name: str, doc: str) -> Callable[..., tuple[Split, Split]]:
    """``load_dataset`` for one dataset: its arguments and results without ``dataset``."""

    def load(*args: Any, **kwargs: Any) -> tuple[Split, Split]:
        return load_dataset(dataset, *args, **kwargs)

    signature = inspect.signature(load_dataset)
    load.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[1:]
    )
    load.__name__ = load.__qualname__ = name
    load.__doc__ = doc
    return load


load_mnist = _named_loader(
    "mnist",
    "load_mnist",
    """Load MNIST (handwritten digits 0-9), like the book's ``dataset/mnist.py``.

    Args:
        normalize: scale pixels to ``[0, 1]`` as ``dtype`` (default float32);
            if False, keep the raw ``uint8`` values 0..255.
        flatten: images as rows of 784 values, ``(N, 784)``; if False, as
            ``(N, 1, 28, 28)`` (channel-first, for convolutional networks).
        one_hot_label: labels as one-hot rows ``(N, 10)`` of ``dtype`` (float32 by
            default; the book's are float64); if False, as ``uint8`` class indices ``(N,)``.
        data_dir: directory holding ``mnist/``; default ``$COURSE_LIB_DATA``, else the
            per-user cache (``~/.cache/course_lib`` on Linux).
        dtype: keyword-only; floating dtype of normalized images and one-hot labels.
        download: keyword-only; download missing files (default True). If False, a
            missing file raises :class:`DatasetError`.
        mirrors: keyword-only; base URLs to download from instead of the built-in ones.
        timeout: keyword-only; seconds a network connect or read may block.
        progress: keyword-only; show a progress bar while downloading.

    Returns:
        ``(x_train, t_train), (x_test, t_test)`` with N = 60000 training and 10000
        test images: ``x`` is ``(N, 784)`` or ``(N, 1, 28, 28)``; ``t`` is ``(N,)``
        uint8 or ``(N, 10)`` one-hot. All arrays are fresh and writable.

    Raises:
        DownloadError: files are missing and no mirror could deliver them (the message
            lists each mirror's error and how to place the files by hand).
        DatasetError: a file is corrupt (and could not be replaced), or missing with
            ``download=False``.
    """,
)

load_fashion_mnist = _named_loader(
    "fashion-mnist",
    "load_fashion_mnist",
    """Load Fashion-MNIST (Zalando's 28x28 clothing images, 10 classes).

    A drop-in replacement for MNIST with the same arguments, shapes and dtypes as
    :func:`load_mnist` (files in ``<data dir>/fashion-mnist/``). Classes:
    0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt,
    7 Sneaker, 8 Bag, 9 Ankle boot.

    Returns:
        ``(x_train, t_train), (x_test, t_test)``: ``x`` ``(N, 784)`` or
        ``(N, 1, 28, 28)``, ``t`` ``(N,)`` uint8 or ``(N, 10)`` one-hot;
        N = 60000 (train), 10000 (test).
    """,
)
