"""`course-lib lab`: the student's workspace, and a real JupyterLab serving it."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from course_lib.cli import main
from course_lib.cli.lab import prepare_workspace

REPO = Path(__file__).resolve().parent.parent


def test_prepare_workspace_never_overwrites_student_work(tmp_path):
    chapters = tmp_path / "chapters"
    (chapters / "ch01").mkdir(parents=True)
    (chapters / "ch01" / "ch01.ipynb").write_text("released")
    ws = tmp_path / "ws"
    assert len(prepare_workspace(chapters, ws)) == 1
    (ws / "ch01" / "ch01.ipynb").write_text("my answers")
    (chapters / "ch01" / "extra.txt").write_text("new file")
    copied = prepare_workspace(chapters, ws)
    assert [p.name for p in copied] == ["extra.txt"]
    assert (ws / "ch01" / "ch01.ipynb").read_text() == "my answers"


def test_cli_prepare_only(tmp_path, capsys):
    assert main(["lab", "--workspace", str(tmp_path / "w"), "--prepare-only"]) == 0
    assert "course workspace" in capsys.readouterr().out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_lab_serves_the_course(tmp_path):
    port, token = free_port(), "t0k3n"
    env = dict(os.environ)
    for var, sub in [("JUPYTER_CONFIG_DIR", "cfg"), ("JUPYTER_DATA_DIR", "data"),
                     ("JUPYTER_RUNTIME_DIR", "rt"), ("IPYTHONDIR", "ipy")]:  # fmt: skip
        env[var] = str(tmp_path / sub)
    ws = tmp_path / "workspace"
    cmd = [sys.executable, "-m", "course_lib.cli", "lab", "--workspace", str(ws), "--",
           "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--IdentityProvider.token={token}"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}/api/contents?token={token}"
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    listing = json.load(r)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = (
                        proc.stdout.read().decode(errors="replace")
                        if proc.poll() is not None
                        else ""
                    )
                    pytest.fail(f"JupyterLab did not answer on port {port}\n{out[-3000:]}")
                time.sleep(0.5)
        names = {item["name"] for item in listing["content"]}
        expected = (
            {p.name for p in (REPO / "chapters").iterdir()}
            if (REPO / "chapters").is_dir()
            else set()
        )
        assert expected <= names
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}", timeout=10) as r:
            assert r.status == 200 and b"JupyterLab" in r.read()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
