"""The element-wise kernels' parallel and serial versions against each other, interleaved.

    OMP_NUM_THREADS=2 python benchmarks/kernel_threads.py

For ReLU (forward, backward) and Adam at the sizes of the course's networks, the median
time per call (ms) of each version over 7 interleaved rounds of 20 calls, buffers reused.
It decides which kernels of ``course_lib/kernels/_numba.py`` are compiled serial only.
"""

from __future__ import annotations

import time

import numpy as np

from course_lib.kernels import fast

SIZES = (1_728_000, 1_254_400, 432_000, 100_000)  # conv outputs, Affine1's W, small layers


def cases(kernels, n: int, rng: np.random.Generator):
    """(name, call(kernel), dispatcher) for one size."""
    x = rng.standard_normal(n).astype(np.float32)
    out, mask = np.empty_like(x), np.empty(n, np.bool_)
    d, dx = rng.standard_normal(n).astype(np.float32), np.empty_like(x)
    p, g = x.copy(), d.copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    f = np.float32
    return [
        ("relu_forward", lambda k: k(x, out, mask), kernels.relu_forward),
        ("relu_backward", lambda k: k(d, mask, dx), kernels.relu_backward),
        ("adam", lambda k: k(p, g, m, v, f(0.1), f(0.001), f(0.001), f(1e-8)), kernels.adam),
    ]


def main() -> None:
    import numba

    kernels = fast()
    if kernels is None:
        raise SystemExit("Numba is not installed (or COURSE_LIB_KERNELS=numpy)")
    print(f"Numba threads: {numba.get_num_threads()}")
    rng = np.random.default_rng(0)
    for n in SIZES:
        for name, call, run in cases(kernels, n, rng):
            versions = {"parallel": getattr(run, "parallel", None), "serial": run}
            versions["serial"] = getattr(run, "serial", run)
            if versions["parallel"] is None:  # compiled serial only: compile a parallel twin
                versions["parallel"] = numba.njit(parallel=True)(run.py_func)
            times: dict[str, list[float]] = {k: [] for k in versions}
            for k in versions.values():
                call(k)  # compile / warm
            for _ in range(7):
                for label, k in versions.items():
                    start = time.perf_counter()
                    for _ in range(20):
                        call(k)
                    times[label].append((time.perf_counter() - start) / 20 * 1e3)
            summary = "  ".join(f"{k} {np.median(t):.3f} ms" for k, t in times.items())
            print(f"{name:14s} n={n:>9,d}  {summary}")


if __name__ == "__main__":
    main()
