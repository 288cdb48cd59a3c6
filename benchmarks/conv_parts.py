"""The parts of one convolution layer's training step, timed alone (compiled path).

    python benchmarks/conv_parts.py [--threads 1] [--repeat 10]

DeepConvNet's second convolution (100 x 16 x 28 x 28 input, 16 filters of 3 x 3, pad 1)
on the whole batch: the patch copy (``im2col``), the three matrix products of the
forward and backward passes with their GFLOP/s, and the scatter of the input gradient
(``col2im``). Process CPU time (``time.process_time``), median of ``--repeat`` calls.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args(argv)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "COURSE_LIB_THREADS"):
        os.environ[k] = str(args.threads)
    import numpy as np

    from course_lib import kernels

    k = kernels.compiled()
    rng = np.random.default_rng(0)

    def timed(f) -> float:
        f()
        ts = []
        for _ in range(args.repeat):
            t0 = time.process_time()
            f()
            ts.append(time.process_time() - t0)
        return 1e3 * float(np.median(ts))

    N, C, H, W, FN = 100, 16, 28, 28, 16
    K, OH, OW = 9 * C, H, W
    img = rng.standard_normal((N, H, W, C)).astype(np.float32)
    col = np.empty((N * OH * OW, K), np.float32)
    col_W = rng.standard_normal((K, FN)).astype(np.float32)
    out = np.empty((N * OH * OW, FN), np.float32)
    d = rng.standard_normal((N * OH * OW, FN)).astype(np.float32)
    dimg = np.empty((N, H, W, C), np.float32)
    k.im2col(img, 3, 3, 1, 1, OH, OW, col)
    dcol = d @ col_W.T
    parts = {
        "patch copy (im2col)": timed(lambda: k.im2col(img, 3, 3, 1, 1, OH, OW, col)),
        "forward product col @ W": timed(lambda: np.matmul(col, col_W, out=out)),
        "dW product d.T @ col": timed(lambda: d.T @ col),
        "dcol product d @ W.T": timed(lambda: d @ col_W.T),
        "input-gradient scatter (col2im)": timed(lambda: k.col2im(dcol, 3, 3, 1, 1, OH, OW, dimg)),
    }
    gflop = 2 * N * OH * OW * K * FN / 1e9
    print(f"DeepConvNet conv2, {args.threads} thread(s), CPU ms (load {os.getloadavg()[0]:.1f}):")
    for name, ms in parts.items():
        rate = f"  {gflop / ms * 1e3:5.0f} GFLOP/s" if "product" in name else ""
        print(f"  {name:<34}{ms:7.2f}{rate}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
