"""The README leads with the student, is built from docs/, and its commands work as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
#: Documents a student or instructor reads (the developers' notes may name CI machines).
USER_DOCS = [
    README,
    *(REPO / "docs" / n for n in ("student_guide.md", "instructor_guide.md", "library.md")),
    REPO / "docs" / "book_compatibility.md",
]
MACHINE_PATHS = re.compile(r"(/work/|/root/|/home/\w|/tmp/|\.\./shared|/opt/)")


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def commands(block: str) -> list[str]:
    return [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]


def test_readme_is_built_from_docs_and_short():
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_readme.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert len(README.read_text().splitlines()) <= 250


def test_quick_start_is_two_commands_then_the_student_path():
    text = README.read_text()
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert headings[:2] == ["Quick start", "Student guide"], headings
    first = code_blocks(text, "sh")[0]
    assert commands(first) == ["./course.sh start", "./course.sh test"]


def test_no_development_machine_paths_in_user_docs():
    for path in USER_DOCS:
        found = MACHINE_PATHS.findall(path.read_text())
        assert not found, f"{path.name} names development-machine paths: {found}"


def test_every_student_guide_command_is_a_course_sh_command():
    course_sh = (REPO / "course.sh").read_text()
    known = set(re.findall(r"^(\w+(?: \| \w+)*)\)$", course_sh, re.MULTILINE))
    subcommands = {s.strip() for group in known for s in group.split("|")}
    text = (REPO / "docs" / "student_guide.md").read_text()
    shown = [c for block in code_blocks(text, "sh") for c in commands(block)]
    assert shown, "the student guide shows no commands"
    for command in shown:
        words = command.split()
        assert words[0] == "./course.sh" and words[1] in subcommands, command


def test_progress_works_in_a_new_shell(tmp_path):
    """`./course.sh progress` as shown, with nothing activated (the venv is set up already)."""
    stamps = [REPO / ".venv" / f".course-installed-{e}" for e in ("course", "test")]
    if not any(s.exists() for s in stamps):
        pytest.skip("needs the .venv set up by ./course.sh")
    subprocess.run(
        [sys.executable, "-m", "course_lib.cli", "lab", "--prepare-only", "--workspace",
         str(tmp_path)], check=True, capture_output=True, cwd=REPO,
    )  # fmt: skip
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "COURSE_LIB_WORKSPACE": str(tmp_path)}
    env |= {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
    out = subprocess.run(
        ["./course.sh", "progress"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ch02_backpropagation" in out.stdout and "relu-backward" in out.stdout
    assert re.search(r"\d+ checks: 0 passing, 0 failing, \d+ not attempted", out.stdout), out.stdout
