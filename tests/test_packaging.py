"""Packaging hygiene: licence, version, dependencies, the constraints file and course.sh."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

from course_lib.cli import parse_args

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import constraints  # noqa: E402  (scripts/constraints.py)

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_licence_is_an_spdx_string_with_its_file():
    project = pyproject()["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert metadata.metadata("course_lib").get("License-Expression") == "MIT"


def test_version_option():
    out = subprocess.run(
        [sys.executable, "-m", "course_lib.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"course-lib {metadata.version('course_lib')}"


def test_no_unused_widget_dependency():
    extras = pyproject()["project"]["optional-dependencies"].values()
    deps = " ".join(d for extra in extras for d in extra)
    assert "ipycanvas" not in deps
    assert not list(REPO.glob("course_lib/**/*ipycanvas*"))


def test_lab_options_go_to_jupyterlab_unchanged():
    args = parse_args(["lab", "--port", "8899", "--no-browser", "--workspace", "w"])
    assert args.workspace == "w"
    assert args.passthrough == ["--port", "8899", "--no-browser"]
    assert parse_args(["lab", "--", "--port=1"]).passthrough == ["--port=1"]


def test_other_commands_still_refuse_unknown_options(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(["data", "verify", "--bogus"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_constraints_pin_exactly_what_the_course_and_tests_install():
    """constraints.txt = the installed closure of course_lib[test]; refresh with
    `./course.sh constraints` after changing a dependency."""
    pinned = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pinned[name] = version
    installed = constraints.closure("course_lib", constraints.EXTRAS)
    installed.pop("pip", None)
    assert "course-lib" not in pinned and "torch" not in pinned
    missing = sorted(set(installed) - set(pinned))
    assert not missing, f"not in constraints.txt (run ./course.sh constraints): {missing}"
    differ = {n: (pinned[n], v) for n, v in installed.items() if pinned[n] != v}
    assert not differ, f"constraints.txt (pinned, installed) differ: {differ}"


def test_environment_yml_is_the_students_environment():
    text = (REPO / "environment.yml").read_text()
    assert '-e ".[course]"' in text and "--constraint constraints.txt" in text
    assert "[test]" not in text


def test_start_skips_the_install_when_nothing_changed(tmp_path):
    venv = REPO / ".venv"
    stamps = [venv / ".course-installed-course", venv / ".course-installed-test"]
    if not any(s.exists() for s in stamps) or Path(sys.prefix).resolve() != venv.resolve():
        pytest.skip("needs the .venv set up by ./course.sh (its install stamp)")
    env = {**os.environ, "COURSE_LIB_WORKSPACE": str(tmp_path / "ws")}
    started = time.monotonic()
    out = subprocess.run(
        ["./course.sh", "start", "--prepare-only"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert "installing" not in out.stdout + out.stderr, out.stdout + out.stderr
    assert (tmp_path / "ws" / "ch01_differentiation" / "ch01_differentiation.ipynb").exists()
    assert seconds < 30, f"start took {seconds:.1f} s although nothing changed"
