"""What the datasets are: file names, checksums and download mirrors.

``DATASETS`` maps a name to a :class:`DatasetSpec`. Loaders look names up here
at call time, so a test (or a course running its own mirror) can point a
dataset elsewhere, e.g.::

    DATASETS["mnist"] = dataclasses.replace(MNIST, mirrors=("http://127.0.0.1:8000/mnist/",))

or pass ``mirrors=[...]`` to :func:`~course_lib.datasets.load_mnist` /
:func:`~course_lib.datasets.download_dataset`. A synthetic dataset is just
another ``DatasetSpec`` with its own checksums.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ._errors import DatasetError

__all__ = [
    "DATASETS",
    "FASHION_MNIST",
    "MNIST",
    "DatasetFile",
    "DatasetSpec",
    "get_dataset",
    "mirror_url",
]

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_URL_SCHEMES = ("http://", "https://", "file://")


@dataclass(frozen=True)
class DatasetFile:
    """One IDX file of a dataset.

    Attributes:
        name: file name without compression suffix, e.g. ``train-images-idx3-ubyte``.
        sha256: SHA-256 (lowercase hex) of the *uncompressed* bytes; gzip headers
            differ between mirrors, the contents do not.
        size: size of the uncompressed bytes, checked before the digest (``None``:
            not checked).
    """

    name: str
    sha256: str
    size: int | None = None

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or "\\" in self.name or self.name.endswith(".gz"):
            raise ValueError(
                f"DatasetFile.name must be a plain file name without .gz: {self.name!r}"
            )
        if not _SHA256_RE.match(self.sha256):
            raise ValueError(f"DatasetFile.sha256 must be 64 lowercase hex digits: {self.sha256!r}")
        if self.size is not None and self.size < 0:
            raise ValueError(f"DatasetFile.size must be >= 0: {self.size}")

    @property
    def gz_name(self) -> str:
        """The name of the gzip-compressed file (``<name>.gz``), as mirrors serve it."""
        return self.name + ".gz"


@dataclass(frozen=True)
class DatasetSpec:
    """An MNIST-like dataset: four IDX files, mirrors, image shape and classes.

    Files live in ``<data dir>/<subdir>/`` as ``<name>.gz`` or uncompressed ``<name>``;
    mirrors are base URLs to which ``<name>.gz`` is appended.
    """

    name: str
    title: str
    train_images: DatasetFile
    train_labels: DatasetFile
    test_images: DatasetFile
    test_labels: DatasetFile
    mirrors: tuple[str, ...]
    subdir: str = ""
    image_shape: tuple[int, int] = (28, 28)
    num_classes: int = 10
    homepage: str = ""
    class_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.subdir:
            object.__setattr__(self, "subdir", self.name)
        object.__setattr__(self, "mirrors", _check_mirrors(self.mirrors))
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes"
            )

    @property
    def files(self) -> dict[str, DatasetFile]:
        """The four files keyed ``train_images``, ``train_labels``, ``test_images``,
        ``test_labels``."""
        return {
            "train_images": self.train_images,
            "train_labels": self.train_labels,
            "test_images": self.test_images,
            "test_labels": self.test_labels,
        }


def _check_mirrors(mirrors: object) -> tuple[str, ...]:
    if isinstance(mirrors, str):
        raise TypeError("mirrors must be a sequence of base URLs, not a single string")
    try:
        result = tuple(mirrors)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"mirrors must be a sequence of base URLs, got {mirrors!r}") from None
    for url in result:
        if not isinstance(url, str) or not url.startswith(_URL_SCHEMES):
            raise ValueError(f"a mirror must be an http://, https:// or file:// URL, got {url!r}")
    return result


def mirror_url(mirror: str, filename: str) -> str:
    """The URL of ``filename`` on a mirror (a base URL, with or without trailing ``/``)."""
    return mirror.rstrip("/") + "/" + filename


MNIST = DatasetSpec(
    name="mnist",
    title="MNIST",
    train_images=DatasetFile(
        "train-images-idx3-ubyte",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        47040016,
    ),
    train_labels=DatasetFile(
        "train-labels-idx1-ubyte",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        60008,
    ),
    test_images=DatasetFile(
        "t10k-images-idx3-ubyte",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        7840016,
    ),
    test_labels=DatasetFile(
        "t10k-labels-idx1-ubyte",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        10008,
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        # The original site; it often refuses downloads, so it is tried last.
        "http://yann.lecun.com/exdb/mnist/",
    ),
    homepage="http://yann.lecun.com/exdb/mnist/",
    class_names=tuple(str(i) for i in range(10)),
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    train_images=DatasetFile(
        "train-images-idx3-ubyte",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        47040016,
    ),
    train_labels=DatasetFile(
        "train-labels-idx1-ubyte",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        60008,
    ),
    test_images=DatasetFile(
        "t10k-images-idx3-ubyte",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        7840016,
    ),
    test_labels=DatasetFile(
        "t10k-labels-idx1-ubyte",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        10008,
    ),
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
)

#: The datasets by name. Loaders look names up here at call time.
DATASETS: dict[str, DatasetSpec] = {MNIST.name: MNIST, FASHION_MNIST.name: FASHION_MNIST}


def get_dataset(dataset: str | DatasetSpec) -> DatasetSpec:
    """The :class:`DatasetSpec` for a name in :data:`DATASETS` (or the spec itself)."""
    if isinstance(dataset, DatasetSpec):
        return dataset
    if isinstance(dataset, str):
        try:
            return DATASETS[dataset]
        except KeyError:
            raise DatasetError(
                f"unknown dataset {dataset!r}; known: {', '.join(sorted(DATASETS))}"
            ) from None
    raise TypeError(f"dataset must be a name or a DatasetSpec, got {type(dataset).__name__}")
