"""What the compiled kernels cost the first time, with and without the warm-up: a chapter's use.

    python benchmarks/first_use.py [--threads 2] [--out first_use.json]

Runs one chapter-like workload (SimpleConvNet and DeepConvNet: a training step
with Adam, ``predict`` and ``accuracy``, in float32, plus a float64 gradient of
each, as the gradient checks do), each time in a fresh process:

* ``numpy``: on the NumPy path (``COURSE_LIB_KERNELS=numpy``), the baseline;
* ``cold``: with the compiled kernels and an empty cache folder (compiles every
  kernel it meets and writes the cache: the first use without a warm-up);
* ``second``: again, loading that cache;
* ``warm_up``: ``course-lib warm-kernels`` into another empty cache folder (what
  ``./course.sh start`` runs in the background), and then
* ``after_warm_up``: the workload with that folder: the student's first use.

Each row reports the wall time and the CPU time of the process (user + system: on a
busy machine the fairer figure), and for the compiled runs Numba's own counts of
kernel versions compiled and loaded from the cache. Also: ``import course_lib`` and
``import numba`` alone, the thread count and the load average at the start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKLOAD = """
import json, time
t0 = time.perf_counter()
import numpy as np
from course_lib import models, optimizers
rng = np.random.default_rng(0)
x = rng.random((100, 1, 28, 28), dtype=np.float32)
t = rng.integers(0, 10, 100)
for make in (models.SimpleConvNet, models.DeepConvNet):
    net = make(seed=0)
    opt = optimizers.Adam()
    opt.update(net.params, net.gradient(x, t))
    net.predict(x[:10])
    net.accuracy(x, t)
    net.astype(np.float64).gradient(x[:4].astype(np.float64), t[:4])
seconds = time.perf_counter() - t0
from course_lib.kernels.warm import compile_report
report = compile_report()
print(json.dumps({"workload_s": round(seconds, 3),
                  "compiled": sum(r["compiled"] for r in report.values()),
                  "loaded": sum(r["loaded"] for r in report.values())}))
"""

WARM_UP = "import sys; from course_lib.kernels import warm; sys.exit(warm.main(['--json']))"


def run(code: str, env: dict[str, str]) -> dict:
    """Run ``code`` in a fresh Python: its wall and CPU seconds, and what it printed (JSON)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    row = {
        "wall_s": round(wall, 3),
        "cpu_s": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 3),
    }
    if proc.stdout.strip():  # the workload's and the warm-up's report: one JSON document
        reported = json.loads(proc.stdout)
        reported.pop("kernels", None)
        row.update(reported)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="2", help="threads for BLAS and Numba (default 2)")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    base = {**os.environ, "COURSE_LIB_THREADS": args.threads, "OMP_NUM_THREADS": args.threads}
    base.pop("NBGRADER_EXECUTION", None)
    result: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_start": list(os.getloadavg()),
        "threads": args.threads,
    }
    with (
        tempfile.TemporaryDirectory(prefix="numba-cold-") as cold,
        tempfile.TemporaryDirectory(prefix="numba-warm-") as warmed,
    ):
        numba_env = {**base, "COURSE_LIB_KERNELS": "numba", "NUMBA_CACHE_DIR": cold}
        warm_env = {**numba_env, "NUMBA_CACHE_DIR": warmed}
        result["import_course_lib"] = run("import course_lib, course_lib.models", numba_env)
        result["import_numba"] = run("import numba", numba_env)
        result["numpy"] = run(WORKLOAD, {**base, "COURSE_LIB_KERNELS": "numpy"})
        result["cold"] = run(WORKLOAD, numba_env)
        result["second"] = run(WORKLOAD, numba_env)
        result["warm_up"] = run(WARM_UP, warm_env)
        result["after_warm_up"] = run(WORKLOAD, warm_env)
        result["cache_files"] = {
            "cold": len(list(Path(cold).rglob("*.nbc"))),
            "warm_up": len(list(Path(warmed).rglob("*.nbc"))),
        }
    result["load_end"] = list(os.getloadavg())
    for key, value in result.items():
        print(f"{key}: {value}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
