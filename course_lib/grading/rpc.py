"""Data-only remote calls between the verdict process and a student's kernel.

The grader runs every autograder test cell in a *verdict process* that never executes student
code (see :mod:`course_lib.grading.verdict`). The student's classes and functions stay in the
student's kernel; the verdict process sees them as proxies, and every call on a proxy becomes a
message over a Unix socket to an agent in the kernel (:mod:`course_lib.grading.agent`).

Only data crosses the socket: JSON for structure and ``.npy`` bytes (``allow_pickle=False``) for
arrays. Anything else travels as a *reference* (a handle plus the object's name and module), so
a student can influence a verdict only through the values their code returns, never through code
running in the verdict process. The protocol is symmetric: a function the test passes to the
student's code (``numerical_gradient(lambda x: ..., x)``) stays in the verdict process and the
student's code calls it back through the same socket.

Arrays have copy-restore semantics, like arguments in Fortran: an array passed to the other side
and modified there in place is written back into the caller's array when the call returns, and
arrays read from attributes of a remote object (``layer.W``) are kept in sync in both directions,
so a gradient check that perturbs ``layer.W`` in place sees its perturbation in the kernel.
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
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "MAX_FRAME_BYTES",
    "Codec",
    "Endpoint",
    "ProtocolError",
    "RemoteError",
    "RemoteTimeout",
    "recv_frame",
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


#: What the kernel may do with the verdict process's objects (functions a test passes in).
_RESTRICTED_OPS = frozenset(
    {
        "call",
        "callmethod",
        "getattr",
        "hasattr",
        "repr",
        "str",
        "len",
        "bool",
        "getitem",
        "iter",
        "array",
    }
)


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


def _exception_from_wire(info: dict[str, Any]) -> BaseException:
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


def _exception_to_wire(exc: BaseException) -> dict[str, Any]:
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


def _digest(array: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(str((array.dtype.str, array.shape)).encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def _array_to_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _array_from_bytes(blob: bytes) -> np.ndarray:
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
            blobs.append(_array_to_bytes(value))
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
            blobs.append(_array_to_bytes(np.asarray(value)))
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
            array = _array_from_bytes(blobs[index])
            if "s" in data and self.receive_shared is not None:
                array = self.receive_shared(int(data["s"]), array)
            if arrays is not None:
                arrays.append((index, array))
            return array
        if tag == "np":
            return _array_from_bytes(blobs[int(data["b"])])[()]
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


# --------------------------------------------------------------------------------------------
# Endpoint


class Endpoint:
    """One side of the symmetric protocol.

    ``request(op, target, *args)`` sends a request and, while it waits for the answer, serves
    the other side's requests (callbacks). Operations on this side's objects: ``getname``,
    ``getattr``, ``setattr``, ``call``, ``callmethod``, ``repr``, ``str``, ``len``, ``bool``,
    ``getitem``, ``setitem``, ``iter``, ``array``, ``deepcopy``, ``hasattr``.
    """

    def __init__(
        self,
        sock: socket.socket,
        make_proxy: Callable[[int, dict[str, Any]], Any],
        *,
        namespace: Callable[[str], Any] | None = None,
        on_stream: Callable[[str, str], None] | None = None,
        limit: int = MAX_FRAME_BYTES,
        restricted: bool = False,
    ):
        self.sock = sock
        self.codec = Codec(lambda h, meta: make_proxy(self, h, meta))
        self.namespace = namespace
        self.on_stream = on_stream
        self.limit = limit
        self.deadline: float | None = None
        self.closed = False
        # a restricted side (the verdict process) lets the other side only call and read its
        # objects, never assign, delete, or reach private attributes such as ``__globals__``
        self.restricted = restricted
        self._seq = 0
        # arrays that crossed the socket, both ways: wire id -> (weak array, digest). A change
        # on either side is sent with the next message, so aliasing survives the crossing
        # (a test that updates ``W`` in place after ``Affine(W, b)`` is seen by the layer).
        self.shared: dict[tuple[str, int], tuple[Any, str]] = {}
        self._shared_ids: dict[int, tuple[Any, tuple[str, int]]] = {}
        self._next_wid = 0
        self.codec.share = self._share
        self.codec.receive_shared = self._receive_shared
        # random generators that crossed: wire id -> (generator, state last seen); their state
        # is synchronised like shared arrays (a Generator passed in is used and advanced)
        self.rngs: dict[tuple[str, int], tuple[np.random.Generator, str]] = {}
        self._rng_ids: dict[int, tuple[np.random.Generator, tuple[str, int]]] = {}
        self.codec.share_rng = self._share_rng
        self.codec.receive_rng = self._receive_rng
        # arrays read from attributes of the other side's objects, kept in sync
        self.tracked: dict[tuple, tuple[np.ndarray, str]] = {}
        # arrays of ours that the other side read from attributes of our objects
        self.exported: dict[tuple, str] = {}

    # ---- sending requests
    def request(self, op: str, target: int | None = None, *args: Any, **kwargs: Any) -> Any:
        if self.closed:
            raise ProtocolError("the connection to the kernel is closed")
        self._seq += 1
        seq = self._seq
        blobs: list[bytes] = []
        sent_arrays: list[np.ndarray] = []
        enc_args = [self.codec.encode(a, blobs, sent_arrays) for a in args]
        enc_kwargs = {str(k): self.codec.encode(v, blobs, sent_arrays) for k, v in kwargs.items()}
        sync = self._outgoing_sync(blobs)
        shared = self._shared_changes(blobs)
        header = {
            "shared": shared,
            "rngs": self._rng_changes(),
            "kind": "req",
            "seq": seq,
            "op": op,
            "target": target,
            "args": enc_args,
            "kwargs": enc_kwargs,
            "sync": sync,
        }
        try:
            send_frame(self.sock, header, blobs)
        except OSError as exc:
            self.closed = True
            raise ProtocolError(f"cannot reach the kernel: {exc}") from exc
        return self._wait_reply(seq, op, sent_arrays)

    def _wait_reply(self, seq: int, op: str, sent_arrays: list[np.ndarray]) -> Any:
        while True:
            try:
                header, blobs = recv_frame(self.sock, self.deadline, self.limit)
            except (ProtocolError, OSError) as exc:
                if not isinstance(exc, RemoteTimeout):
                    self.closed = True
                raise
            kind = header.get("kind")
            if kind == "stream":
                if self.on_stream is not None:
                    self.on_stream(str(header.get("name", "stdout")), str(header.get("text", "")))
                continue
            if kind == "req":
                self._serve_one(header, blobs)
                continue
            if kind != "rep" or header.get("seq") != seq:
                raise ProtocolError("unexpected message from the kernel")
            self._apply_incoming_sync(header.get("sync") or [], blobs)
            self._apply_shared(header.get("shared") or [], blobs)
            self._apply_rngs(header.get("rngs") or [])
            for item in header.get("argsync") or []:
                index, blob = int(item["i"]), int(item["b"])
                if 0 <= index < len(sent_arrays):
                    new = _array_from_bytes(blobs[blob])
                    old = sent_arrays[index]
                    if new.shape == old.shape and old.flags.writeable:
                        np.copyto(old, new, casting="unsafe")
            if "exc" in header:
                raise _exception_from_wire(header["exc"])
            return self.codec.decode(header.get("value"), blobs)

    # ---- shared arrays
    def _share(self, array: np.ndarray) -> int:
        entry = self._shared_ids.get(id(array))
        if entry is not None and entry[0]() is array:
            key = entry[1]
            self.shared[key] = (entry[0], _digest(array))
            return key[1] if key[0] == "mine" else -key[1] - 1
        self._next_wid += 1
        key = ("mine", self._next_wid)
        ref = weakref.ref(array)
        self.shared[key] = (ref, _digest(array))
        self._shared_ids[id(array)] = (ref, key)
        return self._next_wid

    def _receive_shared(self, wid: int, array: np.ndarray) -> np.ndarray:
        key = ("theirs", wid) if wid >= 0 else ("mine", -wid - 1)
        entry = self.shared.get(key)
        if entry is not None:
            existing = entry[0]()
            if (
                existing is not None
                and existing.shape == array.shape
                and existing.dtype == array.dtype
            ):
                if existing.flags.writeable:
                    np.copyto(existing, array)
                self.shared[key] = (entry[0], _digest(existing))
                return existing
        ref = weakref.ref(array)
        self.shared[key] = (ref, _digest(array))
        self._shared_ids[id(array)] = (ref, key)
        return array

    def _share_rng(self, gen: np.random.Generator) -> int:
        entry = self._rng_ids.get(id(gen))
        if entry is not None and entry[0] is gen:
            key = entry[1]
        else:
            self._next_wid += 1
            key = ("mine", self._next_wid)
            self._rng_ids[id(gen)] = (gen, key)
        self.rngs[key] = (gen, json.dumps(rng_state(gen)))
        return key[1] if key[0] == "mine" else -key[1] - 1

    def _receive_rng(self, wid: int, name: str, state: Any) -> np.random.Generator:
        key = ("theirs", wid) if wid >= 0 else ("mine", -wid - 1)
        entry = self.rngs.get(key)
        if entry is not None and type(entry[0].bit_generator).__name__ == name:
            gen = entry[0]
            set_rng_state(gen, state)
        else:
            gen = make_rng(name, state)
            self._rng_ids[id(gen)] = (gen, key)
        self.rngs[key] = (gen, json.dumps(rng_state(gen)))
        return gen

    def _rng_changes(self) -> list[dict[str, Any]]:
        out = []
        for key, (gen, last) in list(self.rngs.items()):
            name, state = rng_state(gen)
            now = json.dumps((name, state))
            if now != last:
                out.append(
                    {"k": "theirs" if key[0] == "mine" else "mine", "w": key[1], "st": state}
                )
                self.rngs[key] = (gen, now)
        return out

    def _apply_rngs(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            key = (str(item["k"]), int(item["w"]))
            entry = self.rngs.get(key)
            if entry is None:
                continue
            set_rng_state(entry[0], item["st"])
            self.rngs[key] = (entry[0], json.dumps(rng_state(entry[0])))

    def _shared_changes(self, blobs: list[bytes]) -> list[dict[str, Any]]:
        out = []
        for key, (ref, digest) in list(self.shared.items()):
            array = ref()
            if array is None:
                del self.shared[key]
                continue
            now = _digest(array)
            if now != digest:
                blobs.append(_array_to_bytes(array))
                # the receiver's view of the id: its "mine" is our "theirs"
                out.append(
                    {
                        "k": "theirs" if key[0] == "mine" else "mine",
                        "w": key[1],
                        "b": len(blobs) - 1,
                    }
                )
                self.shared[key] = (ref, now)
        return out

    def _apply_shared(self, items: list[dict[str, Any]], blobs: list[bytes]) -> None:
        for item in items:
            key = (str(item["k"]), int(item["w"]))
            entry = self.shared.get(key)
            if entry is None:
                continue
            array = entry[0]()
            new = _array_from_bytes(blobs[int(item["b"])])
            if array is None or array.shape != new.shape or not array.flags.writeable:
                continue
            np.copyto(array, new, casting="unsafe")
            self.shared[key] = (entry[0], _digest(array))

    # ---- tracked attribute arrays
    def track(self, key: tuple, array: np.ndarray) -> None:
        self.tracked[key] = (array, _digest(array))

    def _outgoing_sync(self, blobs: list[bytes]) -> list[dict[str, Any]]:
        out = []
        for key, (array, digest) in list(self.tracked.items()):
            now = _digest(array)
            if now != digest:
                blobs.append(_array_to_bytes(array))
                out.append({"h": key[0], "path": list(key[1:]), "b": len(blobs) - 1})
                self.tracked[key] = (array, now)
        return out

    def _apply_incoming_sync(self, items: list[dict[str, Any]], blobs: list[bytes]) -> None:
        for item in items:
            key = (int(item["h"]), *item["path"])
            entry = self.tracked.get(key)
            if entry is None:
                continue
            new = _array_from_bytes(blobs[int(item["b"])])
            array = entry[0]
            if new.shape == array.shape and new.dtype == array.dtype:
                np.copyto(array, new)
                self.tracked[key] = (array, _digest(array))
            else:  # the other side replaced the array: stop mirroring it
                del self.tracked[key]

    def _resolve_path(self, handle: int, path: list[Any]) -> Any:
        obj = self.codec.objects[handle]
        for i, step in enumerate(path):
            obj = getattr(obj, step) if i == 0 else obj[step]
        return obj

    # ---- serving requests
    def _serve_one(self, header: dict[str, Any], blobs: list[bytes]) -> bool:
        """Serve one request; return False when the request was ``done``."""
        seq = header.get("seq")
        op = header.get("op")
        if op == "done":
            send_frame(self.sock, {"kind": "rep", "seq": seq, "value": None}, [])
            return False
        out_blobs: list[bytes] = []
        reply: dict[str, Any] = {"kind": "rep", "seq": seq}
        received: list[tuple[int, np.ndarray]] = []
        digests: list[str] = []
        try:
            self._apply_shared(header.get("shared") or [], blobs)
            self._apply_rngs(header.get("rngs") or [])
            for item in header.get("sync") or []:
                target = self._resolve_path(int(item["h"]), list(item["path"]))
                new = _array_from_bytes(blobs[int(item["b"])])
                if isinstance(target, np.ndarray) and target.shape == new.shape:
                    np.copyto(target, new, casting="unsafe")
            args = [self.codec.decode(a, blobs, received) for a in header.get("args") or []]
            kwargs = {
                k: self.codec.decode(v, blobs, received)
                for k, v in (header.get("kwargs") or {}).items()
            }
            digests = [_digest(a) for _, a in received]
            value, export = self._perform(str(op), header.get("target"), args, kwargs)
            reply["value"] = self.codec.encode(value, out_blobs)
            if export is not None and isinstance(value, (np.ndarray, dict)):
                self._export(export, value)
        except BaseException as exc:  # student code may raise anything, even SystemExit
            if isinstance(exc, (ProtocolError, BrokenPipeError)):
                raise
            reply.pop("value", None)
            reply["exc"] = _exception_to_wire(exc)
        argsync = []
        for i, ((_, array), digest) in enumerate(zip(received, digests)):
            if _digest(array) != digest:
                out_blobs.append(_array_to_bytes(array))
                argsync.append({"i": i, "b": len(out_blobs) - 1})
        reply["argsync"] = argsync
        reply["sync"] = self._exported_changes(out_blobs)
        reply["shared"] = self._shared_changes(out_blobs)
        reply["rngs"] = self._rng_changes()
        send_frame(self.sock, reply, out_blobs)
        return True

    def _export(self, key: tuple, value: Any) -> None:
        if isinstance(value, np.ndarray):
            self.exported[key] = _digest(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, np.ndarray) and isinstance(k, (str, int)):
                    self.exported[(*key, k)] = _digest(v)

    def _exported_changes(self, blobs: list[bytes]) -> list[dict[str, Any]]:
        out = []
        for key, digest in list(self.exported.items()):
            try:
                array = self._resolve_path(key[0], list(key[1:]))
            except Exception:
                del self.exported[key]
                continue
            if not isinstance(array, np.ndarray):
                del self.exported[key]
                continue
            now = _digest(array)
            if now != digest:
                blobs.append(_array_to_bytes(array))
                out.append({"h": key[0], "path": list(key[1:]), "b": len(blobs) - 1})
                self.exported[key] = now
        return out

    def _perform(
        self, op: str, target: Any, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[Any, tuple | None]:
        if op == "getname":
            if self.namespace is None:
                raise NameError("no namespace on this side")
            return self.namespace(str(args[0])), None
        if self.restricted and (
            op not in _RESTRICTED_OPS
            or (op in ("getattr", "hasattr", "callmethod") and str(args[0]).startswith("_"))
        ):
            raise PermissionError(f"the grader does not allow {op} on its objects")
        obj = self.codec.objects[int(target)] if target is not None else None
        if op == "getattr":
            name = str(args[0])
            value = getattr(obj, name)
            return value, (int(target), name)
        if op == "hasattr":
            return hasattr(obj, str(args[0])), None
        if op == "setattr":
            setattr(obj, str(args[0]), args[1])
            return None, None
        if op == "delattr":
            delattr(obj, str(args[0]))
            return None, None
        if op == "call":
            return obj(*args, **kwargs), None
        if op == "callmethod":
            name = str(args[0])
            return getattr(obj, name)(*args[1:], **kwargs), None
        if op == "repr":
            return repr(obj)[:10000], None
        if op == "str":
            return str(obj)[:100000], None
        if op == "len":
            return len(obj), None
        if op == "bool":
            return bool(obj), None
        if op == "getitem":
            return obj[args[0]], None
        if op == "setitem":
            obj[args[0]] = args[1]
            return None, None
        if op == "iter":
            items = []
            for i, item in enumerate(obj):
                if i >= 100000:
                    raise ValueError("iterable too long to send")
                items.append(item)
            return items, None
        if op == "array":
            array = np.asarray(obj, *args)
            if array.dtype == object:
                raise TypeError(f"cannot convert {type(obj).__name__} to a numeric array")
            return array, None
        if op == "deepcopy":
            import copy

            return copy.deepcopy(obj), None
        if op == "gradcheck":  # the kernel side only: not in _RESTRICTED_OPS
            from course_lib.grading.batched import kernel_evaluate

            return kernel_evaluate(obj, args[0]), None
        if op == "instancecheck":
            return isinstance(args[0], obj), None
        raise ProtocolError(f"unknown operation {op!r}")

    def serve(self, deadline: float | None = None) -> None:
        """Serve the other side's requests until it sends ``done``."""
        while True:
            header, blobs = recv_frame(self.sock, deadline, self.limit)
            if header.get("kind") != "req":
                raise ProtocolError("expected a request")
            if not self._serve_one(header, blobs):
                return

    def send_stream(self, name: str, text: str) -> None:
        send_frame(self.sock, {"kind": "stream", "name": name, "text": text}, [])
