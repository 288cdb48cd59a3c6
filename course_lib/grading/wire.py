"""The wire format between the verdict process and a student's kernel: data only.

One message is a *frame*: ``[u32 header length][header JSON][u32 blob count]([u64 length][bytes])*``.
The JSON header carries structure; each blob is one array as ``.npy`` bytes, read back with
``allow_pickle=False``. :class:`Codec` maps Python values onto that: numbers, strings, lists,
tuples, dicts, slices, dtypes, arrays and NumPy scalars by value; a ``numpy.random.Generator``
by bit generator and state; exceptions by type name, message and traceback (a builtin exception
type is rebuilt, any other becomes a :class:`RemoteError` subclass of that name); every other
object as a *reference* (a handle plus its name, module and class hierarchy), turned into a
proxy by the receiving side. Nothing here runs code from the other side.

The endpoint that sends and serves requests over this format is :mod:`course_lib.grading.rpc`.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import socket
import struct
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "MAX_FRAME_BYTES",
    "Codec",
    "ProtocolError",
    "RemoteError",
    "RemoteTimeout",
    "array_from_bytes",
    "array_to_bytes",
    "digest",
    "exception_from_wire",
    "exception_to_wire",
    "recv_frame",
    "rng_state",
    "send_frame",
]

#: Largest message accepted from the other side (header and arrays together).
MAX_FRAME_BYTES = 256 * 1024 * 1024
#: Deepest container nesting encoded by value.
MAX_DEPTH = 32

_BUILTIN_EXCEPTIONS = {
    name: obj
    for name, obj in vars(builtins).items()
    if isinstance(obj, type) and issubclass(obj, BaseException)
}


_BUILTIN_TYPES = (float, int, bool, complex, str, bytes, list, tuple, dict, set, object)


class ProtocolError(RuntimeError):
    """The other side broke the protocol, closed the socket or sent too much."""


class RemoteTimeout(TimeoutError):
    """The other side did not answer in time."""


class RemoteError(Exception):
    """An exception raised on the other side whose type is not a Python builtin."""

    remote_type = "RemoteError"
    remote_traceback = ""


_remote_error_classes: dict[str, type[RemoteError]] = {}


def exception_from_wire(info: dict[str, Any]) -> BaseException:
    name = str(info.get("type", "Exception"))
    message = str(info.get("msg", ""))
    cls: type[BaseException]
    builtin = _BUILTIN_EXCEPTIONS.get(name)
    if builtin is not None and info.get("module") == "builtins" and issubclass(builtin, Exception):
        cls = builtin
    else:
        if name not in _remote_error_classes:
            _remote_error_classes[name] = type(name, (RemoteError,), {"remote_type": name})
        cls = _remote_error_classes[name]
    try:
        exc = cls(message)
    except Exception:  # an exception class with an unusual constructor
        exc = RemoteError(f"{name}: {message}")
    try:
        exc.remote_traceback = str(info.get("tb", ""))  # type: ignore[attr-defined]
    except AttributeError:
        pass
    return exc


def exception_to_wire(exc: BaseException) -> dict[str, Any]:
    cls = type(exc)
    try:
        message = str(exc)
    except Exception:
        message = f"<{cls.__name__} whose message cannot be printed>"
    tb = "".join(traceback.format_exception(cls, exc, exc.__traceback__))
    name = getattr(exc, "remote_type", None) or cls.__name__
    module = "remote" if isinstance(exc, RemoteError) else cls.__module__
    return {"type": str(name), "module": str(module), "msg": message[:20000], "tb": tb[-20000:]}


# --------------------------------------------------------------------------------------------
# Framing: [u32 header length][header JSON][u32 blob count]([u64 length][bytes])*


def send_frame(sock: socket.socket, header: dict[str, Any], blobs: list[bytes]) -> None:
    head = json.dumps(header, allow_nan=True).encode("utf-8")
    parts = [struct.pack("!I", len(head)), head, struct.pack("!I", len(blobs))]
    for blob in blobs:
        parts.append(struct.pack("!Q", len(blob)))
        parts.append(blob)
    sock.sendall(b"".join(parts))


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    chunks = []
    remaining = n
    while remaining:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RemoteTimeout("no answer before the deadline")
            sock.settimeout(min(left, 3600.0))
        else:
            sock.settimeout(None)
        try:
            chunk = sock.recv(min(remaining, 1 << 20))
        except TimeoutError as exc:
            raise RemoteTimeout("no answer before the deadline") from exc
        if not chunk:
            raise ProtocolError("the other side closed the connection")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def recv_frame(
    sock: socket.socket, deadline: float | None = None, limit: int = MAX_FRAME_BYTES
) -> tuple[dict[str, Any], list[bytes]]:
    (head_len,) = struct.unpack("!I", _recv_exact(sock, 4, deadline))
    if head_len > limit:
        raise ProtocolError(f"message header of {head_len} bytes is over the limit")
    header = json.loads(_recv_exact(sock, head_len, deadline).decode("utf-8"))
    if not isinstance(header, dict):
        raise ProtocolError("message header is not a JSON object")
    (count,) = struct.unpack("!I", _recv_exact(sock, 4, deadline))
    total = head_len
    blobs = []
    for _ in range(count):
        (size,) = struct.unpack("!Q", _recv_exact(sock, 8, deadline))
        total += size
        if total > limit:
            raise ProtocolError(
                f"message of more than {limit // (1024 * 1024)} MiB: too much data returned"
            )
        blobs.append(_recv_exact(sock, size, deadline))
    return header, blobs


# --------------------------------------------------------------------------------------------
# Values


def digest(array: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(str((array.dtype.str, array.shape)).encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def array_to_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def array_from_bytes(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)


#: Bit generators a ``numpy.random.Generator`` may cross the socket with (by state).
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return {"@nd": value.dtype.str, "v": value.tolist()}
    if isinstance(value, np.integer):
        return int(value)
    return value


def _from_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"@nd", "v"}:
            return np.array(value["v"], dtype=np.dtype(str(value["@nd"])))
        return {k: _from_jsonable(v) for k, v in value.items()}
    return value


def rng_state(gen: np.random.Generator) -> tuple[str, Any]:
    """(bit generator name, JSON-able state) of a Generator."""
    bit = gen.bit_generator
    name = type(bit).__name__
    if name not in _BIT_GENERATORS:
        raise TypeError(f"a Generator with bit generator {name} cannot be sent")
    return name, _jsonable(bit.state)


def make_rng(name: str, state: Any) -> np.random.Generator:
    if name not in _BIT_GENERATORS:
        raise ProtocolError(f"unknown bit generator {name!r}")
    gen = np.random.Generator(getattr(np.random, name)())
    set_rng_state(gen, state)
    return gen


def set_rng_state(gen: np.random.Generator, state: Any) -> None:
    try:
        gen.bit_generator.state = _from_jsonable(state)
    except (TypeError, ValueError, KeyError) as exc:
        raise ProtocolError(f"invalid random generator state: {exc}") from exc


def describe(obj: Any) -> dict[str, Any]:
    """Name, module and kind of an object sent by reference."""
    if isinstance(obj, type):
        kind = "class"
    elif type(obj).__name__ == "module":
        kind = "module"
    elif callable(obj) and hasattr(obj, "__name__"):
        kind = "function"
    else:
        kind = "instance"
    meta: dict[str, Any] = {"kind": kind}
    for key in ("__name__", "__qualname__", "__module__"):
        try:
            value = getattr(obj, key) if kind != "instance" else None
        except Exception:
            value = None
        meta[key.strip("_")] = value if isinstance(value, str) else None
    return meta


def describe_class(cls: type, handle_of: Callable[[Any], int], depth: int = 0) -> dict[str, Any]:
    """A class's name, module and (recursively) bases, so the other side can mirror its MRO."""
    meta = {"h": handle_of(cls), **describe(cls), "bases": []}
    if depth < 8:
        meta["bases"] = [
            describe_class(base, handle_of, depth + 1)
            for base in cls.__bases__
            if base is not object
        ]
    return meta


class Codec:
    """Encodes values for the wire and decodes the other side's values.

    ``make_proxy(handle, meta)`` builds the local stand-in for an object of the other side.
    Objects of this side that cannot travel by value are kept in ``self.objects`` and sent as
    references; a proxy of the other side's object sent back is sent as its handle.
    """

    def __init__(self, make_proxy: Callable[[int, dict[str, Any]], Any]):
        self._make_proxy = make_proxy
        self.objects: dict[int, Any] = {}
        self._ids: dict[int, int] = {}
        self._next = 1
        # proxies of the other side's objects: one per handle, and the handle of each
        self._proxies: dict[int, Any] = {}
        self._proxy_ids: dict[int, tuple[Any, int]] = {}
        # shared arrays (see Endpoint): set by the endpoint
        self.share: Callable[[np.ndarray], int] | None = None
        self.receive_shared: Callable[[int, np.ndarray], np.ndarray] | None = None
        # random generators (by value, identity kept per connection): set by the endpoint
        self.share_rng: Callable[[np.random.Generator], int] | None = None
        self.receive_rng: Callable[[int, str, Any], np.random.Generator] | None = None

    def proxy(self, handle: int, meta: dict[str, Any]) -> Any:
        """The (unique) local stand-in for the other side's object ``handle``."""
        existing = self._proxies.get(handle)
        if existing is not None:
            return existing
        made = self._make_proxy(handle, meta)
        self._proxies[handle] = made
        self._proxy_ids[id(made)] = (made, handle)
        return made

    def proxy_handle(self, value: Any) -> int | None:
        entry = self._proxy_ids.get(id(value))
        return entry[1] if entry is not None and entry[0] is value else None

    # -- references to our objects
    def handle_of(self, obj: Any) -> int:
        key = id(obj)
        handle = self._ids.get(key)
        if handle is None or self.objects.get(handle) is not obj:
            handle = self._next
            self._next += 1
            self.objects[handle] = obj
            self._ids[key] = handle
        return handle

    def ref(self, obj: Any) -> dict[str, Any]:
        meta = describe(obj)
        if meta["kind"] == "instance":
            meta["cls"] = describe_class(type(obj), self.handle_of)
        elif meta["kind"] == "class":
            meta = describe_class(obj, self.handle_of)
        return {"@": "ref", "h": self.handle_of(obj), "meta": meta}

    # -- encoding
    def encode(
        self, value: Any, blobs: list[bytes], arrays: list[np.ndarray] | None = None, depth: int = 0
    ) -> Any:
        if depth > MAX_DEPTH:
            raise ValueError("value nested too deeply to send")
        proxy_handle = self.proxy_handle(value)
        if proxy_handle is not None:
            return {"@": "back", "h": proxy_handle}
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int) and type(value) is int:
            return value if abs(value) < 2**63 else {"@": "bigint", "v": str(value)}
        if isinstance(value, float) and type(value) is float:
            return value
        if isinstance(value, complex) and type(value) is complex:
            return {"@": "complex", "v": [value.real, value.imag]}
        if isinstance(value, np.ndarray) and type(value) is np.ndarray and value.dtype != object:
            blobs.append(array_to_bytes(value))
            if arrays is not None:
                arrays.append(value)
            out = {"@": "nd", "b": len(blobs) - 1}
            if self.share is not None:
                out["s"] = self.share(value)
            return out
        if type(value) is np.random.Generator and self.share_rng is not None:
            name, state = rng_state(value)
            return {"@": "rng", "w": self.share_rng(value), "bg": name, "st": state}
        if isinstance(value, np.generic) and not isinstance(value, np.object_):
            blobs.append(array_to_bytes(np.asarray(value)))
            return {"@": "np", "b": len(blobs) - 1}
        if type(value) in (list, tuple):
            items = [self.encode(v, blobs, arrays, depth + 1) for v in value]
            return {"@": type(value).__name__, "v": items}
        if type(value) is dict:
            keys = [self.encode(k, blobs, None, depth + 1) for k in value]
            vals = [self.encode(v, blobs, arrays, depth + 1) for v in value.values()]
            return {"@": "dict", "k": keys, "v": vals}
        if type(value) is slice:
            return {
                "@": "slice",
                "v": [
                    self.encode(x, blobs, None, depth + 1)
                    for x in (value.start, value.stop, value.step)
                ],
            }
        if value is Ellipsis:
            return {"@": "ellipsis"}
        if isinstance(value, np.dtype):
            return {"@": "dtype", "v": value.str}
        if isinstance(value, type) and issubclass(value, np.generic) and value is not np.object_:
            return {"@": "scalartype", "v": np.dtype(value).str}
        if isinstance(value, type) and value in _BUILTIN_TYPES:
            return {"@": "builtintype", "v": value.__name__}
        return self.ref(value)

    # -- decoding
    def decode(
        self,
        data: Any,
        blobs: list[bytes],
        arrays: list[tuple[int, np.ndarray]] | None = None,
        depth: int = 0,
    ) -> Any:
        if depth > MAX_DEPTH + 2:
            raise ProtocolError("value nested too deeply")
        if data is None or isinstance(data, (bool, int, float, str)):
            return data
        if isinstance(data, list):  # not produced by encode; accept as a list
            return [self.decode(v, blobs, arrays, depth + 1) for v in data]
        if not isinstance(data, dict):
            raise ProtocolError("unexpected value on the wire")
        tag = data.get("@")
        if tag == "nd":
            index = int(data["b"])
            array = array_from_bytes(blobs[index])
            if "s" in data and self.receive_shared is not None:
                array = self.receive_shared(int(data["s"]), array)
            if arrays is not None:
                arrays.append((index, array))
            return array
        if tag == "np":
            return array_from_bytes(blobs[int(data["b"])])[()]
        if tag == "rng" and self.receive_rng is not None:
            return self.receive_rng(int(data["w"]), str(data["bg"]), data["st"])
        if tag in ("list", "tuple"):
            items = [self.decode(v, blobs, arrays, depth + 1) for v in data["v"]]
            return items if tag == "list" else tuple(items)
        if tag == "dict":
            keys = [self.decode(k, blobs, None, depth + 1) for k in data["k"]]
            vals = [self.decode(v, blobs, arrays, depth + 1) for v in data["v"]]
            return dict(zip(keys, vals))
        if tag == "bigint":
            return int(data["v"])
        if tag == "complex":
            return complex(*data["v"])
        if tag == "slice":
            return slice(*(self.decode(v, blobs, None, depth + 1) for v in data["v"]))
        if tag == "ellipsis":
            return Ellipsis
        if tag == "dtype":
            return np.dtype(str(data["v"]))
        if tag == "scalartype":
            return np.dtype(str(data["v"])).type
        if tag == "builtintype":
            return {t.__name__: t for t in _BUILTIN_TYPES}[str(data["v"])]
        if tag == "back":
            handle = int(data["h"])
            if handle not in self.objects:
                raise ProtocolError(f"unknown handle {handle}")
            return self.objects[handle]
        if tag == "ref":
            return self.proxy(int(data["h"]), dict(data.get("meta") or {}))
        raise ProtocolError(f"unknown value tag {tag!r}")
