"""The bubblewrap sandbox of student kernels (course_lib.grading.sandbox), with the real ``bwrap``.

A submission that opens a TCP connection to 127.0.0.1, reads another submission, reads the
gradebook, reads a source notebook with hidden tests, or writes into the course directory: each
attempt fails inside the sandbox, the grade is what the code earns, and nothing on disk changes.
Checked three ways: a process run directly in the sandbox, ``course-lib grade``, and plain
``nbgrader autograde`` with the course's ``graders/nbgrader_config.py``. (Through the grader the
gradebook is left out: opening it is an attempt to reach the grader, which the verdict flags for
review whether or not the sandbox stops it; tests/test_grade_fairness.py covers that.) Where bwrap cannot run,
the grader says so once and grades with resource limits only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest
from grading_support import SYNTHETIC_ID, CourseDir, synthetic_notebook

from course_lib.grading import sandbox

STATUS = sandbox.probe()
LIBRARY = Path(sandbox.__file__).resolve().parent
needs_bwrap = pytest.mark.skipif(not STATUS.available, reason=STATUS.describe())


class Listener:
    """A TCP server on 127.0.0.1 that records every connection it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


def attack_code(port: int, targets: dict[str, Path], write_to: list[Path]) -> str:
    """Python source that tries every forbidden action and prints one line per attempt:
    ``<name>: BLOCKED <error>`` or ``<name>: ALLOWED``."""
    return (
        "import socket as _s\n"
        "def _try(name, action):\n"
        "    try:\n"
        "        action()\n"
        "        print(f'{name}: ALLOWED')\n"
        "    except Exception as e:\n"
        "        print(f'{name}: BLOCKED {type(e).__name__}')\n"
        f"_try('tcp', lambda: _s.create_connection(('127.0.0.1', {port}), timeout=3).close())\n"
        + "".join(
            f"_try('read-{name}', lambda: open({str(path)!r}, 'rb').read())\n"
            for name, path in targets.items()
        )
        + "".join(
            f"_try('write-{i}', lambda: open({str(path)!r}, 'w').write('x'))\n"
            for i, path in enumerate(write_to)
        )
    )


def attempts(text: str) -> dict[str, str]:
    return {
        line.split(":", 1)[0]: line.split(":", 1)[1].strip()
        for line in text.splitlines()
        if line.startswith(("tcp:", "read-", "write-"))
    }


def snapshot(*folders: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------------------------
# the sandbox itself


def test_plan_binds_parents_before_children_and_hides_a_course_below_a_system_folder():
    args = sandbox.bwrap_command(
        "bwrap",
        ["true"],
        cwd="/tmp/cwd",
        read_only=("/opt/course/.venv", "/opt"),
        writable=("/tmp/cwd",),
        hidden=("/opt/course",),
    )
    order = [
        args.index("/opt"),
        args.index("--tmpfs", args.index("/opt")) + 1,  # /opt/course emptied after /opt
        args.index("/opt/course/.venv"),  # the venv inside it bound again on top
    ]
    assert args[order[1]] == "/opt/course"
    assert order == sorted(order)
    assert args[args.index("--remount-ro", args.index("/tmp/cwd")) + 1] == "/"
    assert "--unshare-all" in args and "--die-with-parent" in args


def test_probe_says_why_when_bwrap_is_missing(monkeypatch):
    sandbox.probe.cache_clear()
    monkeypatch.setenv("PATH", "/nonexistent")
    try:
        status = sandbox.probe()
    finally:
        sandbox.probe.cache_clear()
    assert not status.available
    assert "bwrap not found" in status.reason
    assert "resource limits" in status.describe()


@needs_bwrap
def test_a_sandboxed_process_reaches_nothing_outside(tmp_path, listener):
    course = tmp_path / "course"
    (course / "solutions").mkdir(parents=True)
    secret = course / "solutions" / "hidden_tests.ipynb"
    secret.write_text("### BEGIN HIDDEN TESTS")
    (course / "graders").mkdir()
    (course / "graders" / "gradebook.db").write_bytes(b"SQLite format 3")
    other = tmp_path / "submissions" / "bob" / "hw.ipynb"
    other.parent.mkdir(parents=True)
    other.write_text("bob's work")
    cwd = tmp_path / "alice"
    cwd.mkdir()
    code = attack_code(
        listener.port,
        {
            "source": secret,
            "other": other,
            "home": Path.home() / ".bashrc",
            "db": course / "graders" / "gradebook.db",
        },
        [course / "planted.txt", LIBRARY / "planted.txt"],
    )
    code += "open('mine.txt', 'w').write('ok'); print('cwd: writable')\n"
    # /tmp is the sandbox's own: a write there succeeds and leaves nothing on the disk
    code += f"open({str(tmp_path / 'private.txt')!r}, 'w').write('x'); print('tmp: private')\n"
    before = snapshot(course, other.parent)
    cmd = sandbox.sandboxed_command(
        [sys.executable, "-c", code], cwd=str(cwd), writable=[], hidden=[str(course)]
    )
    assert cmd is not None
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    seen = attempts(run.stdout)
    assert set(seen) == {"tcp", "read-source", "read-other", "read-home", "read-db"} | {
        "write-0",
        "write-1",
    }
    assert all(v.startswith("BLOCKED") for v in seen.values()), seen
    assert "cwd: writable" in run.stdout
    assert (cwd / "mine.txt").read_text() == "ok"
    assert listener.accepted == 0
    assert snapshot(course, other.parent) == before
    assert "tmp: private" in run.stdout and not (tmp_path / "private.txt").exists()
    assert not (course / "planted.txt").exists() and not (LIBRARY / "planted.txt").exists()


# --------------------------------------------------------------------------------------------
# through the grader


def attacker_notebook(solution: nbformat.NotebookNode, code: str) -> nbformat.NotebookNode:
    """The solution with one extra cell (added by the student) that runs ``code``."""
    nb = nbformat.from_dict(json.loads(json.dumps(solution)))
    nb.cells.insert(2, nbformat.v4.new_code_cell(code))
    return nb


def submission_text(nb: nbformat.NotebookNode) -> str:
    return "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )


def grade_cli(
    subs: Path, out: Path, course: CourseDir, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`course-lib grade` as an instructor types it, one job, no feedback."""
    cmd = [sys.executable, "-m", "course_lib.cli", "grade", str(subs), "-o", str(out)]
    cmd += ["--course-root", str(course.root), "-j", "1", "--no-feedback"]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env={**os.environ, **env}
    )


@pytest.fixture
def synthetic_course(tmp_path):
    course = CourseDir.create(tmp_path / "course", notebooks={SYNTHETIC_ID: synthetic_notebook()})
    return course


@needs_bwrap
@pytest.mark.grading
def test_course_lib_grade_confines_the_kernel(synthetic_course, tmp_path, listener):
    course = synthetic_course
    source = course.root / "solutions" / SYNTHETIC_ID / f"{SYNTHETIC_ID}.ipynb"
    subs = tmp_path / "submitted"
    out = tmp_path / "out"
    victim = subs / "bob" / SYNTHETIC_ID / f"{SYNTHETIC_ID}.ipynb"
    victim.parent.mkdir(parents=True)
    victim.write_bytes(source.read_bytes())
    code = attack_code(
        listener.port,
        {"other": victim, "source": source},
        [course.root / "planted.txt", subs / "planted.txt", out / "planted.txt"],
    )
    solution = nbformat.read(str(source), as_version=4)
    mine = subs / "alice" / SYNTHETIC_ID / f"{SYNTHETIC_ID}.ipynb"
    mine.parent.mkdir(parents=True)
    nbformat.write(attacker_notebook(solution, code), str(mine))
    before = snapshot(course.root, subs)
    run = grade_cli(subs, out, course, {"COURSE_LIB_SANDBOX": "bwrap"})
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads((out / "summary.json").read_text())
    graded = summary["students"]["alice"][SYNTHETIC_ID]
    assert graded["score"] == graded["max_score"] == 3.0, graded
    autograded = nbformat.read(
        str(out / "autograded" / "alice" / SYNTHETIC_ID / f"{SYNTHETIC_ID}.ipynb"), as_version=4
    )
    seen = attempts(submission_text(autograded))
    assert len(seen) == 6, seen
    assert all(v.startswith("BLOCKED") for v in seen.values()), seen
    assert listener.accepted == 0
    assert snapshot(course.root, subs) == before


@needs_bwrap
@pytest.mark.grading
def test_plain_nbgrader_autograde_is_sandboxed_too(synthetic_course, listener):
    """`nbgrader autograde` with the course's config: the same isolation as `course-lib grade`."""
    course = synthetic_course
    course.generate_assignment(SYNTHETIC_ID)
    source = course.root / "solutions" / SYNTHETIC_ID / f"{SYNTHETIC_ID}.ipynb"
    code = attack_code(
        listener.port,
        {"source": source},
        [course.root / "planted.txt", course.graders / "planted.txt"],
    )
    solution = nbformat.read(str(source), as_version=4)
    mine = course.graders / "submitted" / "alice" / SYNTHETIC_ID / f"{SYNTHETIC_ID}.ipynb"
    mine.parent.mkdir(parents=True)
    nbformat.write(attacker_notebook(solution, code), str(mine))
    before = snapshot(course.root / "solutions", course.graders / "submitted")
    course.autograde(SYNTHETIC_ID, env={"COURSE_LIB_SANDBOX": "bwrap"})
    autograded = nbformat.read(
        str(course.graders / "autograded" / "alice" / SYNTHETIC_ID / f"{SYNTHETIC_ID}.ipynb"),
        as_version=4,
    )
    seen = attempts(submission_text(autograded))
    assert len(seen) == 4, seen
    assert all(v.startswith("BLOCKED") for v in seen.values()), seen
    assert listener.accepted == 0
    assert not (course.root / "planted.txt").exists()
    assert snapshot(course.root / "solutions", course.graders / "submitted") == before
    from nbgrader.api import Gradebook

    with Gradebook(course.db_url) as gb:
        assert gb.find_submission(SYNTHETIC_ID, "alice").score == 3.0


@pytest.mark.grading
def test_without_bwrap_the_grader_says_so_once_and_grades(synthetic_course, tmp_path):
    course = synthetic_course
    source = course.root / "solutions" / SYNTHETIC_ID / f"{SYNTHETIC_ID}.ipynb"
    subs = tmp_path / "submitted"
    for student in ("alice", "bob"):
        folder = subs / student / SYNTHETIC_ID
        folder.mkdir(parents=True)
        (folder / source.name).write_bytes(source.read_bytes())
    bin_dir = tmp_path / "bin"  # a PATH without bwrap
    bin_dir.mkdir()
    run = grade_cli(
        subs, tmp_path / "out", course, {"PATH": str(bin_dir), "COURSE_LIB_SANDBOX": "auto"}
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("bubblewrap sandbox unavailable") == 1, run.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    for student in ("alice", "bob"):
        assert summary["students"][student][SYNTHETIC_ID]["score"] == 3.0


@pytest.mark.skipif(
    os.geteuid() != 0 or sandbox.kernel_account("nobody", print) is None,
    reason="needs root and a Python the account nobody can run",
)
@pytest.mark.grading
def test_without_the_sandbox_under_root_the_kernel_runs_as_nobody_and_grades(
    synthetic_course, tmp_path
):
    """The fallback where bwrap cannot run (a container without user namespaces): the kernel
    drops to the kernel account and still reaches its notebook and its private home (the task's
    scratch folder used to be closed to it: every kernel died before it started)."""
    course = synthetic_course
    source = course.root / "solutions" / SYNTHETIC_ID / f"{SYNTHETIC_ID}.ipynb"
    solution = nbformat.read(str(source), as_version=4)
    mine = tmp_path / "submitted" / "alice" / SYNTHETIC_ID / source.name
    mine.parent.mkdir(parents=True)
    nbformat.write(attacker_notebook(solution, "import os\nprint('uid:', os.getuid())"), str(mine))
    run = grade_cli(mine.parents[2], tmp_path / "out", course, {"COURSE_LIB_SANDBOX": "off"})
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["students"]["alice"][SYNTHETIC_ID]["score"] == 3.0, summary
    graded = tmp_path / "out" / "autograded" / "alice" / SYNTHETIC_ID / source.name
    assert "uid: 65534" in submission_text(nbformat.read(str(graded), as_version=4))


@pytest.mark.parametrize("threads", [1, 2], ids=["forked", "spawned"])
def test_the_verdict_process_finds_no_module_where_a_student_could_plant_one(tmp_path, threads):
    """The verdict process is a fork of the grader (no fresh ``python -I``): its ``sys.path``
    must still be what ``-I`` gives, without the empty entry (the working directory),
    relative entries, ``PYTHONPATH`` and the user's site-packages; and it must not see a
    module planted there, even one the grader has not imported yet. With a second thread
    running in the grader (the formgrader's Jupyter server) it is spawned, not forked."""
    from course_lib.grading.verdict import VerdictProcess

    release = threading.Event()
    other = threading.Thread(target=release.wait, daemon=True)
    if threads == 2:
        other.start()

    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "cg_planted_module.py").write_text("PLANTED = True\n")
    env = {**os.environ, "PYTHONPATH": str(planted)}
    check = (
        "import sys\n"
        f"assert {str(planted)!r} not in sys.path and '' not in sys.path, sys.path\n"
        "assert all(p.startswith('/') for p in sys.path), sys.path\n"
    )
    plant = "import cg_planted_module\n"
    saved = list(sys.path)
    sys.path[:0] = ["", str(planted), "relative/folder"]
    method = "fork" if threading.active_count() == 1 else "spawn"
    try:
        verdict = VerdictProcess(
            {"setup": [check, plant], "student_names": [], "cells": []}, env, str(planted)
        )
        answer = verdict.call({"cmd": "nothing"})  # any command: the setup ran before it
        verdict.stop()
    finally:
        sys.path[:] = saved
        release.set()
    assert verdict.process._start_method == method
    assert threads == 1 or method == "spawn"
    assert "unknown command" in answer["error"]
    assert verdict.setup_errors is not None and len(verdict.setup_errors) == 1
    assert "ModuleNotFoundError" in verdict.setup_errors[0], verdict.setup_errors
    assert verdict.process.exitcode == 0


@needs_bwrap
def test_an_interrupt_reaches_the_sandboxed_kernel_and_leaves_it_running():
    """A timed-out test or cell interrupts the kernel: inside bwrap through a control message
    (SIGINT to the kernel's process group from outside would end bwrap, and the sandbox with the
    kernel in it, so every interrupt used to cost a restart and the kernel's state)."""
    asyncio.run(_interrupt_a_sandboxed_kernel())


async def _interrupt_a_sandboxed_kernel() -> None:
    folder = sandbox.sandbox_folder("bwrap", print)
    assert folder is not None
    km = sandbox.LimitedKernelManager(transport="ipc", ip=os.path.join(folder, "kernel"))
    km.sandbox = {"cwd": folder, "writable": [folder], "hidden": []}
    await km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=120)
        assert (await _reply(kc, kc.execute("x = 41")))["status"] == "ok"
        looping = kc.execute("while True:\n    pass")
        await asyncio.sleep(2)
        await km.interrupt_kernel()
        assert (await _reply(kc, looping))["ename"] == "KeyboardInterrupt"
        assert await km.is_alive()
        answer = await _reply(kc, kc.execute("", user_expressions={"y": "x + 1"}))
        assert answer["user_expressions"]["y"]["data"]["text/plain"] == "42"
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
        shutil.rmtree(folder, ignore_errors=True)


async def _reply(kc, msg_id: str) -> dict:
    """The content of the kernel's reply to ``msg_id`` (within 30 s)."""
    while True:
        reply = await kc.get_shell_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"]
