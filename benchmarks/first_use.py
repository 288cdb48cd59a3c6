"""What the compiled kernels cost the first time, and the next time: a chapter's worth of use.

    python benchmarks/first_use.py [--out first_use.json]

Runs one chapter-like workload (SimpleConvNet and DeepConvNet: a training step
with Adam, ``predict`` and ``accuracy``, in float32, plus a float64 gradient of
each, as the gradient checks do) in a fresh process, twice, with an empty Numba
cache folder: the first run compiles every kernel it meets and writes the cache,
the second loads it. The same workload with ``COURSE_LIB_KERNELS=numpy`` is the
baseline. Reported: wall time of each run, and ``import course_lib`` alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKLOAD = """
import time
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
print("WORKLOAD", time.perf_counter() - t0)
"""


def run(code: str, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    base = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        numba_env = {**base, "COURSE_LIB_KERNELS": "numba", "NUMBA_CACHE_DIR": cache}
        result = {
            "load_start": list(os.getloadavg()),
            "threads": base["OMP_NUM_THREADS"],
            "import_course_lib_s": run("import course_lib, course_lib.models", numba_env),
            "numpy_path_s": run(WORKLOAD, {**base, "COURSE_LIB_KERNELS": "numpy"}),
            "numba_first_run_s (compiles, writes the cache)": run(WORKLOAD, numba_env),
            "numba_second_run_s (loads the cache)": run(WORKLOAD, numba_env),
            "cache_files": len(list(Path(cache).rglob("*.nbc"))),
            "load_end": list(os.getloadavg()),
        }
    for k, v in result.items():
        print(f"{k}: {v:.2f}" if isinstance(v, float) else f"{k}: {v}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
