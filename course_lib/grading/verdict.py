"""The verdict process: runs a notebook's autograder test cells where student code cannot
reach them (docs/grading.md, "Tamper resistance", item 1).

:class:`VerdictProcess` (the grader's side) starts it, a fork of the grader or, where the
grader runs other threads, a spawned interpreter, with ``sys.path`` as ``python -I`` has it.
Commands and answers are JSON objects over a ``multiprocessing`` pipe (no pickle): the process
first sends ``{"ready": true, "errors": [...]}`` after the notebook's setup, then answers
``serve`` (the line the grader has the kernel run so that its agent serves the next test),
``run`` (one test cell) and ``quit``. :class:`VerdictSession` is the process's state: the setup
(imports and helpers), the connection to the kernel's agent, and :meth:`VerdictSession.run`,
which runs one test cell and answers with its outputs in nbformat form. Names the setup does
not bind are looked up in the kernel and arrive as data or proxies
(:mod:`course_lib.grading.rpc`); expected values are computed here.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib
import json
import multiprocessing
import os
import pkgutil
import secrets
import signal
import site
import socket
import sys
import tempfile
import threading
import time
import traceback
from typing import Any

from course_lib.grading import refwatch
from course_lib.grading.agent import MAX_STREAM_CHARS, LimitedStream
from course_lib.grading.findings import named_error, report_outputs
from course_lib.grading.proxies import TestNamespace
from course_lib.grading.rpc import READ_ONLY_OPS, Endpoint
from course_lib.grading.wire import ProtocolError, RemoteTimeout, grader_frame

#: Seconds to wait for a kernel to come back after an interrupt.
INTERRUPT_GRACE = 20.0


class CellTimeout(BaseException):
    """The test cell ran out of time."""


#: Modules no test uses: the command line, widgets, the grader itself, and the course home
#: page (it imports nbformat, whose jsonschema formats cost 1.5 s of CPU per submission).
_NOT_PREIMPORTED = (
    "course_lib.cli",
    "course_lib.widgets",
    "course_lib.grading.",
    "course_lib.release",
    "course_lib.course_home",
)


def library_modules() -> list[str]:
    """The modules the verdict process imports before any student code runs anywhere: the
    library (but :data:`_NOT_PREIMPORTED`), the test helpers, NumPy's submodules tests use."""
    import course_lib

    names = [
        info.name
        for info in pkgutil.walk_packages(course_lib.__path__, "course_lib.")
        if not info.name.startswith(_NOT_PREIMPORTED)
    ]
    return [*names, "numpy.linalg", "numpy.random", "numpy.testing"]


def preimport() -> None:
    """Import :func:`library_modules` (already done where the process was forked from the
    batch's fork server)."""
    for name in library_modules():
        with contextlib.suppress(Exception):
            importlib.import_module(name)


class VerdictSession:
    """State of the verdict process for one notebook (survives kernel restarts)."""

    def __init__(
        self,
        setup: list[str],
        student_names: list[str],
        exercises: dict[str, list[str]] | None = None,
        allow: list[str] | None = None,
        cells: list[str] | None = None,
        handed_out: str = "",
    ) -> None:
        """Run the ``setup`` statements; :attr:`setup_errors` names those that failed.

        ``exercises``: name -> grade_ids of its tests; ``allow``: course_lib objects the
        solution uses; ``cells``: the submitted notebook's cell sources (to name the cell a
        runtime finding comes from); ``handed_out``: the text of the instructor's notebook
        (docstrings given to students do not mark a copy of the reference)."""
        self.ns = TestNamespace(self._resolve_remote)
        self.ns["__name__"] = "__main__"
        self.rpc_dir = tempfile.mkdtemp(prefix="cg-verdict-")
        os.chmod(self.rpc_dir, 0o711)
        self.sock_path = os.path.join(self.rpc_dir, secrets.token_hex(8) + ".sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.sock_path)
        os.chmod(self.sock_path, 0o666)
        self.listener.listen(4)
        self.conn_token = ""
        self.endpoint: Endpoint | None = None
        self._kernel_starts = 0
        self.exercises = {str(k): list(v) for k, v in (exercises or {}).items()}
        self.allow = list(allow or [])
        self.cells = list(cells or [])
        self.handed_out = handed_out
        self._tables: dict[str, dict[str, list[Any]]] = {}
        self._streams: list[list[str]] = []  # [name, text] of the running test, in order
        self._sinks: dict[str, LimitedStream] = {}  # its stdout and stderr
        self.setup_errors: list[str] = []
        for source in setup:
            try:
                exec(compile(source, "<setup>", "exec"), self.ns)
            except Exception as exc:  # a setup statement that cannot run here is skipped
                self.setup_errors.append(f"`{source.splitlines()[0]}`: {type(exc).__name__}: {exc}")
        for name in student_names:
            self.ns.pop(name, None)

    def _disconnect(self) -> None:
        if self.endpoint is not None:
            with contextlib.suppress(OSError):
                self.endpoint.sock.close()
        self.endpoint = None

    def close(self) -> None:
        """Close the connection and the socket (the process ends next)."""
        self._disconnect()
        self.listener.close()
        with contextlib.suppress(OSError):
            os.unlink(self.sock_path)
        with contextlib.suppress(OSError):
            os.rmdir(self.rpc_dir)

    def _resolve_remote(self, name: str) -> Any:
        if self.endpoint is None:
            raise KeyError(name)
        try:
            return self.endpoint.request("getname", None, name)
        except NameError:
            raise KeyError(name) from None

    def _watch_for(self, grade_id: str | None) -> dict[str, list[Any]]:
        """Fingerprints of the reference code of the exercises ``grade_id`` tests."""
        names = sorted(n for n, tests in self.exercises.items() if grade_id in tests)
        if os.environ.get("COURSE_LIB_REFWATCH", "1") == "0":
            names = []  # the watch off (to measure its cost; docs/grading.md)
        key = ",".join(names)
        if key not in self._tables:
            try:
                self._tables[key] = refwatch.watch_table(names, self.allow, self.handed_out)
            except Exception as exc:  # a broken registry must not stop grading: say so
                print(f"reference watch unavailable: {exc}", file=sys.stderr)
                self._tables[key] = {}
        return self._tables[key]

    def _print(self, name: str, text: str) -> None:
        """Add to the running test's output (consecutive texts of one stream joined)."""
        if self._streams and self._streams[-1][0] == name:
            self._streams[-1][1] += text
        else:
            self._streams.append([name, text])

    def _forwarded(self, name: str, text: str) -> None:
        """What the student's code printed in the kernel during the test."""
        self._sinks.get(name, self._sinks["stdout"]).write(text)

    def serve_code(self, kernel_starts: int, grade_id: str | None = None) -> str:
        """The line the kernel runs (sent by the grader) to serve the next test, ``grade_id``.

        After a kernel (re)start (``kernel_starts`` counts them) or a test that broke the
        connection, a new connection under a new token: a connection left over from an earlier,
        interrupted test (the kernel may connect late) is refused, never reused."""
        if kernel_starts != self._kernel_starts or self.endpoint is None or self.endpoint.closed:
            self._disconnect()
            self._kernel_starts = kernel_starts
            self.conn_token = secrets.token_hex(16)
        return (
            "__import__('course_lib.grading.agent', fromlist=['serve'])"
            f".serve({self.sock_path!r}, {self.conn_token!r}, {self._watch_for(grade_id)!r})"
        )

    def _accept(self, deadline: float) -> socket.socket:
        """The kernel's connection carrying the current token (others are closed)."""
        expected = self.conn_token.encode("ascii") + b"\n"
        limit = time.monotonic() + max(5.0, min(120.0, deadline - time.monotonic()))
        while (left := limit - time.monotonic()) > 0:
            self.listener.settimeout(left)
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(max(1.0, min(10.0, left)))
            with contextlib.suppress(OSError):
                if conn.recv(len(expected), socket.MSG_WAITALL) == expected:
                    return conn
            conn.close()
        raise ProtocolError("the grader could not reach your kernel (is a cell still running?)")

    def _finish_serving(self, timed_out: bool) -> dict[str, Any] | None:
        """Tell the agent the test is over and return its answer, the watch's report; after a
        timeout, drop the connection instead (the stream is mid-request)."""
        assert self.endpoint is not None
        self.endpoint.deadline = time.monotonic() + INTERRUPT_GRACE
        try:
            if not timed_out:
                return self.endpoint.request("done")
        except (ProtocolError, RemoteTimeout, OSError):
            pass
        self._disconnect()
        return None

    def run(self, source: str, timeout: float) -> dict[str, Any]:
        """Run one test cell while the kernel serves it (see :meth:`serve_code`): ``{"outputs":
        [...nbformat outputs], "kernel_ok": bool, "timed_out": bool}``."""
        budget = [MAX_STREAM_CHARS]  # for what the kernel forwards and what the test prints
        self._sinks = {
            name: LimitedStream(functools.partial(self._print, name), budget)
            for name in ("stdout", "stderr")
        }
        self._streams = []
        report = None
        error: dict[str, Any] | None = None
        result: Any = None
        timed_out = False
        kernel_ok = True
        deadline = time.monotonic() + timeout
        saved = sys.stdout, sys.stderr
        old_handler = signal.signal(signal.SIGALRM, _raise_timeout)
        try:
            if self.endpoint is None:  # proxies and mirror classes belong to one connection
                sock = self._accept(deadline)
                self.endpoint = Endpoint(sock, ops=READ_ONLY_OPS, on_stream=self._forwarded)
            self.endpoint.deadline = deadline
            tree = ast.parse(source, "<test cell>")
            tail = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            signal.setitimer(signal.ITIMER_REAL, max(0.01, deadline - time.monotonic()) + 1.0)
            sys.stdout, sys.stderr = self._sinks["stdout"], self._sinks["stderr"]
            exec(compile(tree, "<test cell>", "exec"), self.ns)
            if isinstance(tail, ast.Expr):  # the value of the last expression, shown
                result = eval(compile(ast.Expression(tail.value), "<test cell>", "eval"), self.ns)
        except (CellTimeout, RemoteTimeout):
            timed_out = True
            error = named_error(
                "CellTimeoutError",
                f"the test did not finish within {timeout:g} s: your code may loop forever or be "
                "far too slow for the test's input",
            )
        except ProtocolError as exc:
            kernel_ok = False
            error = named_error(
                "KernelError",
                f"{exc}. Your kernel died or stopped answering while this test ran "
                "(a crash, os._exit, exit(), or running out of memory).",
            )
        except BaseException as exc:
            error = _error_output(exc)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_handler)
            sys.stdout, sys.stderr = saved
            self.ns.forget_resolved()
        timed_out = timed_out or time.monotonic() > deadline
        if self.endpoint is not None and kernel_ok:
            report = self._finish_serving(timed_out)
        outputs = [{"output_type": "stream", "name": n, "text": t} for n, t in self._streams]
        findings = report_outputs(report, self.cells)
        if error is not None:
            outputs.append(error)
        elif result is not None and not findings:
            try:
                text = repr(result)[:10000]
            except Exception:
                text = "<unprintable result>"
            data = {"text/plain": text}
            outputs.append(
                dict(output_type="execute_result", execution_count=None, metadata={}, data=data)
            )
        return {"outputs": outputs + findings, "kernel_ok": kernel_ok, "timed_out": timed_out}


def _raise_timeout(signum: int, frame: Any) -> None:
    raise CellTimeout()


def _error_output(exc: BaseException) -> dict[str, Any]:
    ename = type(exc).__name__  # a RemoteError's subclass has the name of the kernel's type
    evalue = str(exc)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not grader_frame(f)]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    remote_tb = getattr(exc, "remote_traceback", "")
    if remote_tb:
        lines += ["In your code (run in your kernel):\n", *remote_tb.splitlines(True)[-40:]]
    lines.append(f"\x1b[0;31m{ename}\x1b[0m: {evalue}")
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": lines}


class VerdictProcess:
    """One verdict process for one notebook (it survives the kernel's restarts).

    ``init``: :class:`VerdictSession`'s arguments; ``env``, ``cwd``: its environment, folder.
    """

    def __init__(self, init: dict[str, Any], env: dict[str, str], cwd: str | None) -> None:
        self.conn, child = multiprocessing.Pipe()
        self.process = _context().Process(
            target=_serve, args=(child, init, env, cwd), name="verdict", daemon=True
        )
        self.process.start()
        child.close()
        self.setup_errors: list[str] | None = None

    def call(self, cmd: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        """Send ``cmd``; its answer, or ``{"error": ...}`` when none came within ``timeout``."""
        if self.setup_errors is None:  # the first message says the setup ran
            ready = self._read(120)
            if not ready.get("ready"):
                return ready
            self.setup_errors = ready["errors"]
        try:
            self.conn.send_bytes(json.dumps(cmd).encode())
        except OSError:
            return {"error": "the verdict process is not running"}
        return self._read(timeout)

    def _read(self, timeout: float) -> dict[str, Any]:
        try:
            if not self.conn.poll(timeout):
                return {"error": "timeout"}
            return json.loads(self.conn.recv_bytes())
        except (EOFError, OSError):
            return {"error": "the verdict process exited"}

    def stop(self) -> None:
        """Ask the process to end; kill it when it does not within 5 s."""
        with contextlib.suppress(OSError):
            self.conn.send_bytes(b'{"cmd": "quit"}')
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def _context() -> Any:
    """``fork`` in a single-threaded grader, ``spawn`` in a multi-threaded one (the formgrader)."""
    return multiprocessing.get_context("fork" if threading.active_count() == 1 else "spawn")


def _isolated_path(path: list[str], env: dict[str, str]) -> list[str]:
    """``path`` as ``python -I`` has it, also without the ``PYTHONPATH`` of ``env``."""
    dropped = {
        entry
        for pythonpath in (os.environ.get("PYTHONPATH", ""), env.get("PYTHONPATH", ""))
        for entry in pythonpath.split(os.pathsep)
    }
    user_site = site.getusersitepackages()
    return [p for p in path if p and os.path.isabs(p) and p not in dropped and p != user_site]


def _serve(conn: Any, init: dict[str, Any], env: dict[str, str], cwd: str | None) -> None:
    """The verdict process: serve commands until ``quit`` (see the module docstring)."""
    sys.path[:] = _isolated_path(sys.path, env)
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None  # TMPDIR may have changed (the sandbox's socket folder)
    if cwd:
        os.chdir(cwd)
    preimport()
    session = VerdictSession(**init)

    def answer(obj: dict[str, Any]) -> None:
        conn.send_bytes(json.dumps(obj, allow_nan=True).encode())

    answer({"ready": True, "errors": session.setup_errors})
    try:
        with contextlib.suppress(EOFError):
            while (cmd := json.loads(conn.recv_bytes())).get("cmd") != "quit":
                try:
                    if cmd.get("cmd") == "serve":
                        answer({"code": session.serve_code(cmd["kernel_starts"], cmd["grade_id"])})
                    elif cmd.get("cmd") == "run":
                        answer(session.run(cmd["source"], cmd["timeout"]))
                    else:
                        answer({"error": f"unknown command {cmd.get('cmd')!r}"})
                except Exception as exc:
                    answer({"error": f"{type(exc).__name__}: {exc}", "kernel_ok": False})
    finally:
        session.close()
