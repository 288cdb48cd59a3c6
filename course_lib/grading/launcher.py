"""Start a student's kernel with resource limits (and, under root, as an unprivileged user).

``python -m course_lib.grading.launcher OPTIONS -- <kernel command>``, ``OPTIONS`` a JSON object
(``LimitedKernelManager.launcher_options``): ``memory``, ``cpu``, ``fsize``, ``nproc`` set the
limits (``setrlimit``: address space, CPU time, file size, processes of ``user``; no core
dumps); ``user``, when run as root, is the account to drop to (the connection file, a fresh home
in ``workdir`` and the working directory handed over first). Then the launcher replaces itself
with the kernel command (same process id, so the grader's interrupts and kills reach the
kernel). docs/grading.md, "Tamper resistance", item 5."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import resource
import shutil
import sys
import tempfile


def _set_limit(kind: int, value: int | None) -> None:
    if value is None or value <= 0:
        return
    hard = resource.getrlimit(kind)[1]
    limit = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (limit, limit))


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    options = json.loads(args[0])
    command = args[args.index("--") + 1 :]
    user = options.get("user")

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _set_limit(resource.RLIMIT_AS, options.get("memory"))
    _set_limit(resource.RLIMIT_CPU, options.get("cpu"))
    _set_limit(resource.RLIMIT_FSIZE, options.get("fsize"))

    if user and os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        uid, gid = entry.pw_uid, entry.pw_gid
        home = tempfile.mkdtemp(prefix="kernel-home-", dir=options.get("workdir"))
        os.chown(home, uid, gid)
        if "-f" in command[:-1]:  # the connection file is private to the grader: a copy
            i = command.index("-f") + 1
            command[i] = shutil.copyfile(command[i], os.path.join(home, "connection.json"))
            os.chown(command[i], uid, gid)
            os.chmod(command[i], 0o600)
        with contextlib.suppress(OSError):
            os.chown(os.getcwd(), uid, gid)
        os.environ.update(
            HOME=home,
            IPYTHONDIR=os.path.join(home, ".ipython"),
            MPLCONFIGDIR=os.path.join(home, ".matplotlib"),
            JUPYTER_RUNTIME_DIR=os.path.join(home, "runtime"),
            USER=user,
            LOGNAME=user,
        )
        _set_limit(resource.RLIMIT_NPROC, options.get("nproc"))
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    # the address-space limit counts reservations, not use: glibc reserves 64 MiB per thread
    # arena and a threaded BLAS a buffer per thread; keep both small so the limit is about data
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    os.execvp(command[0], command)  # never returns (OSError when the command cannot run)


if __name__ == "__main__":
    main()
