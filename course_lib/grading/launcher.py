"""Start a student's kernel with resource limits (and, under root, as an unprivileged user).

``python -m course_lib.grading.launcher [options] -- <kernel command>`` sets the limits, then
replaces itself with the kernel command (same process id, so interrupts and kills from the
grader reach the kernel). Limits (``setrlimit``) apply to the kernel and to every process it
starts:

- ``--memory BYTES``: address space (``RLIMIT_AS``); an allocation past it raises ``MemoryError``
  in the student's cell instead of exhausting the machine;
- ``--cpu SECONDS``: CPU time (``RLIMIT_CPU``), a backstop behind the grader's wall-clock limits;
- ``--fsize BYTES``: largest file the kernel may write; core dumps are disabled.

When the grader runs as root and ``--user`` names an account (``nobody`` by default from the
grader), the kernel drops to that account: it can then neither modify the course library or the
grader's files on disk nor signal the grader's processes. Its connection file, home and working
directory are handed over to that account first.
"""

from __future__ import annotations

import argparse
import os
import pwd
import resource
import shutil
import sys
import tempfile

__all__ = ["main"]


def _set_limit(kind: int, value: int | None) -> None:
    if value is None or value <= 0:
        return
    soft, hard = resource.getrlimit(kind)
    new_hard = value if hard == resource.RLIM_INFINITY or hard > value else hard
    resource.setrlimit(kind, (min(value, new_hard), new_hard))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print("usage: launcher [options] -- kernel command", file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="course_lib.grading.launcher")
    parser.add_argument("--memory", type=int, default=None)
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--fsize", type=int, default=None)
    parser.add_argument("--nproc", type=int, default=None)
    parser.add_argument("--user", default=None)
    parser.add_argument("--workdir", default=None, help="scratch directory for the kernel's home")
    opts = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    if not command:
        print("no kernel command", file=sys.stderr)
        return 2

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _set_limit(resource.RLIMIT_AS, opts.memory)
    _set_limit(resource.RLIMIT_CPU, opts.cpu)
    _set_limit(resource.RLIMIT_FSIZE, opts.fsize)

    if opts.user and os.geteuid() == 0:
        entry = pwd.getpwnam(opts.user)
        uid, gid = entry.pw_uid, entry.pw_gid
        home = tempfile.mkdtemp(prefix="kernel-home-", dir=opts.workdir)
        os.chown(home, uid, gid)
        # the connection file is private to the grader: give the kernel its own copy
        if "-f" in command:
            i = command.index("-f")
            if i + 1 < len(command):
                copy = os.path.join(home, "connection.json")
                shutil.copyfile(command[i + 1], copy)
                os.chown(copy, uid, gid)
                os.chmod(copy, 0o600)
                command[i + 1] = copy
        cwd = os.getcwd()
        try:
            os.chown(cwd, uid, gid)
        except OSError:
            pass
        os.environ.update(
            HOME=home,
            IPYTHONDIR=os.path.join(home, ".ipython"),
            MPLCONFIGDIR=os.path.join(home, ".matplotlib"),
            JUPYTER_RUNTIME_DIR=os.path.join(home, "runtime"),
            USER=opts.user,
            LOGNAME=opts.user,
        )
        _set_limit(resource.RLIMIT_NPROC, opts.nproc)
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    # the address-space limit counts reservations, not use: glibc reserves 64 MiB per thread
    # arena and a threaded BLAS a buffer per thread; keep both small so the limit is about data
    for var, value in (
        ("MALLOC_ARENA_MAX", "2"),
        ("OPENBLAS_NUM_THREADS", "1"),
        ("OMP_NUM_THREADS", "1"),
        ("MKL_NUM_THREADS", "1"),
    ):
        os.environ.setdefault(var, value)
    os.execvp(command[0], command)
    return 127  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
