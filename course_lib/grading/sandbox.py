"""How a student's kernel is confined: bubblewrap where it can run, resource limits always.

:class:`LimitedKernelManager` starts every kernel through :mod:`course_lib.grading.launcher`
and, where :func:`probe` finds that ``bwrap`` runs, inside a bwrap sandbox whose file system
is an allow-list (:func:`sandboxed_command`, :func:`bwrap_command`). docs/grading.md, "Tamper
resistance", items 5 and 6.
"""

from __future__ import annotations

import functools
import json
import os
import pwd
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from traitlets import Dict

#: Top-level system folders the kernel may read (those that exist; symlinks are kept as links).
SYSTEM_DIRS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt")
#: Files under the system folders that stay hidden even there.
HIDDEN_SYSTEM_FILES = ("/etc/shadow", "/etc/gshadow", "/etc/sudoers")
#: Home and temporary folders of the kernel inside the sandbox (in memory).
SANDBOX_HOME = "/tmp/kernel-home"
#: New ipc, pid, net, uts, cgroup and user namespaces, in the last the kernel is nobody (65534);
#: no capabilities; ends with the grader.
NAMESPACES = (
    *("--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534"),
    *("--die-with-parent", "--cap-drop", "ALL"),
)


@dataclass(frozen=True)
class SandboxStatus:
    """Whether bwrap can confine kernels on this machine, and if not, why."""

    available: bool
    bwrap: str | None
    reason: str

    def describe(self) -> str:
        """What the grader says when the sandbox is unavailable."""
        return (
            f"bubblewrap sandbox unavailable ({self.reason}); kernels run with resource limits "
            "and the unprivileged kernel user only (see docs/grading.md)"
        )


@functools.lru_cache(maxsize=1)
def probe() -> SandboxStatus:
    """Can bwrap build a sandbox here? Runs ``bwrap ... true`` once per process."""
    if sys.platform != "linux":
        return SandboxStatus(False, None, f"bubblewrap needs Linux, this is {sys.platform}")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return SandboxStatus(False, None, "bwrap not found: install the package bubblewrap")
    cmd = [bwrap, *NAMESPACES, "--ro-bind", "/", "/", "--proc", "/proc", "true"]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return SandboxStatus(False, bwrap, f"bwrap did not run: {exc}")
    if run.returncode != 0:
        message = (run.stderr or run.stdout).strip().splitlines() or [str(run.returncode)]
        return SandboxStatus(False, bwrap, f"bwrap failed: {message[-1]}")
    return SandboxStatus(True, bwrap, "")


def _python_paths() -> list[str]:
    """What the interpreter needs to run: prefixes, standard library, site-packages."""
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    paths.append(os.path.dirname(os.path.realpath(sys.executable)))
    paths += (sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib"))
    paths += site.getsitepackages()
    if site.ENABLE_USER_SITE:
        paths.append(site.getusersitepackages())
    return paths


def _parents_first(paths: Iterable[str]) -> list[str]:
    """Unique absolute paths, parents before children (bwrap mounts in order; a child mounted
    before its parent would be covered by it)."""
    return sorted({os.path.abspath(p) for p in paths}, key=lambda p: (p.count(os.sep), p))


def bwrap_command(
    bwrap: str,
    command: Sequence[str],
    *,
    cwd: str,
    read_only: Iterable[str],
    writable: Iterable[str],
    hidden: Iterable[str] = (),
) -> list[str]:
    """The argument vector that runs ``command`` in ``cwd`` inside a sandbox whose file system
    is ``read_only`` (folders and files bound read-only at the same path), ``writable``
    (folders bound read-write at the same path, created if missing) and ``hidden`` (folders
    replaced by an empty read-only folder, for a course that lives under a read-only system
    folder such as ``/opt/course``; what ``read_only`` or ``writable`` lists below them is
    bound again on top).

    The kernel gets an empty home; ``COURSE_LIB_DATA`` is set to the grader's dataset folder
    (read-only) so that the chapters load the data the grader has, not an empty cache."""
    from course_lib.datasets.paths import ENV_VAR, get_data_dir

    args = [bwrap, *NAMESPACES]  # bwrap's root starts empty: only what follows exists
    # first the in-memory folders, so that binds below them (a connection file or a notebook
    # folder under /tmp) are not covered by them
    args += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--dir", SANDBOX_HOME]
    hidden = _parents_first(hidden)
    mounts = [(p, "ro") for p in _parents_first(read_only)] + [(p, "hide") for p in hidden]
    for path, kind in sorted(mounts, key=lambda m: (m[0].count(os.sep), m[1], m[0])):
        if kind == "hide":
            args += ["--tmpfs", path]
        elif os.path.islink(path) and os.path.dirname(path) == "/":
            args += ["--symlink", os.readlink(path), path]  # merged /usr: /bin -> usr/bin
        else:
            args += ["--ro-bind", path, path]
    for path in HIDDEN_SYSTEM_FILES:
        if os.path.isfile(path):
            args += ["--ro-bind", "/dev/null", path]
    for path in _parents_first(writable):
        os.makedirs(path, exist_ok=True)
        args += ["--bind", path, path]
    for path in ["/", *hidden]:  # writes outside the writable folders fail (EROFS)
        args += ["--remount-ro", path]
    variables = {
        "HOME": SANDBOX_HOME,
        "IPYTHONDIR": f"{SANDBOX_HOME}/.ipython",
        "MPLCONFIGDIR": f"{SANDBOX_HOME}/.matplotlib",
        "JUPYTER_RUNTIME_DIR": f"{SANDBOX_HOME}/runtime",
        "TMPDIR": "/tmp",
        ENV_VAR: str(get_data_dir()),
        "USER": "nobody",
        "LOGNAME": "nobody",
        # the grader's process id means nothing in the sandbox's process tree (ipykernel would
        # think its parent exited); 1 turns ipykernel's parent polling off, and
        # --die-with-parent ends the kernel with the grader instead
        "JPY_PARENT_PID": "1",
    }
    for name, value in variables.items():
        args += ["--setenv", name, value]
    return [*args, "--chdir", cwd, "--", *command]


def sandboxed_command(
    command: Sequence[str],
    *,
    cwd: str,
    writable: Iterable[str],
    read_only: Iterable[str] = (),
    hidden: Iterable[str] = (),
) -> list[str] | None:
    """``command`` run in ``cwd`` in a sandbox, or ``None`` where bwrap cannot run (:func:`probe`).

    Read-only: the system, Python, the ``course_lib`` package, the datasets and the
    ``read_only`` files (the connection file); writable: ``cwd`` and ``writable`` (the sockets'
    folder); ``hidden`` folders (the course) emptied. Missing paths are left out."""
    import course_lib
    from course_lib.datasets.paths import get_data_dir

    status = probe()
    if not status.available or status.bwrap is None:
        return None
    # an editable install of the library lives in the repository: only the package is bound
    library = os.path.dirname(os.path.realpath(course_lib.__file__))
    system = [*SYSTEM_DIRS, *_python_paths(), library, str(get_data_dir())]
    return bwrap_command(
        status.bwrap,
        command,
        cwd=cwd,
        read_only=[p for p in system if os.path.lexists(p)]
        + [p for p in read_only if os.path.exists(p)],
        writable=[cwd, *writable],
        hidden=[p for p in hidden if os.path.isdir(p) and p != os.sep],
    )


# ----------------------------------------------------------------------------------------------
# starting the kernel


class LimitedKernelManager(AsyncKernelManager):
    """Starts the kernel through :mod:`course_lib.grading.launcher` with ``launcher_options``
    (its limits, user and working folder) and, when ``sandbox`` is set
    (:func:`sandboxed_command`'s ``cwd``, ``writable`` and ``hidden``), inside bwrap; the one
    place the kernel command is built."""

    launcher_options = Dict()
    sandbox = Dict()

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        options = json.dumps(self.launcher_options)
        launcher = [sys.executable, "-m", "course_lib.grading.launcher", options]
        cmd = [*launcher, "--", *super().format_kernel_cmd(extra_arguments)]
        if not self.sandbox:
            return cmd
        wrapped = sandboxed_command(cmd, read_only=[self.connection_file], **self.sandbox)
        if wrapped is None:  # bwrap stopped working since the probe
            raise RuntimeError(probe().describe())
        # interrupt with a control message, which the kernel answers with SIGINT to itself: a
        # signal sent from outside reaches bwrap first, which ends the sandbox and the kernel
        self.kernel_spec.interrupt_mode = "message"
        return wrapped


def sandbox_folder(mode: str, warn: Callable[[str], Any]) -> str | None:
    """The folder of the sockets shared with a sandboxed kernel, or None without the sandbox.

    ``mode``: ``auto`` (the sandbox where bwrap runs; else ``warn`` says why not), ``bwrap``
    (required: RuntimeError where it cannot run) or ``off``."""
    if mode == "off":
        return None
    status = probe()
    if not status.available:
        if mode == "bwrap":
            raise RuntimeError(status.describe())
        warn(status.describe())
        return None
    # in the system's temporary folder, not the (deep) scratch folder: Unix socket paths, the
    # verdict's included, are limited to 107 bytes
    return tempfile.mkdtemp(prefix="cg-")


def kernel_account(user: str, warn: Callable[[str], Any]) -> str | None:
    """The account the kernel runs as when the grader runs as root (without the sandbox):
    ``user`` if that account can run this Python, else None and ``warn`` says the kernel stays
    root. None when the grader is not root."""
    if not user or os.geteuid() != 0:
        return None
    if not _user_can_run_python(user):
        warn(f"kernel runs as root: user {user!r} cannot run {sys.executable}")
        return None
    return user


@functools.cache
def _user_can_run_python(user: str) -> bool:
    """Whether ``user`` can run this interpreter and import the course library (e.g. a Python
    installed under /root cannot)."""
    try:
        run = subprocess.run(
            [sys.executable, "-c", "import course_lib"],
            user=user,
            group=pwd.getpwnam(user).pw_gid,
            extra_groups=[],
            cwd="/",
            capture_output=True,
            timeout=60,
        )
    except (KeyError, OSError, subprocess.SubprocessError):
        return False
    return run.returncode == 0
