"""Numba's threading layers against each other on one training step, interleaved rounds.

    python benchmarks/thread_layers.py [--model SimpleConvNet] [--threads 2] [--rounds 4]

Each round runs one process per layer (``NUMBA_THREADING_LAYER=workqueue`` and ``omp``),
back to back, each timing ``--repeat`` training steps (wall clock, after warm-up) with
the compiled kernels and the same thread count for BLAS and Numba. Reported: the
median step per process and, per layer, the smallest of its rounds' medians.
``workqueue`` threads sleep between kernels; ``omp`` (libgomp) threads spin for a while
first, which on two cores takes the core away from OpenBLAS's threads and from other
processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

STEP = """
import statistics, sys, time
import numpy as np
from course_lib import models, optimizers
rng = np.random.default_rng(0)
x = rng.random((100, 1, 28, 28), dtype=np.float32)
t = rng.integers(0, 10, 100)
net = getattr(models, sys.argv[1])(seed=0)
opt = optimizers.Adam()
for _ in range(3):
    opt.update(net.params, net.gradient(x, t))
times = []
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter()
    opt.update(net.params, net.gradient(x, t))
    times.append(time.perf_counter() - t0)
import numba
print("RESULT", 1e3 * statistics.median(times), numba.threading_layer())
"""

LAYERS = ("workqueue", "omp")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="SimpleConvNet")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    env = dict(os.environ, COURSE_LIB_KERNELS="numba")
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "COURSE_LIB_THREADS"):
        env[k] = str(args.threads)
    rounds: dict[str, list[float]] = {layer: [] for layer in LAYERS}
    load = [os.getloadavg()]
    for _ in range(args.rounds):
        for layer in LAYERS:
            proc = subprocess.run(
                [sys.executable, "-c", STEP, args.model, str(args.repeat)],
                env={**env, "NUMBA_THREADING_LAYER": layer},
                capture_output=True,
                text=True,
                check=False,
            )
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")), None)
            if line is None:
                print(f"{layer}: failed: {proc.stderr[-500:]}")
                continue
            ms, used = float(line.split()[1]), line.split()[2]
            rounds[layer].append(ms)
            print(f"{layer:<10} ({used}) {args.model} step median {ms:.2f} ms", flush=True)
    load.append(os.getloadavg())
    result = {
        "model": args.model,
        "threads": args.threads,
        "round_medians_ms": rounds,
        "min_ms": {k: min(v) for k, v in rounds.items() if v},
        "loadavg_start_end": load,
    }
    print(json.dumps(result["min_ms"]), "load", load)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
