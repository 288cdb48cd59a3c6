"""The wire format and the endpoint, directly, over a socketpair (no kernel, no grader).

One side plays the verdict process (proxies from :mod:`course_lib.grading.proxies`, the
read-only operation table), the other the kernel's agent (the object protocol plus ``getname``)
serving in a thread, as in grading.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import numpy as np
import pytest

from course_lib.grading.agent import _make_proxy
from course_lib.grading.proxies import ProxyFactory, is_proxy
from course_lib.grading.rpc import OBJECT_OPS, READ_ONLY_OPS, Endpoint
from course_lib.grading.wire import (
    Codec,
    ProtocolError,
    RemoteError,
    RemoteTimeout,
    recv_frame,
    send_frame,
)


class Layer:
    def __init__(self, W: np.ndarray):
        self.W = W

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x @ self.W

    def scale_in_place(self, x: np.ndarray) -> None:
        x *= 2

    def draw(self, rng: np.random.Generator) -> float:
        return float(rng.standard_normal())

    def fail(self) -> None:
        raise ValueError("W has the wrong shape: (3, 2), expected (2, 3)")

    def fail_custom(self) -> None:
        class ShapeMistake(Exception):
            pass

        raise ShapeMistake("custom")

    def call_back(self, f: Any, x: np.ndarray) -> Any:
        return f(x) + 1


def _pair(namespace: dict[str, Any], done_value: Any = None):
    a, b = socket.socketpair()
    verdict = Endpoint(a, ProxyFactory(), ops=READ_ONLY_OPS)
    ops = {
        **OBJECT_OPS,
        "getname": lambda ep, obj, args, kw: (namespace[str(args[0])], None),
    }
    kernel = Endpoint(b, _make_proxy, ops=ops, on_done=lambda: done_value)
    thread = threading.Thread(target=kernel.serve, daemon=True)
    thread.start()
    return verdict, kernel, thread


def test_frames_round_trip_and_limits():
    a, b = socket.socketpair()
    send_frame(a, {"kind": "x", "n": 1.5}, [b"abc", b""])
    assert recv_frame(b) == ({"kind": "x", "n": 1.5}, [b"abc", b""])
    send_frame(a, {"big": "y" * 100}, [])
    with pytest.raises(ProtocolError, match="over the limit"):
        recv_frame(b, limit=50)  # the connection is unusable afterwards: a fresh one
    a, b = socket.socketpair()
    with pytest.raises(RemoteTimeout):
        recv_frame(b, deadline=time.monotonic() + 0.05)
    a.close()
    with pytest.raises(ProtocolError, match="closed"):
        recv_frame(b)


def test_values_cross_by_value():
    codec = Codec(lambda h, meta: ("proxy", h, meta["kind"]))
    values = [
        None,
        True,
        3,
        2**70,
        1.5,
        complex(1, -2),
        "text",
        [1, (2, 3)],
        {"a": np.float32(1.5), 2: [np.int64(7)]},
        slice(1, None, 2),
        Ellipsis,
        np.dtype("float32"),
        np.float64,
        int,
    ]
    blobs: list[bytes] = []
    decoded = [codec.decode(codec.encode(v, blobs), blobs) for v in values]
    assert decoded == values
    array = np.arange(6.0).reshape(2, 3)
    blobs = []
    back = codec.decode(codec.encode(array, blobs), blobs)
    assert back.dtype == array.dtype and np.array_equal(back, array) and back is not array
    # anything else travels as a reference: the other side gets a proxy, never the object
    blobs = []
    kind, handle, what = codec.decode(codec.encode(Layer(array), blobs), blobs)
    assert (kind, what) == ("proxy", "instance") and isinstance(codec.objects[handle], Layer)


def test_calls_arrays_and_write_back():
    W = np.arange(6.0).reshape(2, 3)
    verdict, kernel, thread = _pair({"layer": Layer(W)})
    layer = verdict.request("getname", None, "layer")
    assert is_proxy(layer) and type(layer).__name__ == "Layer"
    x = np.ones((1, 2))
    np.testing.assert_array_equal(layer.forward(x), x @ W)
    y = np.ones(3)
    layer.scale_in_place(y)  # modified in place in the kernel: copied back
    np.testing.assert_array_equal(y, 2 * np.ones(3))
    W_there = layer.W  # an attribute array stays in sync both ways
    W_there[0, 0] = 100.0
    assert layer.forward(np.array([[1.0, 0.0]]))[0, 0] == 100.0
    verdict.request("done")
    thread.join(5)


def test_exceptions_and_random_generators_cross():
    verdict, kernel, thread = _pair({"layer": Layer(np.eye(2))})
    layer = verdict.request("getname", None, "layer")
    with pytest.raises(ValueError, match="wrong shape"):
        layer.fail()
    with pytest.raises(RemoteError) as info:
        layer.fail_custom()
    assert info.value.remote_type == "ShapeMistake" and "fail_custom" in info.value.remote_traceback
    rng = np.random.default_rng(5)
    expected = np.random.default_rng(5).standard_normal(2)
    assert layer.draw(rng) == expected[0]
    assert rng.standard_normal() == expected[1]  # the kernel's draw advanced our generator
    verdict.request("done")
    thread.join(5)


def test_callbacks_and_the_read_only_table():
    verdict, kernel, thread = _pair({"layer": Layer(np.eye(2))})
    layer = verdict.request("getname", None, "layer")
    assert layer.call_back(lambda v: float(np.sum(v)), np.ones(3)) == 4.0

    verdict.request("done")
    thread.join(5)


def test_the_kernel_may_only_call_and_read_the_verdicts_objects():
    class Secret:
        visible = 1
        _hidden = 2

    attempts: dict[str, Any] = {}

    def probe(obj: Any) -> str:
        # in the kernel (serving thread): raw requests on the verdict's object
        handle = object.__getattribute__(obj, "_cg_h")
        attempts["read"] = kernel.request("getattr", handle, "visible")
        for op, args in (("getattr", ("_hidden",)), ("setattr", ("visible", 3)), ("deepcopy", ())):
            try:
                kernel.request(op, handle, *args)
            except PermissionError as exc:
                attempts[op] = str(exc)
        return "probed"

    verdict, kernel, thread = _pair({"probe": probe})
    assert verdict.request("getname", None, "probe")(Secret()) == "probed"
    assert attempts["read"] == 1
    assert {"getattr", "setattr", "deepcopy"} <= set(attempts), attempts
    assert Secret.visible == 1
    verdict.request("done")
    thread.join(5)


def test_done_returns_the_serving_sides_report():
    verdict, kernel, thread = _pair({}, done_value={"hits": [{"label": "x"}]})
    assert verdict.request("done") == {"hits": [{"label": "x"}]}
    thread.join(5)
    assert not thread.is_alive()


def test_a_garbage_message_is_a_protocol_error():
    verdict, kernel, thread = _pair({"layer": Layer(np.eye(2))})
    send_frame(kernel.sock, {"kind": "rep", "seq": 999}, [])  # an answer to nothing
    with pytest.raises(ProtocolError):
        verdict.request("getname", None, "layer")
    verdict.sock.close()
    thread.join(5)
