"""DeepConvNet's 3x3 convolutions on the compiled path: im2col blocks against Winograd F(2x2, 3x3).

    python benchmarks/conv_paths.py [--repeat 30] [--layers]

Per block of images (about 1 MiB of patch rows, as the layer cuts them), one thread,
process CPU time, median of ``--repeat`` calls on data in the cache:

* im2col forward: patch copy + product + bias; backward: patch copy + ``dW`` product +
  ``dcol`` product + ``col2im``;
* Winograd forward: input transform + 16 products + output transform; backward: input
  transform + output adjoint + ``dU`` products + ``dV`` products + input adjoint;

and the sums over the 100 images of a training batch. With ``--layers``, also the
whole layer (``Convolution.forward`` / ``backward`` on a batch of 100, wall time) on 1
and 2 threads, twice, interleaved. Results go to stdout.
"""

from __future__ import annotations

import argparse
import os
import time

#: DeepConvNet's 3x3 layers after the first: (C, FN, input size, pad)
LAYERS = [(16, 16, 28, 1), (16, 32, 14, 1), (32, 32, 14, 2), (32, 64, 8, 1), (64, 64, 8, 1)]


def median_ms(f, repeat: int, clock) -> float:
    """Median time of ``repeat`` calls of f (after one untimed call), in ms."""
    import numpy as np

    f()
    ts = []
    for _ in range(repeat):
        t0 = clock()
        f()
        ts.append(clock() - t0)
    return 1e3 * float(np.median(ts))


def block_times(C: int, FN: int, H: int, p: int, repeat: int) -> tuple[int, list[float]]:
    """(images per block, CPU ms of im2col forward, Winograd forward, im2col / Winograd backward)."""
    import numpy as np

    from course_lib import kernels
    from course_lib.layers import Convolution, winograd

    fast = kernels.compiled()
    rng = np.random.default_rng(0)
    f32 = np.float32
    OH = H + 2 * p - 2
    TH = (OH + 1) // 2
    K = 9 * C
    n = max(1, Convolution.block_bytes // (OH * OH * K * 4))
    img = rng.standard_normal((n, H, H, C)).astype(f32)
    W = rng.standard_normal((FN, C, 3, 3)).astype(f32)
    b = rng.standard_normal(FN).astype(f32)
    col = np.empty((n * OH * OH, K), f32)
    col_W = W.transpose(2, 3, 1, 0).reshape(K, FN).copy()
    W_T = W.transpose(0, 2, 3, 1).reshape(FN, K).copy()
    out = np.empty((n * OH * OH, FN), f32)
    d = rng.standard_normal((n * OH * OH, FN)).astype(f32)
    dW = np.empty((FN, K), f32)
    dimg = np.empty_like(img)
    V = np.empty((16, n * TH * TH, C), f32)
    M = np.empty((16, n * TH * TH, FN), f32)
    U = winograd.filter_transform(W, f32)
    U_T = np.ascontiguousarray(U.transpose(0, 2, 1))
    dU = np.empty((16, C, FN), f32)
    out4, d4 = out.reshape(n, OH, OH, FN), d.reshape(n, OH, OH, FN)

    def im2col_forward():
        fast.im2col(img, 3, 3, 1, p, OH, OH, col)
        np.matmul(col, col_W, out=out)
        fast.add_bias(out, b)

    def im2col_backward():
        fast.im2col(img, 3, 3, 1, p, OH, OH, col)
        np.matmul(d.T, col, out=dW)
        np.matmul(d, W_T, out=col)
        fast.col2im(col, 3, 3, 1, p, OH, OH, dimg)

    def winograd_forward():
        fast.wino_input(img, p, TH, TH, V)
        np.matmul(V, U, out=M)
        fast.wino_output(M, TH, TH, b, out4)

    def winograd_backward():
        fast.wino_input(img, p, TH, TH, V)
        fast.wino_output_adjoint(d4, TH, TH, M)
        np.matmul(V.transpose(0, 2, 1), M, out=dU)
        np.matmul(M, U_T, out=V)
        fast.wino_input_adjoint(V, p, TH, TH, dimg)

    runs = (im2col_forward, winograd_forward, im2col_backward, winograd_backward)
    return n, [median_ms(f, repeat, time.process_time) for f in runs]


def layer_times(C: int, FN: int, H: int, p: int, repeat: int) -> list[str]:
    """Whole-layer forward + backward, batch 100, wall ms, on 1 and 2 threads, two rounds."""
    import numpy as np

    from course_lib import threads
    from course_lib.layers import Convolution

    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, H, H, C)).astype(np.float32).transpose(0, 3, 1, 2)
    W = (0.1 * rng.standard_normal((FN, C, 3, 3))).astype(np.float32)
    layer = Convolution(W, np.zeros(FN, np.float32), 1, p)
    dout = rng.standard_normal(layer.forward(x).shape).astype(np.float32)
    cells = []
    for _ in range(2):
        for n_threads in (1, 2):
            threads.set_threads(n_threads)
            fw = median_ms(lambda: layer.forward(x), repeat, time.perf_counter)
            bw = median_ms(lambda: layer.backward(dout), repeat, time.perf_counter)
            cells.append(f"{n_threads}t {fw:.2f} + {bw:.2f}")
    return cells


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--layers", action="store_true", help="also time whole layers, 1 and 2 threads")
    args = ap.parse_args(argv)
    os.environ.setdefault("COURSE_LIB_THREADS", "2" if args.layers else "1")
    from course_lib import threads

    threads.set_threads(1)
    block_times(*LAYERS[0], args.repeat)  # discarded: a fresh process's first timings run slow here
    step = [0.0, 0.0, 0.0, 0.0]
    print("per block, 1 thread, CPU ms: forward im2col / Winograd | backward im2col / Winograd")
    for C, FN, H, p in LAYERS:
        n, times = block_times(C, FN, H, p, args.repeat)
        blocks = -(-100 // n)
        step = [s + blocks * t for s, t in zip(step, times, strict=True)]
        OH = H + 2 * p - 2
        print(
            f"  {C:2d} -> {FN:2d}, {OH}x{OH} out, {n} images per block: "
            f"{times[0]:.3f} / {times[1]:.3f} | {times[2]:.3f} / {times[3]:.3f}"
        )
    fw_i, fw_w, bw_i, bw_w = step
    print(
        f"  a batch of 100, five layers: forward {fw_i:.2f} / {fw_w:.2f} ms, "
        f"backward {bw_i:.2f} / {bw_w:.2f} ms"
    )
    if args.layers:
        print("whole layers, batch 100, wall ms (forward + backward), 1 and 2 threads, two rounds:")
        for C, FN, H, p in LAYERS:
            cells = layer_times(C, FN, H, p, args.repeat)
            print(f"  {C:2d} -> {FN:2d}, {H}x{H} in: " + ", ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
