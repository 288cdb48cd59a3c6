"""The kernel launcher (course_lib.grading.launcher), run for real: the limits it sets, the
environment it leaves, that it becomes the kernel command (same process id, so the grader's
interrupts and kills reach the kernel) and, under root, the drop to the kernel account."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from course_lib.grading.sandbox import kernel_account

REPORT = """
import json, os, resource, sys
limits = {name: resource.getrlimit(getattr(resource, name))
          for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_CORE", "RLIMIT_NPROC")}
env = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "MALLOC_ARENA_MAX", "HOME", "USER")}
connection = sys.argv[sys.argv.index("-f") + 1] if "-f" in sys.argv else None
print(json.dumps({"pid": os.getpid(), "uid": os.getuid(), "limits": limits, "env": env,
                  "cwd": os.getcwd(), "connection": connection,
                  "connection_text": open(connection).read() if connection else None}))
"""


def launch(options: dict, *command: str, cwd: Path | None = None) -> tuple[int, dict]:
    """(the launcher's process id, what the command it became reports about itself)."""
    argv = [sys.executable, "-m", "course_lib.grading.launcher", json.dumps(options), "--"]
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "HOME")}
    run = subprocess.Popen(
        [*argv, sys.executable, "-c", REPORT, *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    return run.pid, json.loads(out)


def test_limits_environment_and_the_same_process():
    memory, cpu, fsize = 3 * 1024**3, 77, 5 * 1024**2
    pid, seen = launch({"memory": memory, "cpu": cpu, "fsize": fsize, "nproc": 4096})
    assert seen["pid"] == pid  # the launcher replaced itself with the command
    limits = seen["limits"]
    assert limits["RLIMIT_AS"] == [memory, memory]
    assert limits["RLIMIT_CPU"] == [cpu, cpu]
    assert limits["RLIMIT_FSIZE"] == [fsize, fsize]
    assert limits["RLIMIT_CORE"] == [0, 0]  # no core dumps
    assert seen["env"]["OPENBLAS_NUM_THREADS"] == "1" and seen["env"]["MALLOC_ARENA_MAX"] == "2"
    assert seen["uid"] == os.getuid()  # no user given: no drop


def test_a_limit_is_never_raised_above_the_hard_limit_and_zero_means_none():
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    _, seen = launch({"cpu": 10**9, "memory": 0, "fsize": None})
    expected = 10**9 if hard == resource.RLIM_INFINITY else min(10**9, hard)
    assert seen["limits"]["RLIMIT_CPU"] == [expected, expected]
    assert seen["limits"]["RLIMIT_AS"] == list(resource.getrlimit(resource.RLIMIT_AS))
    assert seen["limits"]["RLIMIT_FSIZE"] == list(resource.getrlimit(resource.RLIMIT_FSIZE))


def test_the_memory_limit_stops_a_large_allocation():
    argv = [sys.executable, "-m", "course_lib.grading.launcher", json.dumps({"memory": 2**30})]
    code = "import numpy as np\ntry:\n    np.ones(2**31 // 8)\nexcept MemoryError:\n    print('refused')"
    run = subprocess.run(
        [*argv, "--", sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert run.stdout.strip() == "refused", run.stderr


@pytest.mark.skipif(
    os.geteuid() != 0 or kernel_account("nobody", print) is None,
    reason="needs root and a Python the account nobody can run",
)
def test_under_root_the_kernel_runs_as_the_kernel_account():
    # as the grader's scratch folder: open to pass through (pytest's tmp_path is not)
    folder = Path(tempfile.mkdtemp(prefix="launcher-"))
    folder.chmod(0o711)
    work = folder / "work"
    work.mkdir()
    secret = folder / "connection.json"
    secret.write_text('{"key": "private"}')
    secret.chmod(0o600)
    options = {"user": "nobody", "workdir": str(work), "nproc": 4096}
    _, seen = launch(options, "-f", str(secret), cwd=work)
    assert seen["uid"] == 65534 and seen["env"]["USER"] == "nobody"
    home = Path(seen["env"]["HOME"])
    assert home.parent == work and home.name.startswith("kernel-home-")
    # the kernel reads its own copy of the connection file, private to it
    assert Path(seen["connection"]).parent == home and seen["connection_text"] == secret.read_text()
    assert secret.stat().st_uid == 0 and secret.stat().st_mode & 0o777 == 0o600
    shutil.rmtree(folder)
