"""How the grader starts the verdict process and talks to it.

The verdict process (:class:`course_lib.grading.verdict.VerdictSession`) runs a notebook's
autograder test cells. :class:`VerdictProcess` starts it as a **fork of the grader**, before
the student's kernel runs any cell: the grader itself never runs student code (it only reads
notebooks as data), so its fork is as pristine as a fresh interpreter, and it already holds
NumPy, ``course_lib`` and the test helpers. Under ``course-lib grade`` every grading task is
forked from a fork server that imported them once
(:func:`course_lib.grading.verdict.library_modules`), so a verdict process
costs no imports at all (a fresh ``python -I`` spent 2.4 s of CPU and 5 s of wall time
importing them for each notebook). Elsewhere (plain ``nbgrader autograde``) the fork imports
what is missing (:func:`course_lib.grading.verdict.preimport`) before it answers. In a
multi-threaded grader (the formgrader's Autograde button runs nbgrader inside the Jupyter
server) the process is spawned instead of forked.

Like ``python -I``, the fork drops from ``sys.path`` the empty entry, relative entries,
``PYTHONPATH`` and the user's site-packages, so that no module is found in a folder a student
could write to. Commands and answers are JSON objects, one per message, over a
``multiprocessing`` pipe (``send_bytes`` / ``recv_bytes``: no pickle):

``kernel``  the kernel's connection information and process id (after every kernel start);
``run``     run one test cell; the answer holds the cell's outputs in nbformat form;
``quit``    close the kernel client and the socket, and end.

The first message of the process is ``{"ready": true, "errors": [...]}``, after it ran the
notebook's setup (imports and helpers, :func:`course_lib.grading.static.verdict_init`).
"""

from __future__ import annotations

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

    ``init``: the ``init`` command's arguments (:func:`course_lib.grading.static.verdict_init`
    and ``cells``); ``env`` and ``cwd``: the process's environment and folder.
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
    """``fork`` where this process runs one thread (a grading task, ``nbgrader autograde``);
    ``spawn`` (a fresh interpreter that imports the library itself: slower, same sandboxing of
    ``sys.path``) in a multi-threaded host such as the formgrader's Jupyter server, where a fork
    could inherit a lock that another thread holds and hang."""
    return multiprocessing.get_context("fork" if threading.active_count() == 1 else "spawn")


def _isolated_path(path: list[str], env: dict[str, str]) -> list[str]:
    """``sys.path`` as ``python -I`` would have it (see the module docstring): without the
    ``PYTHONPATH`` of this process or of ``env``."""
    dropped = {
        entry
        for pythonpath in (os.environ.get("PYTHONPATH", ""), env.get("PYTHONPATH", ""))
        for entry in pythonpath.split(os.pathsep)
    }
    user_site = site.getusersitepackages()
    return [p for p in path if p and os.path.isabs(p) and p not in dropped and p != user_site]


def _serve(conn: Any, init: dict[str, Any], env: dict[str, str], cwd: str | None) -> None:
    """The forked process: serve commands until ``quit`` (see the module docstring)."""
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
        while True:
            try:
                cmd = json.loads(conn.recv_bytes())
            except EOFError:
                break
            kind = cmd.get("cmd")
            if kind == "quit":
                break
            try:
                if kind == "kernel":
                    session.connect_kernel(cmd["connection_info"], cmd.get("pid"))
                    answer({"ok": True})
                elif kind == "run":
                    answer(session.run(cmd["source"], float(cmd["timeout"]), cmd.get("grade_id")))
                else:
                    answer({"error": f"unknown command {kind!r}"})
            except Exception as exc:
                answer({"error": f"{type(exc).__name__}: {exc}", "kernel_ok": False})
    finally:
        session.close()
