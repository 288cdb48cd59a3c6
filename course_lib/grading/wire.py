"""The wire format between the verdict process and a student's kernel: data only.

A message is a length (u64) and one msgpack map. :class:`Codec` maps values onto it: numbers,
strings, bytes, containers, slices, dtypes and NumPy scalars by value; arrays (``.npy``, read
back with ``allow_pickle=False``) and ``numpy.random.Generator`` (bit generator and state) by
value *and* identity, with copy-restore; every other object as a reference the other side turns
into a proxy. Exceptions cross by type name, message and traceback. Nothing here runs code from
the other side. Design: docs/grading.md, "Tamper resistance: the design", item 1.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import itertools
import socket
import struct
import sys
import time
import traceback
import types
import weakref
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np

#: Largest message accepted from the other side.
MAX_FRAME_BYTES = 256 * 1024 * 1024
#: Deepest container nesting encoded by value.
MAX_DEPTH = 32
#: Bit generators a ``numpy.random.Generator`` may cross the socket with (by state).
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")

_BUILTIN_TYPES = {t.__name__: t for t in (float, int, bool, complex, str, bytes, list, tuple)}
_BUILTIN_TYPES.update(dict=dict, set=set, object=object)


class ProtocolError(RuntimeError):
    """The other side broke the protocol, closed the socket or sent too much."""


class RemoteTimeout(TimeoutError):
    """The other side did not answer in time."""


class RemoteError(Exception):
    """An exception raised on the other side whose type is not a Python builtin (a subclass
    named after that type)."""

    remote_traceback = ""


def exception_from_wire(info: dict[str, Any]) -> BaseException:
    """The exception :func:`exception_to_wire` sent: a builtin type rebuilt, any other type a
    :class:`RemoteError` subclass of that name; its ``remote_traceback`` is the other side's."""
    name, message = str(info.get("type", "Exception")), str(info.get("msg", ""))
    cls = getattr(builtins, name, None) if info.get("module") == "builtins" else None
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = type(name, (RemoteError,), {})
    try:
        exc = cls(message)
    except Exception:  # an exception class with an unusual constructor
        exc = RemoteError(f"{name}: {message}")
    exc.remote_traceback = str(info.get("tb", ""))  # type: ignore[attr-defined]
    return exc


def grader_frame(frame: traceback.FrameSummary) -> bool:
    """A frame of the grader (its package, or the ``contextlib`` decorator it runs the student's
    code in), left out of the tracebacks students see."""
    name = frame.filename.replace("\\", "/")
    return "/course_lib/grading/" in name or name.endswith("/contextlib.py")


def exception_to_wire(exc: BaseException) -> dict[str, Any]:
    try:
        message = str(exc)
    except Exception:
        message = f"<{type(exc).__name__} whose message cannot be printed>"
    shown = link = traceback.TracebackException.from_exception(exc)
    while link is not None:  # the exception and those it was chained to
        link.stack = traceback.StackSummary.from_list(
            [f for f in link.stack if not grader_frame(f)]
        )
        link = link.__cause__ or link.__context__
    tb = "".join(shown.format())
    name = type(exc).__name__  # a RemoteError's: the other side's type's (see above)
    module = "remote" if isinstance(exc, RemoteError) else type(exc).__module__
    return {"type": name, "module": str(module), "msg": message[:20000], "tb": tb[-20000:]}


def send_frame(sock: socket.socket, message: dict[str, Any]) -> None:
    body = msgpack.packb(message, use_bin_type=True)
    sock.sendall(struct.pack("!Q", len(body)) + body)


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    chunks = []
    while n:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise RemoteTimeout("no answer before the deadline")
        sock.settimeout(None if left is None else min(left, 3600.0))
        try:
            chunk = sock.recv(min(n, 1 << 20))
        except TimeoutError as exc:
            raise RemoteTimeout("no answer before the deadline") from exc
        if not chunk:
            raise ProtocolError("the other side closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv_frame(
    sock: socket.socket, deadline: float | None = None, limit: int = MAX_FRAME_BYTES
) -> dict[str, Any]:
    """The next message; :class:`RemoteTimeout` at ``deadline`` (``time.monotonic``),
    :class:`ProtocolError` when the other side closed, sent more than ``limit`` or garbage."""
    (size,) = struct.unpack("!Q", _recv_exact(sock, 8, deadline))
    if size > limit:
        raise ProtocolError(
            f"message of {size} bytes is over the limit of {limit // (1024 * 1024)} MiB"
        )
    try:
        message = msgpack.unpackb(_recv_exact(sock, size, deadline), raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"unreadable message: {exc}") from exc
    if not isinstance(message, dict):
        raise ProtocolError("a message is not a map")
    return message


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _from_npy(blob: Any) -> np.ndarray:
    if not isinstance(blob, bytes):
        raise ProtocolError("an array is not bytes")
    return np.load(io.BytesIO(blob), allow_pickle=False)


def _plain(value: Any) -> Any:
    """A generator's state as lists, dicts and ints (comparable by ``==``; the setter takes it)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value.tolist() if isinstance(value, (np.ndarray, np.integer)) else value


def _snapshot(value: Any) -> Any:
    """What tells whether a shared value changed: an array's digest, a generator's state."""
    if isinstance(value, np.ndarray):
        h = hashlib.blake2b(str((value.dtype.str, value.shape)).encode(), digest_size=16)
        h.update(np.ascontiguousarray(value).reshape(-1).view(np.uint8))
        return h.digest()
    return _plain(value.bit_generator.state)


def _held_here() -> int:
    """``sys.getrefcount`` of a value only a shared-table entry and a local variable hold (as in
    :meth:`Codec.changes`), measured rather than assumed (it differs between Python versions)."""
    entry = [np.empty(0)]
    value = entry[0]
    return sys.getrefcount(value)


_HELD_HERE = _held_here()

#: How the values that cross by value alone are rebuilt from their ``"v"`` (a container's: its
#: items decoded), by tag.
_FROM_WIRE: dict[str, Callable[[Any], Any]] = {
    "tuple": tuple,
    "dict": lambda v: dict(zip(v[::2], v[1::2])),
    "slice": lambda v: slice(*v),
    "bigint": int,
    "complex": lambda v: complex(*v),
    "ellipsis": lambda v: Ellipsis,
    "dtype": lambda v: np.dtype(str(v)),
    "np": lambda v: _from_npy(v)[()],
    "type": lambda v: _BUILTIN_TYPES.get(str(v)) or np.dtype(str(v)).type,
}


class Codec:
    """Encodes values for the wire and decodes the other side's values, for one connection.

    ``make_proxy(handle, meta)`` builds the local stand-in for an object of the other side.
    Objects of this side sent by reference are kept in ``self.objects`` (handle -> object); a
    proxy sent back crosses as its handle. Shared arrays and generators are in ``self.shared``:
    key -> [value or weak reference, snapshot, id(value)]; a key is positive when this side made
    the value, negative when the other side did, and crosses negated. The side that made an
    array holds it weakly, the side with the copy while its own code can still reach it (and
    until its last change is sent); when either lets go, both forget it (generators, which
    cannot be held weakly, stay).
    """

    def __init__(self, make_proxy: Callable[[int, dict[str, Any]], Any]):
        self._make_proxy = make_proxy
        self.objects: dict[int, Any] = {}
        self._handles: dict[int, int] = {}  # id(our object) -> handle
        self._proxies: dict[int, Any] = {}  # the other side's handle -> proxy
        self._proxy_handles: dict[int, int] = {}  # id(proxy) -> handle (proxies kept alive)
        self.shared: dict[int, list[Any]] = {}
        self._keys: dict[int, int] = {}  # id(shared value) -> key
        self._new_keys = itertools.count(1)  # handles and keys

    def handle_of(self, obj: Any) -> int:
        handle = self._handles.get(id(obj))
        if handle is None:  # (an object in self.objects stays alive: its id stays its own)
            handle = next(self._new_keys)
            self.objects[handle] = obj
            self._handles[id(obj)] = handle
        return handle

    def _meta(self, obj: Any, depth: int = 0) -> dict[str, Any]:
        """What the other side needs to make a proxy of ``obj``: its kind and, for a class, a
        module or a function, its handle, names (and a class's bases, to mirror its MRO)."""
        if isinstance(obj, type):
            kind = "class"
        elif isinstance(obj, types.ModuleType):
            kind = "module"
        elif callable(obj) and hasattr(obj, "__name__"):
            kind = "function"
        else:
            return {"kind": "instance", "cls": self._meta(type(obj))}
        meta: dict[str, Any] = {"kind": kind, "h": self.handle_of(obj)}
        for key in ("name", "qualname", "module"):
            try:
                value = getattr(obj, f"__{key}__")
            except Exception:
                value = None
            meta[key] = value if isinstance(value, str) else None
        if kind == "class":
            bases = [b for b in obj.__bases__ if b is not object] if depth < 8 else []
            meta["bases"] = [self._meta(b, depth + 1) for b in bases]
        return meta

    def proxy(self, handle: int, meta: dict[str, Any]) -> Any:
        """The one local stand-in for the other side's object ``handle`` (made on first use)."""
        if handle not in self._proxies:
            self._proxies[handle] = proxy = self._make_proxy(handle, meta)
            self._proxy_handles[id(proxy)] = handle
        return self._proxies[handle]

    def _entry(self, key: int) -> Any:
        entry = self.shared.get(key)
        value = entry[0] if entry is not None else None
        return value() if isinstance(value, weakref.ref) else value

    def _share(self, value: Any, snapshot: Any = None) -> dict[str, Any]:
        """A shared value (an array or a generator) as it crosses: its key, made now if new, and
        its data (``snapshot``: its current one, when known)."""
        key = self._keys.get(id(value))
        if key is None or self._entry(key) is not value:
            key = next(self._new_keys)
            self._keys[id(value)] = key
            held = weakref.ref(value) if isinstance(value, np.ndarray) else value
            self.shared[key] = [held, None, id(value)]
        self.shared[key][1] = snapshot = _snapshot(value) if snapshot is None else snapshot
        if isinstance(value, np.ndarray):
            return {"@": "nd", "w": key, "v": _npy(value)}
        name = type(value.bit_generator).__name__
        return {"@": "rng", "w": key, "bg": name, "v": self.encode(snapshot)}

    def _receive(self, key: int, value: Any) -> Any:
        """The local value of the shared ``key``: the one known, updated with the just decoded
        ``value``, or ``value`` itself when new."""
        known = self._entry(key)
        if isinstance(known, np.ndarray):
            if known.shape == value.shape and known.dtype == value.dtype and known.flags.writeable:
                np.copyto(known, value)
                value = known
        elif known is not None and type(known.bit_generator) is type(value.bit_generator):
            known.bit_generator.state = value.bit_generator.state
            value = known
        if value is not known:
            self._keys[id(value)] = key
            # ours (key > 0) held weakly; the other side's copy held (see changes)
            ours = key > 0 and isinstance(value, np.ndarray)
            self.shared[key] = [weakref.ref(value) if ours else value, None, id(value)]
        self.shared[key][1] = _snapshot(value)
        return value

    def changes(self) -> dict[str, Any]:
        """The shared values changed since they last crossed, and those this side forgot.

        Called before each message is sent (after its values are encoded)."""
        sync, gone = [], []
        for key, entry in list(self.shared.items()):
            value = self._entry(key)
            if value is not None and (now := _snapshot(value)) != entry[1]:
                sync.append(self._share(value, now))
            # forgotten: our original is gone, or a copy no code here can reach any more (only
            # this table and this frame hold it)
            held_copy = key < 0 and isinstance(value, np.ndarray)
            if value is None or (held_copy and sys.getrefcount(value) <= _HELD_HERE):
                gone.append(key)
                self._forget(key)
        return {"sync": sync, "gone": gone}

    def apply(self, message: dict[str, Any]) -> None:
        """Apply the other side's :meth:`changes` carried by ``message``."""
        for data in message.get("sync") or []:
            self.decode(data)
        for key in message.get("gone") or []:
            self._forget(-int(key))

    def _forget(self, key: int) -> None:
        entry = self.shared.pop(key, None)
        if entry is not None and self._keys.get(entry[2]) == key:
            del self._keys[entry[2]]

    def encode(self, value: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise ValueError("value nested too deeply to send")
        handle = self._proxy_handles.get(id(value))
        if handle is not None:  # (a proxy stays alive: its id stays its own)
            return {"@": "back", "h": handle}
        if value is None or type(value) in (bool, str, bytes, float):
            return value
        if type(value) is int:
            return value if abs(value) < 2**63 else {"@": "bigint", "v": str(value)}
        if type(value) is np.ndarray and not value.dtype.hasobject:
            return self._share(value)
        if type(value) is np.random.Generator:
            name = type(value.bit_generator).__name__
            if name not in BIT_GENERATORS:
                raise TypeError(f"a Generator with bit generator {name} cannot be sent")
            return self._share(value)
        if type(value) is complex:
            return {"@": "complex", "v": [value.real, value.imag]}
        if isinstance(value, np.generic) and not isinstance(value, np.object_):
            return {"@": "np", "v": _npy(np.asarray(value))}
        if type(value) in (list, tuple):
            items = [self.encode(v, depth + 1) for v in value]
            return items if type(value) is list else {"@": "tuple", "v": items}
        if type(value) is dict:  # keys and values alternating
            items = [x for item in value.items() for x in item]
            return {"@": "dict", "v": [self.encode(x, depth + 1) for x in items]}
        if type(value) is slice:
            parts = (value.start, value.stop, value.step)
            return {"@": "slice", "v": [self.encode(x, depth + 1) for x in parts]}
        if value is Ellipsis:
            return {"@": "ellipsis"}
        if isinstance(value, np.dtype):
            return {"@": "dtype", "v": value.str}
        if isinstance(value, type) and _BUILTIN_TYPES.get(value.__name__) is value:
            return {"@": "type", "v": value.__name__}
        if isinstance(value, type) and issubclass(value, np.generic) and value is not np.object_:
            return {"@": "type", "v": np.dtype(value).str}
        return {"@": "ref", "h": self.handle_of(value), "meta": self._meta(value)}

    def decode(self, data: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH + 2:
            raise ProtocolError("value nested too deeply")
        if data is None or isinstance(data, (bool, int, float, str, bytes)):
            return data
        if isinstance(data, list):
            return [self.decode(v, depth + 1) for v in data]
        if not isinstance(data, dict):
            raise ProtocolError("unexpected value on the wire")
        tag, value = data.get("@"), data.get("v")
        if tag in ("tuple", "dict", "slice"):
            value = [self.decode(v, depth + 1) for v in value]
        if tag in _FROM_WIRE:
            return _FROM_WIRE[tag](value)
        if tag == "nd":
            return self._receive(-int(data["w"]), _from_npy(value))
        if tag == "rng":
            if data["bg"] not in BIT_GENERATORS:
                raise ProtocolError(f"unknown bit generator {data['bg']!r}")
            gen = np.random.Generator(getattr(np.random, data["bg"])())
            try:
                gen.bit_generator.state = self.decode(value, depth + 1)
            except (TypeError, ValueError, KeyError) as exc:
                raise ProtocolError(f"invalid random generator state: {exc}") from exc
            return self._receive(-int(data["w"]), gen)
        if tag == "back":
            if int(data["h"]) not in self.objects:
                raise ProtocolError(f"unknown handle {data['h']}")
            return self.objects[int(data["h"])]
        if tag == "ref":
            return self.proxy(int(data["h"]), dict(data.get("meta") or {}))
        raise ProtocolError(f"unknown value tag {tag!r}")
