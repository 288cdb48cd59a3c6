"""Reading IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a big-endian header followed by the array's bytes::

    magic number  4 bytes: 0x00 0x00 <type code> <number of dimensions>
    dimensions    one 4-byte unsigned integer per dimension
    data          prod(dimensions) items of the type, row-major

MNIST uses type code 0x08 (unsigned byte): labels have magic number 2049
(``0x00000801``, one dimension ``N``) and images 2051 (``0x00000803``, three
dimensions ``N, 28, 28``). Files may be gzip-compressed; compression is
recognised by the gzip magic bytes, not by the file name.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib

import numpy as np

from ._errors import IDXFormatError

__all__ = [
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "idx_magic",
    "maybe_gunzip",
    "parse_idx",
    "read_bytes",
    "read_idx",
]

#: IDX type codes and the (big-endian) dtypes they stand for.
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

GZIP_MAGIC = b"\x1f\x8b"


def idx_magic(type_code: int, ndim: int) -> int:
    """The IDX magic number for a type code and a number of dimensions."""
    return (type_code << 8) | ndim


#: Magic number of MNIST label files: unsigned bytes, 1 dimension (2049).
IDX_LABELS_MAGIC = idx_magic(0x08, 1)
#: Magic number of MNIST image files: unsigned bytes, 3 dimensions (2051).
IDX_IMAGES_MAGIC = idx_magic(0x08, 3)


def _describe_magic(magic: int) -> str:
    dtype = IDX_TYPES.get((magic >> 8) & 0xFF)
    kind = dtype.name if dtype is not None else f"unknown type 0x{(magic >> 8) & 0xFF:02X}"
    return f"{magic} = 0x{magic:08X}: {kind}, {magic & 0xFF} dimension(s)"


def parse_idx(
    data: bytes | bytearray | memoryview,
    *,
    source: str | os.PathLike[str] = "<bytes>",
    expected_magic: int | None = None,
    copy: bool = True,
) -> np.ndarray:
    """Parse the (uncompressed) bytes of an IDX file into an array.

    Args:
        data: the whole file, header included.
        source: a name for the data (file name or URL) used in error messages.
        expected_magic: if given, the magic number the file must have
            (:data:`IDX_LABELS_MAGIC` = 2049 or :data:`IDX_IMAGES_MAGIC` = 2051).
        copy: if True (default) the result is a writable array that owns its
            memory; if False it may be a read-only view of ``data``.

    Returns:
        An array of shape ``dims`` (e.g. ``(N, 28, 28)`` for images, ``(N,)``
        for labels) in native byte order (``uint8`` for MNIST).

    Raises:
        IDXFormatError: wrong magic number, unknown type code, truncated header,
            or a payload whose length is not exactly ``prod(dims) * itemsize``.
            The message names ``source``.
    """
    view = memoryview(data).cast("B")
    size = len(view)
    name = os.fspath(source)
    path_arg = name if name != "<bytes>" else None
    if size < 4:
        raise IDXFormatError(
            f"{name}: not an IDX file: {size} byte(s), shorter than the 4-byte magic number",
            path=path_arg,
        )
    header = bytes(view[:4])
    if header[:2] == GZIP_MAGIC:
        raise IDXFormatError(
            f"{name}: gzip-compressed data given to parse_idx; decompress it first "
            "(read_idx and read_bytes do that)",
            path=path_arg,
        )
    magic = int.from_bytes(header, "big")
    type_code, ndim = header[2], header[3]
    if header[:2] != b"\x00\x00" or type_code not in IDX_TYPES or ndim == 0:
        raise IDXFormatError(
            f"{name}: not an IDX file: bad magic number {_describe_magic(magic)} "
            "(MNIST labels have 2049, images 2051)",
            path=path_arg,
        )
    if expected_magic is not None and magic != expected_magic:
        raise IDXFormatError(
            f"{name}: wrong IDX magic number {_describe_magic(magic)}; expected "
            f"{_describe_magic(expected_magic)}",
            path=path_arg,
        )
    header_size = 4 + 4 * ndim
    if size < header_size:
        raise IDXFormatError(
            f"{name}: truncated IDX header: {ndim} dimension(s) need {header_size} bytes, "
            f"the file has {size}",
            path=path_arg,
        )
    dims = struct.unpack(f">{ndim}I", bytes(view[4:header_size]))
    dtype = IDX_TYPES[type_code]
    count = math.prod(dims)
    expected = count * dtype.itemsize
    actual = size - header_size
    shape = " x ".join(str(d) for d in dims)
    if actual < expected:
        raise IDXFormatError(
            f"{name}: truncated IDX file: the header promises {shape} {dtype.name} "
            f"({expected} bytes of data) but only {actual} bytes follow",
            path=path_arg,
        )
    if actual > expected:
        raise IDXFormatError(
            f"{name}: malformed IDX file: {actual - expected} unexpected byte(s) after the "
            f"{shape} {dtype.name} data the header describes",
            path=path_arg,
        )
    array = np.frombuffer(view, dtype=dtype, count=count, offset=header_size).reshape(dims)
    if not dtype.isnative:
        return array.astype(dtype.newbyteorder("="))
    return array.copy() if copy else array


def maybe_gunzip(raw: bytes, *, source: str | os.PathLike[str] = "<bytes>") -> bytes:
    """``raw`` decompressed if it starts with the gzip magic bytes, else ``raw`` itself.

    Raises:
        IDXFormatError: gzip data that is corrupt or truncated (names ``source``).
    """
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        name = os.fspath(source)
        raise IDXFormatError(
            f"{name}: corrupt or truncated gzip data: {exc}",
            path=name if name != "<bytes>" else None,
        ) from exc


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The contents of a file, gunzipped if it is gzip-compressed.

    Raises:
        IDXFormatError: the file starts like gzip but is corrupt or truncated.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        raw = f.read()
    return maybe_gunzip(raw, source=path)


def read_idx(path: str | os.PathLike[str], *, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a writable array.

    Args:
        path: the file, e.g. ``.../mnist/train-images-idx3-ubyte.gz``.
        expected_magic: the magic number the file must have, if given.

    Returns:
        The array, shape ``dims`` of the header (``(N, 28, 28)`` uint8 for MNIST
        images, ``(N,)`` uint8 for labels).

    Raises:
        IDXFormatError: corrupt gzip data or a malformed IDX file (names the file).
        OSError: the file cannot be read.
    """
    return parse_idx(read_bytes(path), source=path, expected_magic=expected_magic)
