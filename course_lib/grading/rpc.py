"""The endpoint of the data-only remote calls between the verdict process and a kernel.

The grader runs every autograder test cell in a *verdict process* that never executes student
code (see :mod:`course_lib.grading.verdict`). The student's classes and functions stay in the
student's kernel; the verdict process sees them as proxies, and every call on a proxy becomes a
request over a Unix socket to an agent in the kernel (:mod:`course_lib.grading.agent`). The
wire format (frames, values, arrays, exceptions, random generators) is
:mod:`course_lib.grading.wire`.

An :class:`Endpoint` sends requests and serves the other side's; the operations it serves come
in as a table (``{name: function(endpoint, obj, args, kwargs) -> (value, export)}``), so this
module knows nothing of grading: :data:`OBJECT_OPS` is the plain object protocol (get and set
attributes, call, index, iterate, copy), :data:`READ_ONLY_OPS` the part the kernel may use on
the verdict process's objects (call and read, never assign or reach private attributes), and
each process adds its own (the agent: ``getname``, the gradient-check replay).

The protocol is symmetric: a function a test passes to the student's code stays in the
verdict process and is called back through the same socket. Arrays have copy-restore semantics: an array passed to the other side and modified there in place is written back into the
caller's array when the call returns, and arrays that crossed or were read from attributes of a
remote object (``layer.W``) are kept in sync in both directions, so a gradient check that
perturbs ``layer.W`` in place sees its perturbation in the kernel.
"""

from __future__ import annotations

import copy
import json
import socket
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from course_lib.grading.wire import (
    MAX_FRAME_BYTES,
    Codec,
    ProtocolError,
    RemoteError,
    RemoteTimeout,
    array_from_bytes,
    array_to_bytes,
    exception_from_wire,
    exception_to_wire,
    make_rng,
    recv_frame,
    rng_state,
    send_frame,
    set_rng_state,
)
from course_lib.grading.wire import (
    digest as array_digest,
)

__all__ = [
    "OBJECT_OPS",
    "READ_ONLY_OPS",
    "Endpoint",
    "Op",
    "ProtocolError",
    "RemoteError",
    "RemoteTimeout",
]

#: An operation served on this side: (endpoint, target object or None, args, kwargs) ->
#: (value to send back, attribute path to keep in sync or None).
Op = Callable[["Endpoint", Any, list[Any], dict[str, Any]], tuple[Any, tuple | None]]


def _getattr(ep: Endpoint, obj: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
    return getattr(obj, str(args[0])), (ep.current_target, str(args[0]))


def _iter(ep: Endpoint, obj: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
    items = []
    for i, item in enumerate(obj):
        if i >= 100000:
            raise ValueError("iterable too long to send")
        items.append(item)
    return items, None


def _array(ep: Endpoint, obj: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
    array = np.asarray(obj, *args)
    if array.dtype == object:
        raise TypeError(f"cannot convert {type(obj).__name__} to a numeric array")
    return array, None


def _value(fn: Callable[..., Any]) -> Op:
    return lambda ep, obj, args, kwargs: (fn(obj, args, kwargs), None)


def _set(fn: Callable[..., Any]) -> Op:
    def op(ep: Endpoint, obj: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        fn(obj, args)
        return None, None

    return op


#: The object protocol, served on this side's objects.
OBJECT_OPS: Mapping[str, Op] = {
    "getattr": _getattr,
    "hasattr": _value(lambda o, a, k: hasattr(o, str(a[0]))),
    "setattr": _set(lambda o, a: setattr(o, str(a[0]), a[1])),
    "delattr": _set(lambda o, a: delattr(o, str(a[0]))),
    "call": _value(lambda o, a, k: o(*a, **k)),
    "callmethod": _value(lambda o, a, k: getattr(o, str(a[0]))(*a[1:], **k)),
    "repr": _value(lambda o, a, k: repr(o)[:10000]),
    "str": _value(lambda o, a, k: str(o)[:100000]),
    "len": _value(lambda o, a, k: len(o)),
    "bool": _value(lambda o, a, k: bool(o)),
    "getitem": _value(lambda o, a, k: o[a[0]]),
    "setitem": _set(lambda o, a: o.__setitem__(a[0], a[1])),
    "iter": _iter,
    "array": _array,
    "deepcopy": _value(lambda o, a, k: copy.deepcopy(o)),
    "instancecheck": _value(lambda o, a, k: isinstance(a[0], o)),
}


def _public(op: Op) -> Op:
    def guarded(ep: Endpoint, obj: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if not args or str(args[0]).startswith("_"):
            raise PermissionError("the grader does not allow access to private attributes")
        return op(ep, obj, args, kwargs)

    return guarded


#: What the kernel may do with the verdict process's objects: call and read public attributes.
READ_ONLY_OPS: Mapping[str, Op] = {
    **{
        name: OBJECT_OPS[name]
        for name in ("call", "repr", "str", "len", "bool", "getitem", "iter", "array")
    },
    **{name: _public(OBJECT_OPS[name]) for name in ("getattr", "hasattr", "callmethod")},
}


# --------------------------------------------------------------------------------------------
# Endpoint


class Endpoint:
    """One side of the symmetric protocol.

    ``request(op, target, *args)`` sends a request and, while it waits for the answer, serves
    the other side's requests (callbacks) from ``ops``. A target of ``None`` means no object
    (the operation gets ``None``). ``on_done()`` gives the value of the answer to ``done``, the
    request that ends :meth:`serve`.
    """

    def __init__(
        self,
        sock: socket.socket,
        make_proxy: Callable[[int, dict[str, Any]], Any],
        *,
        ops: Mapping[str, Op] = OBJECT_OPS,
        on_stream: Callable[[str, str], None] | None = None,
        on_done: Callable[[], Any] | None = None,
        limit: int = MAX_FRAME_BYTES,
    ):
        self.sock = sock
        self.codec = Codec(lambda h, meta: make_proxy(self, h, meta))
        self.ops = dict(ops)
        self.on_stream = on_stream
        self.on_done = on_done
        self.limit = limit
        self.deadline: float | None = None
        self.closed = False
        self.current_target: int | None = None
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
                    new = array_from_bytes(blobs[blob])
                    old = sent_arrays[index]
                    if new.shape == old.shape and old.flags.writeable:
                        np.copyto(old, new, casting="unsafe")
            if "exc" in header:
                raise exception_from_wire(header["exc"])
            return self.codec.decode(header.get("value"), blobs)

    # ---- shared arrays
    def _share(self, array: np.ndarray) -> int:
        entry = self._shared_ids.get(id(array))
        if entry is not None and entry[0]() is array:
            key = entry[1]
            self.shared[key] = (entry[0], array_digest(array))
            return key[1] if key[0] == "mine" else -key[1] - 1
        self._next_wid += 1
        key = ("mine", self._next_wid)
        ref = weakref.ref(array)
        self.shared[key] = (ref, array_digest(array))
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
                self.shared[key] = (entry[0], array_digest(existing))
                return existing
        ref = weakref.ref(array)
        self.shared[key] = (ref, array_digest(array))
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
            now = array_digest(array)
            if now != digest:
                blobs.append(array_to_bytes(array))
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
            new = array_from_bytes(blobs[int(item["b"])])
            if array is None or array.shape != new.shape or not array.flags.writeable:
                continue
            np.copyto(array, new, casting="unsafe")
            self.shared[key] = (entry[0], array_digest(array))

    # ---- tracked attribute arrays
    def track(self, key: tuple, array: np.ndarray) -> None:
        self.tracked[key] = (array, array_digest(array))

    def _outgoing_sync(self, blobs: list[bytes]) -> list[dict[str, Any]]:
        out = []
        for key, (array, digest) in list(self.tracked.items()):
            now = array_digest(array)
            if now != digest:
                blobs.append(array_to_bytes(array))
                out.append({"h": key[0], "path": list(key[1:]), "b": len(blobs) - 1})
                self.tracked[key] = (array, now)
        return out

    def _apply_incoming_sync(self, items: list[dict[str, Any]], blobs: list[bytes]) -> None:
        for item in items:
            key = (int(item["h"]), *item["path"])
            entry = self.tracked.get(key)
            if entry is None:
                continue
            new = array_from_bytes(blobs[int(item["b"])])
            array = entry[0]
            if new.shape == array.shape and new.dtype == array.dtype:
                np.copyto(array, new)
                self.tracked[key] = (array, array_digest(array))
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
            out: list[bytes] = []
            try:
                value = self.codec.encode(self.on_done() if self.on_done else None, out)
            except Exception:
                value, out = None, []
            send_frame(self.sock, {"kind": "rep", "seq": seq, "value": value}, out)
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
                new = array_from_bytes(blobs[int(item["b"])])
                if isinstance(target, np.ndarray) and target.shape == new.shape:
                    np.copyto(target, new, casting="unsafe")
            args = [self.codec.decode(a, blobs, received) for a in header.get("args") or []]
            kwargs = {
                k: self.codec.decode(v, blobs, received)
                for k, v in (header.get("kwargs") or {}).items()
            }
            digests = [array_digest(a) for _, a in received]
            value, export = self._perform(str(op), header.get("target"), args, kwargs)
            reply["value"] = self.codec.encode(value, out_blobs)
            if export is not None and isinstance(value, (np.ndarray, dict)):
                self._export(export, value)
        except BaseException as exc:  # student code may raise anything, even SystemExit
            if isinstance(exc, (ProtocolError, BrokenPipeError)):
                raise
            reply.pop("value", None)
            reply["exc"] = exception_to_wire(exc)
        argsync = []
        for i, ((_, array), digest) in enumerate(zip(received, digests)):
            if array_digest(array) != digest:
                out_blobs.append(array_to_bytes(array))
                argsync.append({"i": i, "b": len(out_blobs) - 1})
        reply["argsync"] = argsync
        reply["sync"] = self._exported_changes(out_blobs)
        reply["shared"] = self._shared_changes(out_blobs)
        reply["rngs"] = self._rng_changes()
        send_frame(self.sock, reply, out_blobs)
        return True

    def _export(self, key: tuple, value: Any) -> None:
        if isinstance(value, np.ndarray):
            self.exported[key] = array_digest(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, np.ndarray) and isinstance(k, (str, int)):
                    self.exported[(*key, k)] = array_digest(v)

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
            now = array_digest(array)
            if now != digest:
                blobs.append(array_to_bytes(array))
                out.append({"h": key[0], "path": list(key[1:]), "b": len(blobs) - 1})
                self.exported[key] = now
        return out

    def _perform(
        self, op: str, target: Any, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[Any, tuple | None]:
        handler = self.ops.get(op)
        if handler is None:
            raise PermissionError(f"the grader does not serve {op!r} here")
        obj = self.codec.objects[int(target)] if target is not None else None
        self.current_target = int(target) if target is not None else None
        return handler(self, obj, args, kwargs)

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
