"""Loading synthetic datasets placed in a data directory (no network), and data-dir resolution."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
from datasets_support import FILE_KEYS, Synthetic, gzip_bytes, make_synthetic, refused_url

from course_lib.datasets import (
    DATASETS,
    ENV_VAR,
    DatasetError,
    IDXFormatError,
    get_data_dir,
    load_dataset,
    load_fashion_mnist,
    load_mnist,
    user_cache_dir,
    verify_dataset,
)


@pytest.fixture
def tiny() -> Synthetic:
    return make_synthetic("tiny", n_train=60, n_test=20, seed=3)


@pytest.fixture
def offline_spec(tiny):
    """The synthetic spec with a mirror that refuses connections (never the internet)."""
    with refused_url() as url:
        yield tiny.spec(mirrors=(url,))


@pytest.mark.parametrize(
    ("normalize", "flatten", "one_hot"), list(itertools.product([True, False], repeat=3))
)
def test_book_options_give_the_book_shapes_dtypes_and_values(
    tmp_path, tiny, offline_spec, normalize, flatten, one_hot
):
    tiny.place(tmp_path)
    (x_train, t_train), (x_test, t_test) = load_dataset(
        offline_spec, normalize, flatten, one_hot, tmp_path, download=False
    )
    for x, t, split in ((x_train, t_train, "train"), (x_test, t_test, "test")):
        images, labels = tiny.arrays[f"{split}_images"], tiny.arrays[f"{split}_labels"]
        n = len(labels)
        assert x.shape == ((n, 784) if flatten else (n, 1, 28, 28))
        if normalize:
            assert x.dtype == np.float32
            assert 0.0 <= x.min() and x.max() <= 1.0
            expected = images.reshape(x.shape).astype(np.float32) / np.float32(255.0)
            np.testing.assert_array_equal(x, expected)
        else:
            assert x.dtype == np.uint8
            np.testing.assert_array_equal(x, images.reshape(x.shape))
        if one_hot:
            assert t.shape == (n, 10) and t.dtype == np.float32
            np.testing.assert_array_equal(t.sum(axis=1), np.ones(n))
            np.testing.assert_array_equal(t.argmax(axis=1), labels)
            assert set(np.unique(t)) <= {0.0, 1.0}
        else:
            assert t.shape == (n,) and t.dtype == np.uint8
            np.testing.assert_array_equal(t, labels)
        assert x.flags.writeable and x.flags.c_contiguous and t.flags.writeable


def test_extremes_map_to_zero_and_one(tmp_path, tiny, offline_spec):
    tiny.place(tmp_path)
    (x, _), _ = load_dataset(offline_spec, data_dir=tmp_path, download=False)
    assert x.min() == 0.0 and x.max() == 1.0


def test_dtype_option_sets_images_and_one_hot_dtype(tmp_path, tiny, offline_spec):
    tiny.place(tmp_path)
    (x, t), _ = load_dataset(
        offline_spec, one_hot_label=True, data_dir=tmp_path, dtype=np.float64, download=False
    )
    assert x.dtype == np.float64 and t.dtype == np.float64
    np.testing.assert_allclose(x, tiny.arrays["train_images"].reshape(-1, 784) / 255.0)


@pytest.mark.parametrize("dtype", [np.int32, "uint8", "not a dtype"])
def test_non_float_dtype_is_rejected(tmp_path, tiny, offline_spec, dtype):
    tiny.place(tmp_path)
    with pytest.raises(TypeError, match="floating-point dtype"):
        load_dataset(offline_spec, data_dir=tmp_path, dtype=dtype, download=False)


def test_results_are_fresh_arrays(tmp_path, tiny, offline_spec):
    tiny.place(tmp_path)
    (x1, t1), _ = load_dataset(offline_spec, normalize=False, data_dir=tmp_path, download=False)
    x1[:] = 7
    t1[:] = 7
    (x2, t2), _ = load_dataset(offline_spec, normalize=False, data_dir=tmp_path, download=False)
    np.testing.assert_array_equal(x2, tiny.arrays["train_images"].reshape(-1, 784))
    np.testing.assert_array_equal(t2, tiny.arrays["train_labels"])


def test_uncompressed_and_mixed_files_are_accepted(tmp_path, tiny, offline_spec):
    tiny.place(tmp_path, compressed=False, keys=("train_images", "test_labels"))
    tiny.place(tmp_path, compressed=True, keys=("train_labels", "test_images"))
    (x, t), (xt, tt) = load_dataset(
        offline_spec, normalize=False, flatten=False, data_dir=tmp_path, download=False
    )
    for got, key in ((x, "train_images"), (t, "train_labels"), (xt, "test_images")):
        np.testing.assert_array_equal(got.reshape(tiny.arrays[key].shape), tiny.arrays[key])
    np.testing.assert_array_equal(tt, tiny.arrays["test_labels"])


def test_missing_files_without_download_give_one_clear_error(tmp_path, tiny, offline_spec):
    tiny.place(tmp_path, keys=("train_images", "train_labels"))
    with pytest.raises(DatasetError) as info:
        load_dataset(offline_spec, data_dir=tmp_path, download=False)
    message = str(info.value)
    assert "2 file(s) missing or unusable" in message
    assert str(tmp_path / "tiny") in message
    assert "t10k-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "train-images" not in message.split("by hand")[1]  # only the missing ones are listed
    assert ENV_VAR in message and "course-lib data verify --dataset tiny" in message
    assert "data_dir argument" in message


def test_corrupt_file_without_download_is_reported_and_left_alone(tmp_path, tiny, offline_spec):
    directory = tiny.place(tmp_path)
    bad = directory / "t10k-labels-idx1-ubyte.gz"
    wrong = tiny.raw["test_labels"][:-1] + bytes([(tiny.raw["test_labels"][-1] + 1) % 10])
    bad.write_bytes(gzip_bytes(wrong))
    with pytest.raises(DatasetError) as info:
        load_dataset(offline_spec, data_dir=tmp_path, download=False)
    assert f"{bad}: SHA-256 of the uncompressed data is" in str(info.value)
    assert bad.read_bytes() == gzip_bytes(wrong)


def test_truncated_cached_file_is_reported(tmp_path, tiny, offline_spec):
    directory = tiny.place(tmp_path)
    path = directory / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DatasetError, match="corrupt or truncated gzip data") as info:
        load_dataset(offline_spec, data_dir=tmp_path, download=False)
    assert str(path) in str(info.value)


def test_bad_uncompressed_copy_falls_back_to_the_good_gz(tmp_path, tiny, offline_spec):
    directory = tiny.place(tmp_path)
    (directory / "train-labels-idx1-ubyte").write_bytes(b"junk")
    (_, t), _ = load_dataset(offline_spec, data_dir=tmp_path, download=False)
    np.testing.assert_array_equal(t, tiny.arrays["train_labels"])
    check = verify_dataset(offline_spec, tmp_path)[1]
    assert check.ok and check.path == directory / "train-labels-idx1-ubyte.gz"
    assert "bytes after decompression, expected" in check.problems[0]


def _with(tiny: Synthetic, **arrays: np.ndarray) -> Synthetic:
    return Synthetic.from_arrays(tiny.name, {**tiny.arrays, **arrays})


def test_label_count_must_match_image_count(tmp_path, tiny):
    bad = _with(tiny, test_labels=tiny.arrays["test_labels"][:-1])
    bad.place(tmp_path)
    with pytest.raises(DatasetError, match="19 labels for 20 images"):
        load_dataset(bad.spec(), data_dir=tmp_path, download=False)


def test_labels_must_be_class_indices(tmp_path, tiny):
    labels = tiny.arrays["train_labels"].copy()
    labels[5] = 10
    bad = _with(tiny, train_labels=labels)
    bad.place(tmp_path)
    with pytest.raises(DatasetError, match="label 10 out of range for 10 classes"):
        load_dataset(bad.spec(), data_dir=tmp_path, download=False)


def test_image_shape_must_match_the_spec(tmp_path):
    small = make_synthetic("small", image_shape=(8, 8))
    small.place(tmp_path)
    with pytest.raises(DatasetError, match=r"images of shape \(8, 8\), expected \(28, 28\)"):
        load_dataset(small.spec(image_shape=(28, 28)), data_dir=tmp_path, download=False)
    (x, _), _ = load_dataset(small.spec(), flatten=False, data_dir=tmp_path, download=False)
    assert x.shape == (60, 1, 8, 8)


def test_labels_file_in_place_of_images_is_a_wrong_magic_error(tmp_path, tiny):
    swapped = _with(tiny, test_images=tiny.arrays["test_labels"])
    swapped.place(tmp_path)
    with pytest.raises(IDXFormatError, match="wrong IDX magic number 2049"):
        load_dataset(swapped.spec(), data_dir=tmp_path, download=False)


def test_verify_dataset_reports_ok_missing_and_corrupt(tmp_path, tiny, offline_spec):
    directory = tiny.place(tmp_path, keys=("train_images", "train_labels", "test_images"))
    (directory / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b broken")
    checks = verify_dataset(offline_spec, tmp_path)
    assert [c.key for c in checks] == list(FILE_KEYS)
    assert [c.status for c in checks] == ["ok", "corrupt", "ok", "missing"]
    assert "corrupt or truncated gzip data" in checks[1].problems[0]
    assert checks[3].path is None and checks[3].problems == ()
    assert sorted(p.name for p in directory.iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ]


# ----------------------------------------------------------------- data directory


def test_data_dir_argument_beats_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert get_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert get_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"


def test_environment_beats_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert get_data_dir() == tmp_path / "env"
    monkeypatch.setenv(ENV_VAR, "")  # empty means unset
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr("sys.platform", "linux")
    assert get_data_dir() == tmp_path / "xdg" / "course_lib"


def test_relative_and_home_paths_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert get_data_dir("rel") == tmp_path / "rel"
    assert get_data_dir("~/data") == tmp_path / "home" / "data"
    monkeypatch.setenv(ENV_VAR, "~/envdata")
    assert get_data_dir() == tmp_path / "home" / "envdata"


@pytest.mark.parametrize(("value", "error"), [(3, TypeError), ("", ValueError)])
def test_bad_data_dir_values_are_rejected(value, error):
    with pytest.raises(error, match="data_dir"):
        get_data_dir(value)


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        ("linux", {"XDG_CACHE_HOME": "/xdg/cache"}, "/xdg/cache/course_lib"),
        ("linux", {}, "{home}/.cache/course_lib"),
        ("linux", {"XDG_CACHE_HOME": "relative/ignored"}, "{home}/.cache/course_lib"),
        ("darwin", {"XDG_CACHE_HOME": "/xdg/cache"}, "{home}/Library/Caches/course_lib"),
        ("win32", {"LOCALAPPDATA": "/appdata/local"}, "/appdata/local/course_lib/Cache"),
    ],
)
def test_user_cache_dir_per_platform(tmp_path, monkeypatch, platform, env, expected):
    monkeypatch.setattr("sys.platform", platform)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("LOCALAPPDATA", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert user_cache_dir() == Path(expected.format(home=tmp_path))


@pytest.mark.parametrize(
    ("loader", "name"), [(load_mnist, "mnist"), (load_fashion_mnist, "fashion-mnist")]
)
@pytest.mark.parametrize("where", ["argument", "environment", "cache"])
def test_book_loaders_find_their_subdirectory(tmp_path, monkeypatch, tiny, loader, name, where):
    """load_mnist / load_fashion_mnist look up DATASETS at call time and use <dir>/<name>/."""
    with refused_url() as url:
        monkeypatch.setitem(DATASETS, name, tiny.spec(mirrors=(url,), name=name, subdir=name))
        monkeypatch.delenv(ENV_VAR, raising=False)
        monkeypatch.setattr("sys.platform", "linux")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        root = {
            "argument": tmp_path / "arg",
            "environment": tmp_path / "env",
            "cache": tmp_path / "cache" / "course_lib",
        }[where]
        tiny.place(root, subdir=name)
        if where == "environment":
            monkeypatch.setenv(ENV_VAR, os.fspath(root))
        data_dir = root if where == "argument" else None
        (x, t), (xt, tt) = loader(normalize=False, flatten=False, data_dir=data_dir, download=False)
        assert x.shape == (60, 1, 28, 28) and x.dtype == np.uint8
        assert xt.shape == (20, 1, 28, 28)
        np.testing.assert_array_equal(t, tiny.arrays["train_labels"])
        np.testing.assert_array_equal(tt, tiny.arrays["test_labels"])


def test_files_of_another_registered_dataset_are_named(tmp_path, monkeypatch, tiny):
    other = make_synthetic("other", seed=11)
    monkeypatch.setitem(DATASETS, "other", other.spec())
    other.place(tmp_path, subdir="tiny")
    with pytest.raises(DatasetError, match=r"\(it is Synthetic other train-images-idx3-ubyte\)"):
        load_dataset(tiny.spec(), data_dir=tmp_path, download=False)
