"""``course-lib lab``: open the course in JupyterLab, in the student's or the instructor's view.

Student view (default): the chapters are copied into a workspace (never overwriting the
student's work), the course home ``START_HERE.ipynb`` is regenerated there and opened first,
and JupyterLab runs with ``jupyter/student/`` on ``JUPYTER_CONFIG_PATH``: no instructor tools
(nbgrader's extensions are off) and no news pop-up.

Instructor view (``--instructor``): JupyterLab on the course root with ``jupyter/instructor/``
and ``graders/`` on ``JUPYTER_CONFIG_PATH``, so the formgrader works against the course's own
``graders/nbgrader_config.py``.

Options this command does not know go to ``jupyter lab`` unchanged (``--port 8899``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

DEFAULT_WORKSPACE = "workspace"
#: The course home, generated in the workspace at every start (not the student's work).
HOME_NOTEBOOK = "START_HERE.ipynb"


def find_course_root(start: Path | None = None) -> Path:
    """The course repository containing ``start`` (default: cwd), else the installed one.

    The course root is the folder holding ``chapters/`` and ``graders/``.
    """
    here = (start or Path.cwd()).resolve()
    package_root = Path(__file__).resolve().parents[2]  # an editable install of the repository
    for folder in [*[here, *here.parents], package_root]:
        if (folder / "chapters").is_dir() and (folder / "graders").is_dir():
            return folder
    raise FileNotFoundError(
        "cannot find the course (a folder with chapters/ and graders/): run this inside the "
        "course repository"
    )


def find_chapters(start: Path | None = None) -> Path:
    """The ``chapters/`` folder of the course repository containing ``start`` (default: cwd)."""
    return find_course_root(start) / "chapters"


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


def jupyter_environment(
    root: Path, mode: str, base: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment JupyterLab runs in for ``mode`` (``student`` or ``instructor``).

    The view's config folder comes first on ``JUPYTER_CONFIG_PATH``; the user's own
    ``~/.jupyter`` still wins (Jupyter reads it before the path).
    """
    env = dict(os.environ if base is None else base)
    paths = [str(root / "jupyter" / mode)]
    if mode == "instructor":
        paths.append(str(root / "graders"))
    if env.get("JUPYTER_CONFIG_PATH"):
        paths.append(env["JUPYTER_CONFIG_PATH"])
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(paths)
    env["COURSE_LIB_ROOT"] = str(root)
    # this environment's commands (course-lib, nbgrader, alembic for the gradebook) work in
    # JupyterLab's terminals and for its extensions without activating anything
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(
        [bindir, *[p for p in env.get("PATH", "").split(os.pathsep) if p]]
    )
    return env


def lab_command(notebook_dir: Path, default_url: str, passthrough: list[str]) -> list[str]:
    """``python -m jupyterlab`` serving ``notebook_dir``, opening ``default_url`` first."""
    extra = list(passthrough)
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in extra:
        print("running as root (e.g. in a container): passing --allow-root to JupyterLab")
        extra.append("--allow-root")
    return [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.root_dir={notebook_dir}",
        f"--LabApp.default_url={default_url}",
        *extra,
    ]


def run(args: argparse.Namespace) -> int:
    root = find_course_root(Path(args.chapters).parent if args.chapters else None)
    passthrough = list(args.passthrough)
    if args.instructor:
        (root / "graders" / "exchange").mkdir(parents=True, exist_ok=True)
        print(f"instructor view of the course at {root}")
        notebook_dir, default_url = root, "/lab/workspaces/instructor"  # its own layout
    else:
        chapters = Path(args.chapters) if args.chapters else root / "chapters"
        workspace = Path(args.workspace or root / DEFAULT_WORKSPACE).resolve()
        copied = prepare_workspace(chapters, workspace)
        print(f"course workspace: {workspace} ({len(copied)} new file(s) copied from {chapters})")
        write_home(workspace, chapters)
        notebook_dir, default_url = workspace, f"/lab/tree/{HOME_NOTEBOOK}"
    if args.no_browser_launch:
        return 0
    env = jupyter_environment(root, "instructor" if args.instructor else "student")
    cmd = lab_command(notebook_dir, default_url, passthrough)
    print("starting JupyterLab:", " ".join(cmd), flush=True)
    if os.name == "posix":  # become JupyterLab, so signals (Ctrl-C, terminate) reach it directly
        os.execve(sys.executable, cmd, env)
    try:  # pragma: no cover - Windows
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:  # pragma: no cover
        return 0


def write_home(workspace: Path, chapters: Path) -> Path | None:
    """Regenerate the course home in ``workspace`` (if the course home module is available)."""
    try:
        from course_lib.course_home import write_home_notebook
    except ImportError:  # pragma: no cover - course home not installed
        return None
    return write_home_notebook(workspace, chapters)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lab",
        help="open the course in JupyterLab (your own copy of the chapters)",
        description="Copy the student chapters into a workspace folder (never overwriting your "
        "work), write the course home START_HERE.ipynb and start JupyterLab there, without "
        "the instructor's tools. --instructor opens the instructor's view instead. Options "
        "this command does not know go to `jupyter lab` (e.g. --port 8899 --no-browser).",
    )
    p.add_argument(
        "--workspace",
        default=os.environ.get("COURSE_LIB_WORKSPACE"),
        help="where your copies of the chapters live (default: workspace/ in the course)",
    )
    p.add_argument("--chapters", help="the chapters/ folder to copy from (default: found)")
    p.add_argument(
        "--instructor",
        action="store_true",
        help="the instructor's view: the course root, with the formgrader",
    )
    p.add_argument(
        "--prepare-only",
        dest="no_browser_launch",
        action="store_true",
        help="copy the chapters and write the course home, do not start JupyterLab",
    )
    p.set_defaults(func=run, passthrough=[])
