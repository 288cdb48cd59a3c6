"""`./course.sh start` in a fresh clone, a new shell and an empty HOME reaches a running
JupyterLab that opens the course home and shows the student no instructor tools.

The clone gets its own new virtual environment, created and filled by course.sh itself. To keep
the test lean, that venv sees the packages of the project's `.venv` through a `.pth` file, so
pip finds every pinned requirement already satisfied and installs only the clone (it still
resolves everything against constraints.txt and builds the clone's editable install).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(900)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str) -> tuple[int, str, str]:
    """(status, body, Location) without following redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=10) as r:
            return r.status, r.read().decode(errors="replace"), r.headers.get("Location", "")
    except urllib.error.HTTPError as exc:
        return exc.code, "", exc.headers.get("Location", "")


def test_start_in_a_fresh_clone_with_an_empty_home(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    clone = tmp_path / "course"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    (site / "shared_course_packages.pth").write_text(sysconfig.get_path("purelib") + "\n")
    home = tmp_path / "home"
    home.mkdir()
    port, token = free_port(), "fresh-clone-token"
    env = {
        "HOME": str(home),
        "PATH": "/usr/local/bin:/usr/bin:/bin",  # a new shell: nothing activated
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "COURSE_VENV": str(venv),
        "PYTHON": sys.executable,
    }
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CONFIG_FILE", "PIP_FIND_LINKS"):
        if var in os.environ:
            env[var] = os.environ[var]
    log = (tmp_path / "start.log").open("wb")
    proc = subprocess.Popen(
        [
            "./course.sh",
            "start",
            "--no-browser",
            "--port",
            str(port),
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
        ],
        cwd=clone,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                status, _, _ = fetch(f"{base}/api/status?token={token}")
                if status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    "JupyterLab did not start:\n"
                    + (tmp_path / "start.log").read_text(errors="replace")[-4000:]
                )
            time.sleep(1)
        # the course home opens first
        status, _, location = fetch(f"{base}/?token={token}")
        assert location.startswith("/lab/tree/START_HERE.ipynb"), (status, location)
        status, body, _ = fetch(f"{base}/api/contents?token={token}")
        names = {item["name"] for item in json.loads(body)["content"]}
        assert {"START_HERE.ipynb", "ch02_backpropagation"} <= names
        # no instructor tools: nbgrader's lab extension and the news pop-up are disabled,
        # the formgrader's pages do not exist
        status, page, _ = fetch(f"{base}/lab?token={token}")
        assert status == 200
        match = re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', page, re.DOTALL)
        assert match, page[:2000]
        config = json.loads(match.group(1))
        assert "@jupyter/nbgrader" in config["disabledExtensions"]
        assert "@jupyterlab/apputils-extension:announcements" in config["disabledExtensions"]
        assert fetch(f"{base}/formgrader?token={token}")[0] == 404
        # nothing was written to the empty HOME's Jupyter configuration
        assert not (home / ".jupyter" / "labconfig").exists()
        assert (venv / ".course-installed-course").is_file()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
