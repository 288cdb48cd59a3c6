"""Start the verdict process (:class:`course_lib.grading.verdict.VerdictSession`) and talk to it.

A fork of the grader, or a spawned interpreter where the grader runs other threads, with
``sys.path`` as ``python -I`` has it (docs/grading.md, "Tamper resistance", item 1). Commands
and answers are JSON objects over a ``multiprocessing`` pipe (no pickle): the process first
sends ``{"ready": true, "errors": [...]}`` after the notebook's setup, then answers ``kernel``
(connection info and pid, after every kernel start), ``run`` (one test cell: its outputs) and
``quit``.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import site
import sys
import tempfile
import threading
from typing import Any

from course_lib.grading import verdict

__all__ = ["VerdictProcess"]


class VerdictProcess:
    """One verdict process for one notebook (it survives the kernel's restarts).

    ``init``: :meth:`VerdictSession.init`'s arguments; ``env``, ``cwd``: its environment, folder.
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
        try:
            self.conn.send_bytes(b'{"cmd": "quit"}')
        except OSError:
            pass
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
    verdict.preimport()
    session = verdict.VerdictSession()

    def answer(obj: dict[str, Any]) -> None:
        conn.send_bytes(json.dumps(obj, allow_nan=True).encode())

    answer({"ready": True, **session.init(**init)})
    try:
        with contextlib.suppress(EOFError):
            while (cmd := json.loads(conn.recv_bytes())).get("cmd") != "quit":
                try:
                    if cmd.get("cmd") == "kernel":
                        session.connect_kernel(cmd["connection_info"], cmd.get("pid"))
                        answer({"ok": True})
                    elif cmd.get("cmd") == "run":
                        answer(session.run(cmd["source"], cmd["timeout"], cmd.get("grade_id")))
                    else:
                        answer({"error": f"unknown command {cmd.get('cmd')!r}"})
                except Exception as exc:
                    answer({"error": f"{type(exc).__name__}: {exc}", "kernel_ok": False})
    finally:
        session.close()
