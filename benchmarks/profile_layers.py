"""Where does a course_lib training step spend its time? Per-layer forward/backward timings.

    python benchmarks/profile_layers.py SimpleConvNet [--threads 2] [--repeat 20] [--cpu-time]
    python benchmarks/profile_layers.py DeepConvNet --torch     # PyTorch's own op profile

``--cpu-time`` measures the process's CPU time (every thread: BLAS's and Numba's
workers too) instead of wall time: on a shared machine it is far less disturbed
by other processes (use it with ``--threads 1``). ``--kernels numpy|numba``
chooses the layers' implementation (default: as ``COURSE_LIB_KERNELS`` says). Thread counts are applied through
the environment before NumPy is imported, as in the benchmark harness.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", choices=["TwoLayerNet", "SimpleConvNet", "DeepConvNet"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--cpu-time", action="store_true", help="process CPU time instead of wall time")
    ap.add_argument("--kernels", choices=["numpy", "numba"], help="the layers' implementation")
    ap.add_argument("--torch", action="store_true", help="profile the PyTorch model instead")
    ap.add_argument(
        "--what-if-relu",
        action="store_true",
        help="measure a what-if: Relu with arithmetic masks (x * mask) instead of np.where",
    )
    args = ap.parse_args(argv)

    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[k] = str(args.threads)
    if args.kernels:
        os.environ["COURSE_LIB_KERNELS"] = args.kernels
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (args.batch, 784) if args.model == "TwoLayerNet" else (args.batch, 1, 28, 28)
    x = rng.random(shape, dtype=np.float32)
    t = rng.integers(0, 10, size=args.batch)
    if args.torch:
        return profile_torch(args, x, t)

    from course_lib import models, optimizers

    if args.what_if_relu:
        patch_relu()

    dtype = np.dtype(args.dtype)
    if args.model == "TwoLayerNet":
        net = models.TwoLayerNet(784, 50, 10, dtype=dtype, seed=0)
    else:
        net = getattr(models, args.model)(dtype=dtype, seed=0)
    x = x.astype(dtype)
    opt = optimizers.Adam()
    clock = time.process_time if args.cpu_time else time.perf_counter
    samples: dict[str, list[float]] = {}

    def timed(name, fn, *a):
        t0 = clock()
        out = fn(*a)
        samples.setdefault(name, []).append(clock() - t0)
        return out

    for it in range(args.repeat + 3):
        h = x
        for name, layer in net.layers.items():
            if "train_flg" in layer.forward.__code__.co_varnames:
                h = timed(f"{name}.forward", layer.forward, h, True)
            else:
                h = timed(f"{name}.forward", layer.forward, h)
        timed("loss.forward", net.last_layer.forward, h, t)
        d = timed("loss.backward", net.last_layer.backward, 1)
        for name, layer in reversed(net.layers.items()):
            d = timed(f"{name}.backward", layer.backward, d)
        grads = {k: getattr(net.layers[ln], "d" + a) for k, (ln, a) in net._param_refs.items()}
        timed("Adam.update", opt.update, net.params, grads)
        if it < 3:  # warm-up
            samples.clear()

    rows = [(k, 1e3 * float(np.median(v))) for k, v in samples.items()]
    total = sum(ms for _, ms in rows)
    unit = "CPU ms (process)" if args.cpu_time else "wall ms"
    from course_lib import kernels

    print(
        f"{args.model} {args.dtype}, batch {args.batch}, {args.threads} threads, "
        f"kernels {kernels.active()}, median {unit}:"
    )
    for k, ms in rows:
        print(f"  {k:<22}{ms:8.2f}  {100 * ms / total:5.1f}%  {'#' * round(40 * ms / total)}")
    print(f"  {'sum':<22}{total:8.2f}")
    return 0


def patch_relu() -> None:
    """What-if: ``out = x * (x > 0)``, ``dx = dout * mask`` (np.where is ~10x slower per element)."""
    from course_lib.layers import Relu

    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dout):
        return dout * self.mask

    Relu.forward, Relu.backward = forward, backward
    print("what-if: Relu patched to use arithmetic masks")


def profile_torch(args, x, t) -> int:
    import torch
    from torch.profiler import ProfilerActivity, profile

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch_nets

    runner = torch_nets.TorchRunner(args.model, args.threads)
    xt, tt = runner.convert(x, t)
    for _ in range(5):
        runner.step(xt, tt)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.repeat):
            runner.step(xt, tt)
    print(
        f"PyTorch {torch.__version__}, {args.model}, {args.threads} threads, {args.repeat} steps:"
    )
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    return 0


if __name__ == "__main__":
    sys.exit(main())
