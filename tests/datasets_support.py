"""Test helpers for course_lib.datasets: IDX writer, synthetic datasets, a local HTTP server.

The IDX writer here is written independently of the library's parser, so the
round-trip tests compare two implementations of the format.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import socket
import struct
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from course_lib.datasets import DatasetFile, DatasetSpec

# IDX type codes of the format (independent of the library's table).
_TYPE_CODES = {
    np.dtype("uint8"): 0x08,
    np.dtype("int8"): 0x09,
    np.dtype("int16"): 0x0B,
    np.dtype("int32"): 0x0C,
    np.dtype("float32"): 0x0D,
    np.dtype("float64"): 0x0E,
}

FILE_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array`` (big-endian header and data)."""
    array = np.asarray(array)
    code = _TYPE_CODES[array.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def gzip_bytes(data: bytes, *, mtime: int = 0) -> bytes:
    return gzip.compress(data, mtime=mtime)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Synthetic:
    """A small MNIST-like dataset: arrays, their IDX bytes, and a spec with their checksums."""

    name: str
    arrays: dict[str, np.ndarray]
    raw: dict[str, bytes]
    image_shape: tuple[int, int] = (28, 28)
    num_classes: int = 10

    @classmethod
    def from_arrays(cls, name: str, arrays: Mapping[str, np.ndarray], **kw: object) -> Synthetic:
        arrays = dict(arrays)
        return cls(name, arrays, {key: idx_bytes(value) for key, value in arrays.items()}, **kw)

    def gz(self, key: str) -> bytes:
        return gzip_bytes(self.raw[key])

    def file_name(self, key: str, *, compressed: bool = True) -> str:
        return FILE_NAMES[key] + (".gz" if compressed else "")

    def spec(self, mirrors: tuple[str, ...] | list[str] = (), **changes: object) -> DatasetSpec:
        """A spec registering the checksums of ``self.raw`` (``changes`` override fields)."""
        files = {
            key: DatasetFile(FILE_NAMES[key], sha256(self.raw[key]), len(self.raw[key]))
            for key in FILE_KEYS
        }
        spec = DatasetSpec(
            name=self.name,
            title=f"Synthetic {self.name}",
            mirrors=tuple(mirrors),
            image_shape=self.image_shape,
            num_classes=self.num_classes,
            homepage="https://example.invalid/tiny",
            **files,
        )
        return dataclasses.replace(spec, **changes) if changes else spec

    def place(
        self,
        data_dir: Path,
        *,
        subdir: str | None = None,
        compressed: bool = True,
        keys: tuple[str, ...] = FILE_KEYS,
    ) -> Path:
        """Write the files into ``data_dir/<subdir>/``; returns that directory."""
        directory = data_dir / (subdir or self.name)
        directory.mkdir(parents=True, exist_ok=True)
        for key in keys:
            body = self.gz(key) if compressed else self.raw[key]
            (directory / self.file_name(key, compressed=compressed)).write_bytes(body)
        return directory

    def served(self, prefix: str = "") -> dict[str, bytes]:
        """``{url path: gz bytes}`` for a :class:`LocalServer` route table."""
        return {f"{prefix}/{self.file_name(key)}": self.gz(key) for key in FILE_KEYS}


def make_synthetic(
    name: str = "tiny",
    *,
    n_train: int = 60,
    n_test: int = 20,
    seed: int = 0,
    image_shape: tuple[int, int] = (28, 28),
    num_classes: int = 10,
) -> Synthetic:
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, size=(n_train, *image_shape), dtype=np.uint8),
        "train_labels": rng.integers(0, num_classes, size=n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, size=(n_test, *image_shape), dtype=np.uint8),
        "test_labels": rng.integers(0, num_classes, size=n_test, dtype=np.uint8),
    }
    # Make sure the extremes occur, so value-range checks mean something.
    arrays["train_images"].flat[0] = 0
    arrays["train_images"].flat[1] = 255
    return Synthetic.from_arrays(name, arrays, image_shape=image_shape, num_classes=num_classes)


def leftovers(directory: Path) -> list[str]:
    """Names of temporary / partial files in ``directory`` (should always be empty)."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


# --------------------------------------------------------------------------- HTTP


@dataclass
class Route:
    """How the local server answers one path.

    kind: "ok" (200, or 206 for a Range request when ``ranges``), "404", "cut"
    (announce the full Content-Length, send ``cut_after`` bytes, close; the first
    ``cut_times`` requests only, then serve normally; None = always),
    "hang" (send ``cut_after`` bytes of the body, or nothing, then wait until the
    server stops).
    """

    kind: str = "ok"
    body: bytes = b""
    ranges: bool = False
    cut_after: int = 0
    cut_times: int | None = None
    content_type: str = "application/octet-stream"


@dataclass
class Request:
    path: str
    range: str | None


class LocalServer:
    """A real HTTP server on 127.0.0.1 (ephemeral port) in a background thread."""

    def __init__(self, routes: Mapping[str, Route | bytes]) -> None:
        self.routes: dict[str, Route] = {
            path: route if isinstance(route, Route) else Route(body=route)
            for path, route in routes.items()
        }
        self.requests: list[Request] = []
        self._cuts: dict[str, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def url(self, prefix: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{prefix}/"

    def count(self, path_suffix: str = "") -> int:
        with self._lock:
            return sum(r.path.endswith(path_suffix) for r in self.requests)

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path
        range_header = handler.headers.get("Range")
        with self._lock:
            self.requests.append(Request(path, range_header))
        route = self.routes.get(path)
        if route is None or route.kind == "404":
            handler.send_error(404, "Not Found")
            return
        body = route.body
        if route.kind == "hang":
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body[: route.cut_after])
            handler.wfile.flush()
            self._stop.wait(timeout=30)
            return
        if route.kind == "cut":
            with self._lock:
                done = self._cuts.get(path, 0)
                cut = route.cut_times is None or done < route.cut_times
                self._cuts[path] = done + 1
            if cut:
                handler.send_response(200)
                handler.send_header("Content-Length", str(len(body)))
                handler.send_header("Content-Type", route.content_type)
                handler.end_headers()
                handler.wfile.write(body[: route.cut_after])
                handler.wfile.flush()
                handler.close_connection = True
                with contextlib.suppress(OSError):
                    handler.connection.shutdown(socket.SHUT_RDWR)
                return
        start = _range_start(range_header) if route.ranges else None
        if start is not None and 0 < start < len(body):
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            part = body[start:]
        else:
            handler.send_response(200)
            part = body
        if route.ranges:
            handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Content-Type", route.content_type)
        handler.send_header("Content-Length", str(len(part)))
        handler.end_headers()
        handler.wfile.write(part)


def _range_start(value: str | None) -> int | None:
    if not value or not value.startswith("bytes="):
        return None
    start = value[len("bytes=") :].split("-", 1)[0]
    return int(start) if start.isdigit() else None


@contextlib.contextmanager
def refused_url() -> Iterator[str]:
    """A base URL on 127.0.0.1 where connections are refused (bound, not listening)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        sock.close()
