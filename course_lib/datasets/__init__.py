"""MNIST and Fashion-MNIST, loaded like the book's ``dataset/mnist.py``.

>>> from course_lib.datasets import load_mnist
>>> (x_train, t_train), (x_test, t_test) = load_mnist(normalize=True, flatten=True)
>>> x_train.shape, x_train.dtype, t_train.shape, t_train.dtype  # doctest: +SKIP
((60000, 784), dtype('float32'), (60000,), dtype('uint8'))

Data directory: the ``data_dir`` argument, else ``$COURSE_LIB_DATA``, else the
per-user cache (:func:`user_cache_dir`). Files live in ``<data dir>/mnist/`` and
``<data dir>/fashion-mnist/`` as gzipped (or plain) IDX files; missing ones are
downloaded from several mirrors and verified by SHA-256. See docs/datasets.md.
"""

from ._errors import ChecksumError, DatasetError, DatasetWarning, DownloadError, IDXFormatError
from .download import DEFAULT_TIMEOUT, download_file
from .idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, parse_idx, read_idx
from .mnist import load_dataset, load_fashion_mnist, load_mnist
from .paths import ENV_VAR, get_data_dir, user_cache_dir
from .registry import DATASETS, FASHION_MNIST, MNIST, DatasetFile, DatasetSpec, get_dataset
from .store import FileCheck, dataset_directory, download_dataset, verify_dataset

__all__ = [
    "DATASETS",
    "DEFAULT_TIMEOUT",
    "ENV_VAR",
    "FASHION_MNIST",
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "MNIST",
    "ChecksumError",
    "DatasetError",
    "DatasetFile",
    "DatasetSpec",
    "DatasetWarning",
    "DownloadError",
    "FileCheck",
    "IDXFormatError",
    "dataset_directory",
    "download_dataset",
    "download_file",
    "get_data_dir",
    "get_dataset",
    "load_dataset",
    "load_fashion_mnist",
    "load_mnist",
    "parse_idx",
    "read_idx",
    "user_cache_dir",
    "verify_dataset",
]
