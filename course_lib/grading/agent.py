"""The grader's agent in a student's kernel: serves the verdict process during a test cell.

The kernel's main thread sits in :func:`serve` while a test runs; the verdict process sends it
requests ("call ``Relu().forward`` with this array"), the agent runs the student's code and
sends back data; what the student prints is forwarded. Nothing here is trusted: it runs in the
student's process (docs/grading.md, "Tamper resistance", item 1).
"""

from __future__ import annotations

import contextlib
import functools
import io
import socket
import sys
from collections.abc import Callable
from typing import Any

from course_lib.grading import refwatch
from course_lib.grading.rpc import OBJECT_OPS, Endpoint

#: The kernel's first line (``IPKernelApp.exec_lines``), before any student cell: load the agent
#: and capture the primitives the watch needs (:func:`course_lib.grading.refwatch.install`).
BOOT = "__import__('course_lib.grading.agent', fromlist=['refwatch']).refwatch.install()"

#: Output kept per test cell (forwarded by the kernel, printed by the test), then dropped.
MAX_STREAM_CHARS = 200_000

_state: dict[str, Any] = {}


class LimitedStream(io.TextIOBase):
    """A text file handing what is written to ``send(text)``, until ``budget[0]`` characters
    (a list shared by several streams) are used up."""

    encoding = "utf-8"

    def __init__(self, send: Callable[[str], Any], budget: list[int]):
        self.send = send
        self.budget = budget

    def write(self, text: str) -> int:
        text = str(text)
        piece = text[: max(0, self.budget[0])]
        if piece:
            self.budget[0] -= len(piece)
            if self.budget[0] <= 0:
                piece += "\n... output truncated by the grader ...\n"
            self.send(piece)
        return len(text)

    def writable(self) -> bool:
        return True


def _getname(obj: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
    from IPython import get_ipython

    namespace = get_ipython().user_ns
    if str(args[0]) in namespace:
        return namespace[str(args[0])]
    raise NameError(f"name '{args[0]}' is not defined")


def _gradcheck(obj: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
    from course_lib.gradcheck import replay

    plan = args[0]  # its first forward pass ("out") watched like a direct call, not the bulk
    with refwatch.profiled(watch=plan.get("step") == "out"):
        return replay(obj, plan)


#: What the verdict process may do in the kernel: the object protocol on the student's objects,
#: look up a name of the notebook, replay a gradient check's evaluations.
KERNEL_OPS = {
    **{name: refwatch.profiled(True)(op) for name, op in OBJECT_OPS.items()},
    "getname": _getname,
    "gradcheck": refwatch.profiled(True)(_gradcheck),
}


def serve(path: str, token: str, watch: dict[str, Any] | None = None) -> None:
    """Connect to the verdict process (once per kernel) and serve it until the test is done.

    ``watch``: the fingerprints of the reference code of the test's exercises
    (:func:`course_lib.grading.refwatch.watch_table`); their execution is reported in the
    answer to ``done``.
    """
    endpoint = _state.get("endpoint")
    if endpoint is None or endpoint.closed or _state.get("key") != (path, token):
        if endpoint is not None:
            with contextlib.suppress(OSError):
                endpoint.sock.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        refwatch.connect(sock, path)
        sock.sendall(token.encode("ascii") + b"\n")
        # the verdict's objects (a function a test passes in) arrive as proxies
        endpoint = Endpoint(sock, ops=KERNEL_OPS, on_done=refwatch.report)
        _state.update(endpoint=endpoint, key=(path, token))
    budget = [MAX_STREAM_CHARS]
    saved = sys.stdout, sys.stderr
    sys.stdout = LimitedStream(functools.partial(endpoint.send_stream, "stdout"), budget)
    sys.stderr = LimitedStream(functools.partial(endpoint.send_stream, "stderr"), budget)
    try:
        with refwatch.watching(watch):
            endpoint.serve()
    except BaseException:
        endpoint.closed = True
        raise
    finally:
        sys.stdout, sys.stderr = saved
