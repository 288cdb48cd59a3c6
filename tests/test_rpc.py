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
    verdict = Endpoint(a, ops=READ_ONLY_OPS)
    ops = {**OBJECT_OPS, "getname": lambda obj, args, kw: namespace[str(args[0])]}
    kernel = Endpoint(b, ops=ops, on_done=lambda: done_value)
    kernel.ended_with = None  # the connection error that ended the kernel's serving, if any

    def serve() -> None:
        try:
            kernel.serve()
        except (ProtocolError, OSError) as exc:  # the other side closed or broke the protocol
            kernel.ended_with = exc

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return verdict, kernel, thread


def test_frames_round_trip_and_limits():
    a, b = socket.socketpair()
    send_frame(a, {"kind": "x", "n": 1.5, "data": [b"abc", b""]})
    assert recv_frame(b) == {"kind": "x", "n": 1.5, "data": [b"abc", b""]}
    send_frame(a, {"big": "y" * 100})
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
        b"bytes",
        [1, (2, 3)],
        {"a": np.float32(1.5), 2: [np.int64(7)]},
        slice(1, None, 2),
        Ellipsis,
        np.dtype("float32"),
        np.float64,
        int,
    ]
    decoded = [codec.decode(codec.encode(v)) for v in values]
    assert decoded == values
    array = np.arange(6.0).reshape(2, 3)
    back = Codec(lambda h, meta: None).decode(codec.encode(array))
    assert back.dtype == array.dtype and np.array_equal(back, array) and back is not array
    # anything else travels as a reference: the other side gets a proxy, never the object
    kind, handle, what = codec.decode(codec.encode(Layer(array)))
    assert (kind, what) == ("proxy", "instance") and isinstance(codec.objects[handle], Layer)


def test_calls_arrays_and_write_back():
    W = np.arange(6.0).reshape(2, 3)
    verdict, kernel, thread = _pair({"layer": Layer(W)})
    layer = verdict.request("getname", None, "layer")
    assert not isinstance(layer, Layer) and type(layer).__qualname__ == Layer.__qualname__
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
    assert (
        type(info.value).__name__ == "ShapeMistake" and "fail_custom" in info.value.remote_traceback
    )
    rng = np.random.default_rng(5)
    expected = np.random.default_rng(5).standard_normal(2)
    assert layer.draw(rng) == expected[0]
    assert rng.standard_normal() == expected[1]  # the kernel's draw advanced our generator
    verdict.request("done")
    thread.join(5)


def test_callbacks_and_proxies_sent_back():
    kernels_layer = Layer(np.eye(2))
    verdict, kernel, thread = _pair(
        {"layer": kernels_layer, "is_it": lambda obj: obj is kernels_layer}
    )
    layer = verdict.request("getname", None, "layer")
    assert layer.call_back(lambda v: float(np.sum(v)), np.ones(3)) == 4.0
    # a proxy crosses back as the other side's own object
    assert verdict.request("getname", None, "is_it")(layer) is True
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


def test_one_mirror_class_per_class_and_it_goes_back_as_the_kernels_class():
    namespace = {"layer": Layer(np.eye(2)), "Layer": Layer, "is_layer": lambda c: c is Layer}
    verdict, kernel, thread = _pair(namespace)
    layer = verdict.request("getname", None, "layer")
    assert verdict.request("getname", None, "is_layer")(type(layer)) is True
    assert verdict.request("getname", None, "Layer") is type(layer)
    verdict.request("done")
    thread.join(5)


def test_done_returns_the_serving_sides_report():
    verdict, kernel, thread = _pair({}, done_value={"hits": [{"label": "x"}]})
    assert verdict.request("done") == {"hits": [{"label": "x"}]}
    thread.join(5)
    assert not thread.is_alive()


def test_a_garbage_message_is_a_protocol_error():
    verdict, kernel, thread = _pair({"layer": Layer(np.eye(2))})
    send_frame(kernel.sock, {"kind": "rep", "seq": 999})  # an answer to nothing
    with pytest.raises(ProtocolError):
        verdict.request("getname", None, "layer")
    verdict.sock.close()
    thread.join(5)
    assert not thread.is_alive()  # the kernel stops serving a connection that is gone
    assert isinstance(kernel.ended_with, (ProtocolError, OSError))


# --------------------------------------------------------------------------------------------
# copy-restore: in-place changes made on the other side are seen after the call returns


class Net:
    """A network of the verdict process (as a test builds one), used by the kernel's code."""

    def __init__(self) -> None:
        self.params = {"W": np.arange(6.0).reshape(2, 3), "b": np.zeros(3)}
        self.W = np.ones(2)
        self.calls = 0

    def loss(self) -> float:
        self.calls += 1
        return float(self.params["W"].sum())


def _bump(value: Any) -> None:
    if isinstance(value, np.ndarray):
        value += 1
    elif isinstance(value, dict):
        for item in value.values():
            _bump(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _bump(item)


def _perturb_and_restore(net: Any) -> float:
    """numerical_gradient's pattern: move an entry, call back, restore (after the last call)."""
    total = 0.0
    for p in net.params.values():
        flat = p.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + 1.0
            total += net.loss()
            flat[i] = old
    return total


KERNEL_CODE = {
    "bump": _bump,
    "bump_params": lambda net: _bump(net.params),
    "bump_attr": lambda net: _bump(net.W),
    "set_entry": lambda net: net.params["W"].__setitem__((0, 0), -5.0),
    "perturb_and_restore": _perturb_and_restore,
    "keep": lambda net: KEPT.append(net.params["b"]),
    "bump_kept": lambda: _bump(KEPT[-1]),
    "layer": Layer(np.zeros((2, 2))),
}
KEPT: list[np.ndarray] = []


def test_arrays_passed_directly_or_in_containers_are_restored():
    verdict, kernel, thread = _pair(KERNEL_CODE)
    bump = verdict.request("getname", None, "bump")
    a, b, c, d = np.zeros(2), np.zeros((2, 2)), np.zeros(3), np.zeros(1)
    bump(a)
    bump({"x": b, "nested": [c]})
    bump((d, d))  # the same array twice: one array on the other side too, bumped twice
    for name, got, want in (("a", a, 1), ("b", b, 1), ("c", c, 1), ("d", d, 2)):
        np.testing.assert_array_equal(got, np.full(got.shape, want), err_msg=name)
    verdict.request("done")
    thread.join(5)


def test_arrays_the_kernel_reads_from_the_verdicts_objects_are_restored():
    verdict, kernel, thread = _pair(KERNEL_CODE)
    net = Net()
    before = {k: v.copy() for k, v in net.params.items()}
    verdict.request("getname", None, "bump_params")(net)  # read, changed, dropped: no callback
    for key in before:
        np.testing.assert_array_equal(net.params[key], before[key] + 1, err_msg=key)
    verdict.request("getname", None, "bump_attr")(net)
    np.testing.assert_array_equal(net.W, np.full(2, 2.0))
    verdict.request("getname", None, "set_entry")(net)
    assert net.params["W"][0, 0] == -5.0
    # changed between callbacks, restored after the last one: the caller sees the restore
    net = Net()
    before = {k: v.copy() for k, v in net.params.items()}
    total = verdict.request("getname", None, "perturb_and_restore")(net)
    assert net.calls == 9 and total == 9 * 15.0 + 6
    for key in before:
        np.testing.assert_array_equal(net.params[key], before[key], err_msg=key)
    verdict.request("done")
    thread.join(5)


def test_arrays_kept_on_the_other_side_stay_shared():
    verdict, kernel, thread = _pair(KERNEL_CODE)
    net = Net()
    verdict.request("getname", None, "keep")(net)  # the kernel keeps net.params["b"]
    verdict.request("getname", None, "bump_kept")()  # and changes it in a later call
    np.testing.assert_array_equal(net.params["b"], np.ones(3))
    net.params["b"][1] = 7.0  # a change here reaches the kernel's copy
    verdict.request("getname", None, "bump_kept")()
    np.testing.assert_array_equal(net.params["b"], [2.0, 8.0, 2.0])
    np.testing.assert_array_equal(KEPT[-1], [2.0, 8.0, 2.0])
    # an attribute array of the kernel's object read here, changed there (and the reverse)
    layer = verdict.request("getname", None, "layer")
    W = layer.W
    layer.scale_in_place(layer.W)
    layer.W[0, 0] = 3.0  # a temporary here: still reaches the kernel (and W: the same array)
    W += 1
    np.testing.assert_array_equal(layer.forward(np.array([[1.0, 0.0]])), [[4.0, 1.0]])
    np.testing.assert_array_equal(KERNEL_CODE["layer"].W, [[4.0, 1.0], [1.0, 1.0]])
    verdict.request("done")
    thread.join(5)


def test_arrays_no_side_can_reach_are_forgotten():
    verdict, kernel, thread = _pair(KERNEL_CODE)
    layer = verdict.request("getname", None, "layer")
    forward = layer.forward
    for i in range(200):  # a fresh input each call, its output dropped: nothing stays shared
        forward(np.full((1, 2), float(i)))
    kept = verdict.request("getname", None, "layer").W  # one array read and kept here
    forward(np.ones((1, 2)))
    assert len(verdict.codec.shared) <= 3 and len(kernel.codec.shared) <= 3, (
        verdict.codec.shared,
        kernel.codec.shared,
    )
    assert any(entry[0] is kept for entry in verdict.codec.shared.values())
    verdict.request("done")
    thread.join(5)
