"""The real MNIST and Fashion-MNIST (../shared/data or $COURSE_LIB_DATA); skipped if absent."""

from __future__ import annotations

import numpy as np
import pytest
from datasets_support import LocalServer, refused_url

from course_lib.datasets import (
    ENV_VAR,
    FASHION_MNIST,
    MNIST,
    DatasetError,
    load_fashion_mnist,
    load_mnist,
    verify_dataset,
)

pytestmark = pytest.mark.slow

TRAIN_COUNTS = {
    "mnist": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    "fashion-mnist": [6000] * 10,
}
TEST_COUNTS = {
    "mnist": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
    "fashion-mnist": [1000] * 10,
}
LOADERS = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}


@pytest.fixture(scope="module")
def real_data(data_dir):
    """The lead's ``data_dir`` fixture (tests/conftest.py): skips when the data is absent."""
    return data_dir


def _dataset_dir(real_data, name):
    if not (real_data / name).is_dir():
        pytest.skip(f"{real_data / name} not present")
    return real_data


@pytest.fixture(scope="module", params=["mnist", "fashion-mnist"])
def raw(request, real_data):
    """``name, ((x, t), (xt, tt))`` loaded with normalize=False, flatten=False, one-hot."""
    name = request.param
    data_dir = _dataset_dir(real_data, name)
    loader = LOADERS[name]
    return (
        name,
        data_dir,
        loader(
            normalize=False, flatten=False, one_hot_label=True, data_dir=data_dir, download=False
        ),
    )


def test_default_load_shapes_dtypes_ranges_and_class_counts(raw):
    name, data_dir, ((x_raw, t_onehot), (xt_raw, tt_onehot)) = raw
    (x, t), (xt, tt) = LOADERS[name](data_dir=data_dir, download=False)
    assert x.shape == (60000, 784) and xt.shape == (10000, 784)
    assert x.dtype == np.float32 and xt.dtype == np.float32
    assert t.shape == (60000,) and tt.shape == (10000,)
    assert t.dtype == np.uint8 and tt.dtype == np.uint8
    assert x.min() == 0.0 and x.max() == 1.0 and xt.min() == 0.0 and xt.max() == 1.0
    assert np.bincount(t, minlength=10).tolist() == TRAIN_COUNTS[name]
    assert np.bincount(tt, minlength=10).tolist() == TEST_COUNTS[name]
    # the same data as the raw, unflattened, one-hot variant
    assert np.array_equal(x * np.float32(255.0), x_raw.reshape(60000, 784))
    assert np.array_equal(xt * np.float32(255.0), xt_raw.reshape(10000, 784))
    np.testing.assert_array_equal(t, t_onehot.argmax(axis=1))
    np.testing.assert_array_equal(tt, tt_onehot.argmax(axis=1))


def test_raw_unflattened_one_hot_variant(raw):
    name, _, ((x, t), (xt, tt)) = raw
    assert x.shape == (60000, 1, 28, 28) and xt.shape == (10000, 1, 28, 28)
    assert x.dtype == np.uint8 and x.max() == 255 and x.min() == 0
    assert t.shape == (60000, 10) and tt.shape == (10000, 10) and t.dtype == np.float32
    assert set(np.unique(t).tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(t.sum(axis=1), np.ones(60000, np.float32))
    assert t.sum(axis=0).astype(int).tolist() == TRAIN_COUNTS[name]


def test_first_training_labels_are_the_known_ones(raw):
    name, _, ((_, t), _) = raw
    expected = {
        "mnist": [5, 0, 4, 1, 9, 2, 1, 3, 1, 4],
        "fashion-mnist": [9, 0, 0, 3, 0, 2, 7, 2, 5, 5],
    }
    assert t[:10].argmax(axis=1).tolist() == expected[name]


def test_environment_variable_selects_the_data_dir(real_data, monkeypatch):
    data_dir = _dataset_dir(real_data, "mnist")
    monkeypatch.setenv(ENV_VAR, str(data_dir))
    (_, _), (xt, tt) = load_mnist(flatten=False, download=False)
    assert xt.shape == (10000, 1, 28, 28) and tt[:3].tolist() == [7, 2, 1]


@pytest.mark.parametrize("spec", [MNIST, FASHION_MNIST], ids=["mnist", "fashion-mnist"])
def test_shared_files_verify(real_data, spec):
    data_dir = _dataset_dir(real_data, spec.name)
    checks = verify_dataset(spec, data_dir)
    assert [c.status for c in checks] == ["ok"] * 4, [c.problems for c in checks]


def test_real_mnist_download_from_a_local_mirror(real_data, tmp_path, monkeypatch):
    """The built-in MNIST checksums accept the real files served over HTTP (one dead mirror)."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    source = _dataset_dir(real_data, "mnist") / "mnist"
    routes = {
        f"/mnist/{f.gz_name}": (source / f.gz_name).read_bytes() for f in MNIST.files.values()
    }
    with LocalServer(routes) as server, refused_url() as dead:
        (x, t), (xt, tt) = load_mnist(
            data_dir=tmp_path, mirrors=[dead, server.url("/mnist")], progress=False
        )
    assert x.shape == (60000, 784) and np.bincount(t).tolist() == TRAIN_COUNTS["mnist"]
    assert xt.shape == (10000, 784) and np.bincount(tt).tolist() == TEST_COUNTS["mnist"]
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(
        f.gz_name for f in MNIST.files.values()
    )


def test_dataset_folder_itself_as_data_dir(real_data):
    """``data_dir=.../mnist`` works too, and Fashion-MNIST refuses MNIST's files there."""
    folder = _dataset_dir(real_data, "mnist") / "mnist"
    before = sorted(p.name for p in folder.iterdir())
    (_, _), (xt, tt) = load_mnist(data_dir=folder, download=False)
    assert xt.shape == (10000, 784) and tt[:3].tolist() == [7, 2, 1]
    with pytest.raises(DatasetError, match=r"\(it is MNIST train-images-idx3-ubyte\)"):
        load_fashion_mnist(data_dir=folder)  # download allowed, yet nothing is written
    assert sorted(p.name for p in folder.iterdir()) == before
