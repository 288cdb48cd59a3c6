"""IDX parsing on synthetic files written by the tests: valid, corrupt, truncated, wrong magic."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from datasets_support import gzip_bytes, idx_bytes
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from course_lib.datasets import (
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    DatasetError,
    IDXFormatError,
    parse_idx,
    read_idx,
)


def test_magic_numbers_are_the_mnist_ones():
    assert IDX_LABELS_MAGIC == 2049
    assert IDX_IMAGES_MAGIC == 2051


def test_mnist_like_images_and_labels_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    (tmp_path / "img").write_bytes(idx_bytes(images))
    (tmp_path / "lbl.gz").write_bytes(gzip_bytes(idx_bytes(labels)))

    x = read_idx(tmp_path / "img", expected_magic=IDX_IMAGES_MAGIC)
    t = read_idx(tmp_path / "lbl.gz", expected_magic=IDX_LABELS_MAGIC)

    assert x.dtype == np.uint8 and x.shape == (7, 28, 28)
    np.testing.assert_array_equal(x, images)
    assert t.dtype == np.uint8 and t.shape == (7,)
    np.testing.assert_array_equal(t, labels)
    assert x.flags.writeable and x.flags.owndata


def test_gzip_is_detected_by_content_not_by_name(tmp_path):
    labels = np.arange(5, dtype=np.uint8)
    (tmp_path / "labels-no-suffix").write_bytes(gzip_bytes(idx_bytes(labels)))
    (tmp_path / "plain.gz").write_bytes(idx_bytes(labels))
    np.testing.assert_array_equal(read_idx(tmp_path / "labels-no-suffix"), labels)
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), labels)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
def test_all_idx_types_decode_to_native_byte_order(dtype):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    parsed = parse_idx(idx_bytes(array))
    assert parsed.dtype == np.dtype(dtype)
    assert parsed.dtype.isnative
    np.testing.assert_array_equal(parsed, array)


def test_copy_false_gives_a_view_copy_true_a_writable_array():
    data = idx_bytes(np.arange(10, dtype=np.uint8))
    view = parse_idx(data, copy=False)
    assert not view.flags.writeable
    owned = parse_idx(data)
    owned[0] = 99  # must not touch the caller's bytes
    assert data[8] == 0


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
    )
)
def test_round_trip_property(array):
    parsed = parse_idx(idx_bytes(array))
    assert parsed.shape == array.shape
    np.testing.assert_array_equal(parsed, array)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_give_an_array_or_an_idx_error(data):
    try:
        parse_idx(data)
    except IDXFormatError:
        pass


def _header(code: int, dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


BAD_FILES = {
    "empty": (b"", "shorter than the 4-byte magic number"),
    "three bytes": (b"\x00\x00\x08", "shorter than the 4-byte magic number"),
    "text": (b"<html>404 Not Found</html>", "bad magic number"),
    "nonzero leading bytes": (b"\x01\x00\x08\x01" + b"\x00" * 8, "bad magic number"),
    "unknown type code": (_header(0x0A, (2,)) + b"\x00\x00", "unknown type 0x0A"),
    "zero dimensions": (b"\x00\x00\x08\x00", "bad magic number"),
    "truncated header": (b"\x00\x00\x08\x03" + struct.pack(">I", 2), "truncated IDX header"),
    "truncated payload": (
        _header(0x08, (3, 28, 28)) + b"\x00" * (3 * 784 - 1),
        "header promises 3 x 28 x 28 uint8 (2352 bytes of data) but only 2351",
    ),
    "trailing bytes": (_header(0x08, (4,)) + b"\x00" * 5, "1 unexpected byte(s)"),
    "int32 payload not a multiple": (_header(0x0C, (2,)) + b"\x00" * 7, "truncated IDX file"),
}


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("case", list(BAD_FILES))
def test_malformed_files_raise_an_error_naming_the_file(tmp_path, case, compress):
    data, fragment = BAD_FILES[case]
    path = tmp_path / ("bad.gz" if compress else "bad")
    path.write_bytes(gzip_bytes(data) if compress else data)
    with pytest.raises(IDXFormatError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    assert fragment in message
    assert info.value.path == path
    assert isinstance(info.value, DatasetError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("array", "expected", "fragment"),
    [
        (np.zeros(3, np.uint8), IDX_IMAGES_MAGIC, "wrong IDX magic number 2049"),
        (np.zeros((2, 4, 4), np.uint8), IDX_LABELS_MAGIC, "wrong IDX magic number 2051"),
        (np.zeros((2, 4), np.uint8), IDX_IMAGES_MAGIC, "2 dimension(s)"),
        (np.zeros((2, 4, 4), np.float32), IDX_IMAGES_MAGIC, "float32"),
    ],
)
def test_wrong_magic_number_is_rejected(tmp_path, array, expected, fragment):
    path = tmp_path / "file-idx"
    path.write_bytes(idx_bytes(array))
    with pytest.raises(IDXFormatError) as info:
        read_idx(path, expected_magic=expected)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)
    assert f"expected {expected}" in str(info.value)


def test_truncated_gzip_is_reported_with_the_file_name(tmp_path):
    good = gzip_bytes(idx_bytes(np.arange(1000, dtype=np.int32)))
    path = tmp_path / "cut.gz"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(IDXFormatError, match="corrupt or truncated gzip data") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_corrupted_gzip_stream_is_reported(tmp_path):
    good = bytearray(gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32)), mtime=0))
    for i in range(20, 40):  # inside the deflate stream
        good[i] ^= 0xFF
    path = Path(tmp_path / "flipped.gz")
    path.write_bytes(bytes(good))
    with pytest.raises(IDXFormatError, match="corrupt or truncated gzip data"):
        read_idx(path)


def test_parse_idx_on_gzip_bytes_says_to_decompress():
    with pytest.raises(IDXFormatError, match="decompress it first"):
        parse_idx(gzip_bytes(idx_bytes(np.zeros(2, np.uint8))), source="x.gz")


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")
