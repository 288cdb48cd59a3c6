"""The endpoint of the data-only remote calls between the verdict process and a kernel.

An :class:`Endpoint` sends requests and serves the other side's from a table of operations, so
this module knows nothing of grading: :data:`OBJECT_OPS` is the plain object protocol,
:data:`READ_ONLY_OPS` what the kernel may do with the verdict process's objects, and each process
adds its own (the agent: ``getname``, the gradient-check replay). Values and their copy-restore
are :mod:`course_lib.grading.wire`'s. Design: docs/grading.md, "Tamper resistance: the design".
"""

from __future__ import annotations

import copy
import itertools
import socket
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from course_lib.grading.proxies import ProxyFactory
from course_lib.grading.wire import (
    Codec,
    ProtocolError,
    RemoteTimeout,
    exception_from_wire,
    exception_to_wire,
    recv_frame,
    send_frame,
)

#: An operation served on this side: (target object or None, args, kwargs) -> value.
Op = Callable[[Any, list[Any], dict[str, Any]], Any]
#: Most items an ``iter`` request sends.
MAX_ITEMS = 100_000


def _iter(obj: Any, args: list[Any], kwargs: dict[str, Any]) -> list[Any]:
    items = list(itertools.islice(obj, MAX_ITEMS + 1))
    if len(items) > MAX_ITEMS:
        raise ValueError("iterable too long to send")
    return items


def _array(obj: Any, args: list[Any], kwargs: dict[str, Any]) -> np.ndarray:
    array = np.asarray(obj, *args)
    if array.dtype == object:
        raise TypeError(f"cannot convert {type(obj).__name__} to a numeric array")
    return array


def _public_getattr(obj: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
    if str(args[0]).startswith("_"):
        raise PermissionError("the grader does not allow access to private attributes")
    return getattr(obj, str(args[0]))


#: What the kernel may do with the verdict process's objects: call and read public attributes.
READ_ONLY_OPS: Mapping[str, Op] = {
    "getattr": _public_getattr,
    "call": lambda o, a, k: o(*a, **k),
    "repr": lambda o, a, k: repr(o)[:10000],
    "str": lambda o, a, k: str(o)[:100000],
    "len": lambda o, a, k: len(o),
    "bool": lambda o, a, k: bool(o),
    "getitem": lambda o, a, k: o[a[0]],
    "iter": _iter,
    "array": _array,
}
#: The object protocol, served on this side's objects.
OBJECT_OPS: Mapping[str, Op] = {
    **READ_ONLY_OPS,
    "getattr": lambda o, a, k: getattr(o, str(a[0])),
    "setattr": lambda o, a, k: setattr(o, str(a[0]), a[1]),
    "deepcopy": lambda o, a, k: copy.deepcopy(o),
}


class Endpoint:
    """One side of the symmetric protocol, on ``sock``.

    :meth:`request` sends a request and, while it waits for the answer, serves the other side's
    requests (callbacks) from ``ops``; :meth:`serve` serves them until ``done``, whose answer is
    ``on_done()``. The other side's objects arrive as proxies of this connection
    (:class:`~course_lib.grading.proxies.ProxyFactory`); ``on_stream(name, text)`` gets the
    output the other side forwards.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        ops: Mapping[str, Op] = OBJECT_OPS,
        on_stream: Callable[[str, str], None] = lambda name, text: None,
        on_done: Callable[[], Any] = lambda: None,
    ):
        self.sock = sock
        self.codec = Codec(ProxyFactory(self))
        self.ops = {**ops, "done": lambda o, a, k: on_done()}
        self.on_stream = on_stream
        self.deadline: float | None = None
        self.closed = False
        self._seqs = itertools.count(1)

    def _send(self, message: dict[str, Any]) -> None:
        """Send ``message`` (its values encoded) with the changes to the shared values."""
        send_frame(self.sock, {**message, **self.codec.changes()})

    def request(self, op: str, target: int | None = None, *args: Any, **kwargs: Any) -> Any:
        """The value of operation ``op`` on the other side's object ``target`` (a handle; None:
        no object); the other side's exception is raised here."""
        if self.closed:
            raise ProtocolError("the connection to the kernel is closed")
        seq = next(self._seqs)
        message = {
            "kind": "req",
            "seq": seq,
            "op": op,
            "target": target,
            "args": [self.codec.encode(a) for a in args],
            "kwargs": {str(k): self.codec.encode(v) for k, v in kwargs.items()},
        }
        try:
            self._send(message)
        except OSError as exc:
            self.closed = True
            raise ProtocolError(f"cannot reach the kernel: {exc}") from exc
        return self.serve(seq)

    def serve(self, seq: int | None = None) -> Any:
        """Serve the other side's requests until it sends ``done``, or with ``seq`` until the
        answer to this side's request ``seq`` arrives (returned), by :attr:`deadline`."""
        while True:
            try:
                message = recv_frame(self.sock, self.deadline)
            except (ProtocolError, OSError) as exc:
                if not isinstance(exc, RemoteTimeout):
                    self.closed = True
                raise
            self.codec.apply(message)
            kind = message.get("kind")
            if kind == "stream":
                self.on_stream(str(message.get("name")), str(message.get("text")))
            elif kind == "req":
                if not self._serve_one(message) and seq is None:
                    return None
            elif kind != "rep" or seq is None or message.get("seq") != seq:
                raise ProtocolError("unexpected message from the other side")
            elif "exc" in message:
                raise exception_from_wire(message["exc"])
            else:
                return self.codec.decode(message.get("value"))

    def _serve_one(self, message: dict[str, Any]) -> bool:
        """Serve one request; return False when the request was ``done``."""
        op = str(message.get("op"))
        try:
            handler = self.ops.get(op)
            if handler is None:
                raise PermissionError(f"the grader does not serve {op!r} here")
            target = message.get("target")
            obj = self.codec.objects[int(target)] if target is not None else None
            args = [self.codec.decode(a) for a in message.get("args") or []]
            kwargs = {k: self.codec.decode(v) for k, v in (message.get("kwargs") or {}).items()}
            reply = {"value": self.codec.encode(handler(obj, args, kwargs))}
            del obj, args, kwargs  # what no code here holds any more is forgotten on sending
        except BaseException as exc:  # student code may raise anything, even SystemExit
            if isinstance(exc, (ProtocolError, BrokenPipeError)):
                raise
            reply = {"exc": exception_to_wire(exc)}
        self._send({"kind": "rep", "seq": message.get("seq"), **reply})
        return op != "done"

    def send_stream(self, name: str, text: str) -> None:
        send_frame(self.sock, {"kind": "stream", "name": name, "text": text})
