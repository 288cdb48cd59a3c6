"""``course-lib lab``: copy the student chapters into a workspace and open JupyterLab there."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

DEFAULT_WORKSPACE = "workspace"


def find_chapters(start: Path | None = None) -> Path:
    """The ``chapters/`` folder of the course repository containing ``start`` (default: cwd)."""
    here = (start or Path.cwd()).resolve()
    for folder in [here, *here.parents]:
        if (folder / "chapters").is_dir() and (folder / "solutions").is_dir():
            return folder / "chapters"
    package_root = Path(__file__).resolve().parents[2]  # an editable install of the repository
    if (package_root / "chapters").is_dir():
        return package_root / "chapters"
    raise FileNotFoundError(
        "cannot find the course's chapters/ folder: run this inside the course repository "
        "or pass --chapters PATH"
    )


def prepare_workspace(chapters: Path, workspace: Path) -> list[Path]:
    """Copy every chapter notebook into ``workspace`` unless a copy is already there.

    The student's own work is never overwritten; returns the notebooks copied now.
    """
    workspace.mkdir(parents=True, exist_ok=True)
    copied = []
    for src in sorted(chapters.rglob("*")):
        if src.is_dir() or ".ipynb_checkpoints" in src.parts:
            continue
        dst = workspace / src.relative_to(chapters)
        if dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        copied.append(dst)
    return copied


def run(args: argparse.Namespace) -> int:
    chapters = Path(args.chapters) if args.chapters else find_chapters()
    workspace = Path(args.workspace).resolve()
    copied = prepare_workspace(chapters, workspace)
    print(f"course workspace: {workspace} ({len(copied)} new file(s) copied from {chapters})")
    if args.no_browser_launch:
        return 0
    lab_args = list(args.lab_args)
    if lab_args[:1] == ["--"]:
        lab_args = lab_args[1:]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in lab_args:
        print("running as root (e.g. in a container): passing --allow-root to JupyterLab")
        lab_args.append("--allow-root")
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--notebook-dir={workspace}", *lab_args]
    print("starting JupyterLab:", " ".join(cmd), flush=True)
    if os.name == "posix":  # become JupyterLab, so signals (Ctrl-C, terminate) reach it directly
        os.execv(sys.executable, cmd)
    try:  # pragma: no cover - Windows
        return subprocess.call(cmd)
    except KeyboardInterrupt:  # pragma: no cover
        return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lab",
        help="open the course in JupyterLab (your own copy of the chapters)",
        description="Copy the student chapters into a workspace folder (never overwriting your "
        "work) and start JupyterLab there. Extra arguments go to `jupyter lab`.",
    )
    p.add_argument(
        "--workspace",
        default=os.environ.get("COURSE_LIB_WORKSPACE", DEFAULT_WORKSPACE),
        help="where your copies of the chapters live (default: ./workspace)",
    )
    p.add_argument("--chapters", help="the chapters/ folder to copy from (default: found)")
    p.add_argument(
        "--prepare-only",
        dest="no_browser_launch",
        action="store_true",
        help="copy the chapters, do not start JupyterLab",
    )
    p.add_argument("lab_args", nargs=argparse.REMAINDER, help="arguments for jupyter lab")
    p.set_defaults(func=run)
