"""Side-by-side training-step benchmark: course_lib vs. book-style NumPy vs. PyTorch CPU.

Run it as ``course-lib bench`` (or ``python benchmarks/run_bench.py``). Every
(implementation, model) pair runs in its own worker process, so each one gets
the same thread settings (``OMP/OPENBLAS/MKL_NUM_THREADS`` and
``torch.set_num_threads``), its own peak-RSS figure and a clean allocator.
Workers are run in interleaved rounds so that a burst of load from another
process on a shared machine does not land on one implementation only.

What is measured (all float32 except the book-style baseline, which is float64
as the book writes it):

* the median wall time of one training step (forward, backward, Adam update)
  on a batch of 100 for TwoLayerNet, SimpleConvNet and DeepConvNet;
* peak resident memory of the worker and, for NumPy, the tracemalloc peak of
  one step (the bytes NumPy allocates for temporaries);
* inference over the 10,000 MNIST test images (batches of 100);
* for TwoLayerNet: one numerical gradient against one backprop gradient.

Results go to ``<out>/bench.json`` and ``<out>/bench.png`` (plus timestamped
copies); ratios and target checks are printed.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

IMPLS = ("course_lib", "course_lib_numpy", "book", "torch")
#: Run by default; ``course_lib_numpy`` (the NumPy reference path) on request (``--impls``).
DEFAULT_IMPLS = ("course_lib", "book", "torch")
MODELS = ("TwoLayerNet", "SimpleConvNet", "DeepConvNet")
IMPL_LABELS = {
    "course_lib": "course_lib (float32)",
    "course_lib_numpy": "course_lib NumPy path (float32)",
    "book": "book-style NumPy (float64)",
    "torch": "PyTorch CPU (float32)",
}

#: Targets, as ratios of step times from one run: wall time with several threads, and
#: (``max_vs_torch_cpu``) CPU time with ``--threads 1 --clock cpu``. With several rounds the
#: ratio checked is the median of the rounds' ratios (each round times course_lib and
#: PyTorch back to back, so a burst of load from other processes hits both; the median round,
#: not the luckiest one, so one quiet round cannot make a target look met).
TARGETS = {
    "SimpleConvNet": {"max_vs_torch": 0.9, "max_vs_torch_cpu": 0.8, "min_speedup_vs_book": 4.0},
    "DeepConvNet": {"max_vs_torch": 1.3, "max_vs_torch_cpu": 1.2, "min_speedup_vs_book": 4.0},
}

THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


# --------------------------------------------------------------------------- data


def find_mnist_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The folder holding the MNIST IDX files, or None (then synthetic images are used)."""
    candidates = []
    if data_dir:
        candidates.append(Path(data_dir))
    if os.environ.get("COURSE_LIB_DATA"):
        candidates.append(Path(os.environ["COURSE_LIB_DATA"]))
    candidates.append(REPO.parent / "shared" / "data")
    for c in candidates:
        for d in (c / "mnist", c):
            if (d / "t10k-images-idx3-ubyte.gz").is_file():
                return d
    return None


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_test_images(data_dir: str | None, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``x: (n, 1, 28, 28)`` float32 in [0, 1], ``t: (n,)`` int64, and the data source name."""
    d = find_mnist_dir(data_dir)
    if d is not None:
        x = _read_idx(d / "t10k-images-idx3-ubyte.gz")[:n].astype(np.float32) / 255.0
        t = _read_idx(d / "t10k-labels-idx1-ubyte.gz")[:n].astype(np.int64)
        return x.reshape(-1, 1, 28, 28), t, f"MNIST test set ({d})"
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    t = rng.integers(0, 10, size=n)
    return x, t, "synthetic uniform images (MNIST not found)"


# --------------------------------------------------------------------------- runners


class NumpyRunner:
    """Wraps a NumPy network (course_lib or book-style) and its Adam optimiser."""

    def __init__(self, net: Any, optimizer: Any, dtype: type):
        self.net, self.opt, self.dtype = net, optimizer, dtype

    def convert(self, x: np.ndarray, t: np.ndarray | None = None):
        x = np.ascontiguousarray(x, dtype=self.dtype)
        return x if t is None else (x, t)

    def step(self, x: np.ndarray, t: np.ndarray) -> None:
        grads = self.net.gradient(x, t)
        self.opt.update(self.net.params, grads)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(self.net.predict(x, train_flg=False), axis=1)


def make_runner(impl: str, model: str, threads: int, seed: int):
    if impl == "torch":
        import torch_nets

        ok, msg = torch_nets.torch_available()
        if not ok:
            raise RuntimeError(msg)
        return torch_nets.TorchRunner(model, threads, seed)
    if impl == "book":
        import book_baseline

        return NumpyRunner(book_baseline.MODELS[model](seed=seed), book_baseline.Adam(), np.float64)
    if impl in ("course_lib", "course_lib_numpy"):
        from course_lib import models, optimizers

        if model == "TwoLayerNet":
            net = models.TwoLayerNet(784, 50, 10, dtype=np.float32, seed=seed)
        else:
            net = getattr(models, model)(dtype=np.float32, seed=seed)
        return NumpyRunner(net, optimizers.Adam(lr=0.001), np.float32)
    raise ValueError(f"unknown implementation {impl!r}; expected one of {IMPLS}")


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def _reset_peak_rss() -> bool:
    """Restart the kernel's resident-set high-water mark (Linux: VmHWM); False if impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """Peak resident memory since the last reset (VmHWM), else since the process started."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _flat(x: np.ndarray, model: str) -> np.ndarray:
    return x.reshape(len(x), -1) if model == "TwoLayerNet" else x


def _clock(job: dict) -> Callable[[], float]:
    """Wall time, or the CPU time of the whole process (``clock == "cpu"``)."""
    return time.process_time if job.get("clock") == "cpu" else time.perf_counter


def run_step_job(job: dict) -> dict:
    """Time ``repeat`` training steps (after ``warmup``) and one inference pass."""
    impl, model = job["impl"], job["model"]
    clock = _clock(job)
    batch, n_batches = job["batch"], job["distinct_batches"]
    x_all, t_all, source = load_test_images(
        job.get("data_dir"), max(job["infer_images"], batch * n_batches), job["seed"]
    )
    runner = make_runner(impl, model, job["threads"], job["seed"])
    batches = [
        runner.convert(
            _flat(x_all[i * batch : (i + 1) * batch], model), t_all[i * batch : (i + 1) * batch]
        )
        for i in range(n_batches)
    ]
    rss_before = _rss_mb()
    peak_was_reset = _reset_peak_rss()
    t0 = time.perf_counter()
    runner.step(*batches[0])  # includes importing Numba and loading (or compiling) kernels
    first_step = time.perf_counter() - t0
    for i in range(1, job["warmup"]):
        runner.step(*batches[i % n_batches])
    times = []
    for i in range(job["repeat"]):
        xb, tb = batches[i % n_batches]
        t0 = clock()
        runner.step(xb, tb)
        times.append(clock() - t0)
    result: dict[str, Any] = {
        "impl": impl,
        "model": model,
        "step_times_s": times,
        "first_step_wall_s": first_step,
        "rss_before_steps_mb": rss_before,
        "peak_rss_steps_mb": _peak_rss_mb(),
        "peak_is_of_steps_only": peak_was_reset,
        "data": source,
    }
    if impl.startswith("course_lib"):
        from course_lib import kernels, threads

        result["kernels"] = kernels.active()
        result["thread_pools"] = threads.thread_info()
    if impl != "torch":
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        runner.step(*batches[0])
        result["step_alloc_peak_mb"] = (tracemalloc.get_traced_memory()[1] - base) / 2**20
        tracemalloc.stop()
    if job["infer_images"]:
        n = job["infer_images"]
        ib = job["infer_batch"]
        chunks = [runner.convert(_flat(x_all[i : i + ib], model)) for i in range(0, n, ib)]
        runner.predict(chunks[0])  # warm-up
        _reset_peak_rss()
        t0 = clock()
        correct = 0
        for k, xb in enumerate(chunks):
            correct += int(np.sum(runner.predict(xb) == t_all[k * ib : (k + 1) * ib]))
        result["infer_time_s"] = clock() - t0
        result["infer_images"] = n
        result["peak_rss_infer_mb"] = _peak_rss_mb()
    return result


def run_numgrad_job(job: dict) -> dict:
    """course_lib TwoLayerNet in float64: one numerical gradient vs. backprop (median)."""
    from course_lib import models

    hidden, batch = job["hidden"], job["batch"]
    clock = _clock(job)
    x_all, t_all, source = load_test_images(job.get("data_dir"), batch, job["seed"])
    x = x_all.reshape(batch, -1).astype(np.float64)
    net = models.TwoLayerNet(784, hidden, 10, dtype=np.float64, seed=job["seed"])
    net.gradient(x, t_all)
    bp = []
    for _ in range(job["repeat"]):
        t0 = clock()
        net.gradient(x, t_all)
        bp.append(clock() - t0)
    t0 = clock()
    net.numerical_gradient(x, t_all)
    numerical = clock() - t0
    n_params = int(sum(p.size for p in net.params.values()))
    backprop = statistics.median(bp)
    return {
        "impl": "course_lib",
        "model": f"TwoLayerNet(784, {hidden}, 10) float64, batch {batch}",
        "n_params": n_params,
        "backprop_median_s": backprop,
        "numerical_s": numerical,
        "ratio": numerical / backprop,
        "data": source,
    }


def worker_main(spec: str) -> int:
    job = json.loads(spec)
    sys.path.insert(0, str(HERE))
    try:
        result = run_numgrad_job(job) if job["kind"] == "numgrad" else run_step_job(job)
        from course_lib.cli.bench import openblas_corename

        result["openblas_core"] = openblas_corename()
    except Exception as exc:  # reported to the parent, which prints it as "skipped"
        result = {
            "impl": job.get("impl"),
            "model": job.get("model"),
            "error": f"{type(exc).__name__}: {exc}",
        }
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------- parent


def worker_env(threads: int, coretype: str) -> dict[str, str]:
    """The environment every worker runs in: same thread counts, same OpenBLAS kernel choice."""
    from course_lib.cli.bench import blas_environment

    env = blas_environment(os.environ, threads, coretype)
    env.update({k: str(threads) for k in THREAD_ENV})
    env["COURSE_LIB_THREADS"] = str(threads)
    return env


def impl_env(env: dict[str, str], impl: str) -> dict[str, str]:
    """The worker environment for one implementation (the NumPy path is chosen by variable)."""
    if impl == "course_lib_numpy":
        return {**env, "COURSE_LIB_KERNELS": "numpy"}
    return env


def run_worker(job: dict, env: dict[str, str], timeout: float) -> dict:
    cmd = [sys.executable, str(HERE / "bench_harness.py"), "--worker", json.dumps(job)]
    try:
        proc = subprocess.run(
            cmd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {
            "impl": job.get("impl"),
            "model": job.get("model"),
            "error": f"timed out after {timeout:.0f} s",
        }
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {
        "impl": job.get("impl"),
        "model": job.get("model"),
        "error": f"worker exited with {proc.returncode}: " + " | ".join(tail),
    }


def machine_info(threads: int) -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas.get('name')} {blas.get('version')}"
    except Exception:
        blas = "unknown"
    info = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas,
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        info["git_commit"] = (
            subprocess.run(
                ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            or None
        )
    except OSError:
        info["git_commit"] = None
    sys.path.insert(0, str(HERE))
    import torch_nets

    ok, msg = torch_nets.torch_available()
    info["torch"] = msg if ok else None
    return info


def round_ratios(runs: dict[tuple[str, str], list[dict]], model: str, impl: str) -> list[float]:
    """Per round, the median step of ``impl`` over the median step of torch (same round)."""
    ours, theirs = runs.get((model, impl), []), runs.get((model, "torch"), [])
    ratios = []
    for a, b in zip(ours, theirs):
        if "error" in a or "error" in b:
            continue
        ratios.append(statistics.median(a["step_times_s"]) / statistics.median(b["step_times_s"]))
    return ratios


def _summarise(step_results: list[dict]) -> dict:
    """Merge the rounds of one (impl, model) pair."""
    errors = [r["error"] for r in step_results if "error" in r]
    ok = [r for r in step_results if "error" not in r]
    if not ok:
        return {"error": errors[0] if errors else "no result"}
    times = [t for r in ok for t in r["step_times_s"]]
    q = np.percentile(times, [25, 75])
    out = {
        "step_median_ms": 1e3 * statistics.median(times),
        "step_min_ms": 1e3 * min(times),
        "step_iqr_ms": [1e3 * float(q[0]), 1e3 * float(q[1])],
        "steps_timed": len(times),
        "peak_rss_mb": max(r["peak_rss_steps_mb"] for r in ok),
        "rss_before_steps_mb": min(r["rss_before_steps_mb"] for r in ok),
        "peak_is_of_steps_only": all(r["peak_is_of_steps_only"] for r in ok),
        "data": ok[0]["data"],
        "openblas_core": ok[0].get("openblas_core"),
        "first_step_wall_s": [r.get("first_step_wall_s") for r in ok],
        "round_medians_ms": [1e3 * statistics.median(r["step_times_s"]) for r in ok],
    }
    if "kernels" in ok[0]:
        out["kernels"] = ok[0]["kernels"]
        out["thread_pools"] = ok[0]["thread_pools"]
    out["step_rss_growth_mb"] = out["peak_rss_mb"] - out["rss_before_steps_mb"]
    if "step_alloc_peak_mb" in ok[0]:
        out["step_alloc_peak_mb"] = max(r["step_alloc_peak_mb"] for r in ok)
    if "infer_time_s" in ok[0]:
        out["infer_time_s"] = statistics.median(r["infer_time_s"] for r in ok)
        out["infer_images"] = ok[0]["infer_images"]
        out["peak_rss_infer_mb"] = max(r["peak_rss_infer_mb"] for r in ok)
    return out


def compute_ratios(
    results: dict,
    rounds: dict[str, dict[str, list[float]]] | None = None,
    *,
    cpu_one_thread: bool = False,
) -> dict:
    """Ratios of median step times; with ``rounds`` (model -> impl -> per-round ratios to
    torch) also their median (what the targets are checked against) and their range."""
    ratios: dict[str, dict] = {}
    for model, per_impl in results.items():
        ours = per_impl.get("course_lib", {}).get("step_median_ms")
        r: dict[str, Any] = {}
        torch_ms = per_impl.get("torch", {}).get("step_median_ms")
        book_ms = per_impl.get("book", {}).get("step_median_ms")
        numpy_ms = per_impl.get("course_lib_numpy", {}).get("step_median_ms")
        if ours and torch_ms:
            r["course_lib_vs_torch"] = ours / torch_ms
        if numpy_ms and torch_ms:
            r["course_lib_numpy_vs_torch"] = numpy_ms / torch_ms
        if ours and book_ms:
            r["speedup_vs_book"] = book_ms / ours
        if book_ms and torch_ms:
            r["book_vs_torch"] = book_ms / torch_ms
        for impl, per_round in ((rounds or {}).get(model) or {}).items():
            if per_round:
                r[f"{impl}_vs_torch_rounds"] = per_round
                r[f"{impl}_vs_torch_min"] = min(per_round)
                r[f"{impl}_vs_torch_max"] = max(per_round)
                r[f"{impl}_vs_torch_round_median"] = float(np.median(per_round))
        checked = r.get("course_lib_vs_torch_round_median", r.get("course_lib_vs_torch"))
        target = dict(TARGETS.get(model, {}))
        limit = (
            target.pop("max_vs_torch_cpu", None) if cpu_one_thread else target.get("max_vs_torch")
        )
        target.pop("max_vs_torch_cpu", None)
        if limit is not None:
            target["max_vs_torch"] = limit
        met = {}
        if "max_vs_torch" in target and checked is not None:
            met["vs_torch"] = checked <= target["max_vs_torch"]
        if "min_speedup_vs_book" in target and "speedup_vs_book" in r:
            met["vs_book"] = r["speedup_vs_book"] >= target["min_speedup_vs_book"]
        r["targets"] = target
        r["targets_met"] = met
        ratios[model] = r
    return ratios


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in MODELS if m in report["results"]]
    impls = [i for i in IMPLS if any(i in report["results"][m] for m in models)]
    colors = {
        "course_lib": "#1f77b4",
        "course_lib_numpy": "#9ecae1",
        "book": "#999999",
        "torch": "#ee4c2c",
    }
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / max(1, len(impls))
    for panel, (key, scale, ylabel) in enumerate(
        [
            ("step_median_ms", 1.0, "median training step (ms, log)"),
            ("infer_time_s", 1.0, "inference, MNIST test set (s, log)"),
        ]
    ):
        ax = axes[panel]
        for k, impl in enumerate(impls):
            xs, ys = [], []
            for j, m in enumerate(models):
                v = report["results"][m].get(impl, {}).get(key)
                if v:
                    xs.append(j + (k - (len(impls) - 1) / 2) * width)
                    ys.append(v * scale)
            bars = ax.bar(xs, ys, width, label=IMPL_LABELS[impl], color=colors[impl])
            for b, y in zip(bars, ys):
                ax.annotate(
                    f"{y:.3g}",
                    (b.get_x() + b.get_width() / 2, y),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
        ax.set_xticks(range(len(models)))
        labels = []
        for m in models:
            r = report["ratios"].get(m, {})
            extra = []
            if panel == 0 and "course_lib_vs_torch" in r:
                extra.append(f"{r['course_lib_vs_torch']:.2f}x torch")
            if panel == 0 and "speedup_vs_book" in r:
                extra.append(f"{r['speedup_vs_book']:.1f}x faster than book")
            labels.append("\n".join([m, *extra]))
        ax.set_xticklabels(labels, fontsize=8)
        if ax.containers and any(len(c) for c in ax.containers):
            ax.set_yscale("log")  # (nothing to scale when a panel was not measured)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    m = report["machine"]
    fig.suptitle(
        f"batch {report['config']['batch']}, Adam, {m['threads']} thread(s), "
        f"{m['cpu']}, {m['date_utc']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_report(report: dict) -> str:
    lines = []
    m = report["machine"]
    lines.append(
        f"Machine: {m['cpu']} ({m['logical_cpus']} logical CPUs), {m['threads']} threads, "
        f"NumPy {m['numpy']} ({m['blas']}), PyTorch {m['torch'] or 'not installed'}"
    )
    if report["config"].get("clock") == "cpu":
        lines.append("Times are process CPU times (--clock cpu), not wall times")
    lines.append(f"Worker environment: {m.get('worker_env')}")
    cores = {r.get("openblas_core") for per in report["results"].values() for r in per.values()}
    lines.append(f"OpenBLAS kernels used: {', '.join(sorted(str(c) for c in cores))}")
    lines.append(f"Data: {report['data']}")
    m_end = m.get("loadavg_end")
    lines.append(f"Load average at start / end: {m.get('loadavg_start')} / {m_end}")
    lines.append("")
    hdr = f"{'model':<14}{'implementation':<30}{'step ms (median)':>17}{'IQR ms':>16}"
    hdr += f"{'peak RSS MB':>13}{'+step MB':>10}"
    hdr += f"{'step alloc MB':>15}{'infer s':>9}"
    lines.append(hdr)
    for model, per_impl in report["results"].items():
        for impl in IMPLS:
            r = per_impl.get(impl)
            if r is None:
                continue
            if "error" in r:
                lines.append(f"{model:<14}{IMPL_LABELS[impl]:<30}  skipped: {r['error']}")
                continue
            iqr = f"{r['step_iqr_ms'][0]:.2f}-{r['step_iqr_ms'][1]:.2f}"
            alloc = f"{r['step_alloc_peak_mb']:.1f}" if "step_alloc_peak_mb" in r else "-"
            inf = f"{r['infer_time_s']:.2f}" if "infer_time_s" in r else "-"
            lines.append(
                f"{model:<14}{IMPL_LABELS[impl]:<30}{r['step_median_ms']:>17.2f}{iqr:>16}"
                f"{r['peak_rss_mb']:>13.0f}{r['step_rss_growth_mb']:>10.0f}{alloc:>15}{inf:>9}"
            )
    lines.append(
        "peak RSS: the worker's peak resident memory while stepping (libraries, model and data "
        "included); +step: how far the steps raised it above the resident size before them; "
        "step alloc: tracemalloc peak of one NumPy step (its temporaries)"
    )
    lines.append("")
    lines.append(
        "Ratios (median step time, this run; per round: course_lib's and torch's medians of"
        " that round; targets are checked on the median round):"
    )
    for model, r in report["ratios"].items():
        parts = []
        if "course_lib_vs_torch" in r:
            t = r["targets"].get("max_vs_torch")
            ok = r["targets_met"].get("vs_torch")
            tgt = f" (target <= {t:.1f}x: {'met' if ok else 'MISSED'})" if t else ""
            rounds = r.get("course_lib_vs_torch_rounds")
            by_round = (
                f", median round {r['course_lib_vs_torch_round_median']:.2f}x of rounds "
                + " ".join(f"{x:.2f}" for x in rounds)
                if rounds
                else ""
            )
            parts.append(f"course_lib / torch = {r['course_lib_vs_torch']:.2f}x{by_round}{tgt}")
        if "course_lib_numpy_vs_torch" in r:
            mid = r.get("course_lib_numpy_vs_torch_round_median")
            parts.append(
                f"NumPy path / torch = {r['course_lib_numpy_vs_torch']:.2f}x"
                + (f" (median round {mid:.2f}x)" if mid else "")
            )
        if "speedup_vs_book" in r:
            t = r["targets"].get("min_speedup_vs_book")
            ok = r["targets_met"].get("vs_book")
            tgt = f" (target >= {t:.0f}x: {'met' if ok else 'MISSED'})" if t else ""
            parts.append(f"book / course_lib = {r['speedup_vs_book']:.1f}x{tgt}")
        if "book_vs_torch" in r:
            parts.append(f"book / torch = {r['book_vs_torch']:.1f}x")
        lines.append(f"  {model:<14}" + "; ".join(parts) if parts else f"  {model:<14}(incomplete)")
    nbm = report.get("notebook_memory")
    if nbm:
        lines.append("")
        if "error" in nbm:
            lines.append(f"Notebook memory: failed: {nbm['error']}")
        else:
            lines.append(
                f"Notebook memory: {nbm['chapter']} in quick mode peaks at "
                f"{nbm['peak_rss_mb']:.0f} MB resident ({nbm['wall_s']:.0f} s, "
                f"kernels {nbm['kernels']}, {len(nbm['errors'])} cell errors)"
            )
    ng = report.get("numgrad")
    if ng:
        lines.append("")
        if "error" in ng:
            lines.append(f"Numerical gradient vs backprop: skipped: {ng['error']}")
        else:
            lines.append(
                f"Numerical gradient vs backprop, {ng['model']} ({ng['n_params']} parameters): "
                f"numerical {ng['numerical_s']:.2f} s, "
                f"backprop {1e3 * ng['backprop_median_s']:.3f} ms "
                f"-> {ng['ratio']:,.0f}x slower"
            )
    return "\n".join(lines)


def run_benchmarks(
    *,
    quick: bool = False,
    models: list[str] | None = None,
    impls: list[str] | None = None,
    threads: int = 2,
    repeat: int | None = None,
    warmup: int | None = None,
    rounds: int | None = None,
    inference: bool = True,
    numgrad: bool = True,
    out_dir: str | os.PathLike | None = None,
    data_dir: str | None = None,
    timeout: float = 1800.0,
    openblas_coretype: str = "inherit",
    clock: str = "wall",
    notebook_memory: str | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run the benchmark and write ``bench.json`` / ``bench.png``; return the report dict."""
    models = list(models or MODELS)
    impls = list(impls or DEFAULT_IMPLS)
    for m in models:
        if m not in MODELS:
            raise ValueError(f"unknown model {m!r}; choose from {', '.join(MODELS)}")
    for i in impls:
        if i not in IMPLS:
            raise ValueError(f"unknown implementation {i!r}; choose from {', '.join(IMPLS)}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    repeat = repeat if repeat is not None else (2 if quick else 15)
    warmup = warmup if warmup is not None else (1 if quick else 3)
    rounds = rounds if rounds is not None else (1 if quick else 2)
    config = {
        "quick": quick,
        "batch": 100,
        "repeat_per_round": repeat,
        "warmup": warmup,
        "rounds": rounds,
        "infer_images": (200 if quick else 10000) if inference else 0,
        "infer_batch": 100,
        "optimizer": "Adam(lr=0.001)",
        "clock": clock,
    }
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    machine = machine_info(threads)
    env = worker_env(threads, openblas_coretype)
    machine["worker_env"] = {k: env[k] for k in (*THREAD_ENV, "OPENBLAS_CORETYPE") if k in env}
    if machine["loadavg_start"] and machine["loadavg_start"][0] > 0.5 * (os.cpu_count() or 1):
        log(
            f"warning: load average {machine['loadavg_start'][0]:.1f} on {os.cpu_count()} CPUs; "
            "other processes compete for the cores and the timings will be noisy"
        )
    if "torch" in impls and machine["torch"] is None:
        sys.path.insert(0, str(HERE))
        import torch_nets

        log(f"PyTorch skipped: {torch_nets.torch_available()[1]}")
    runs: dict[tuple[str, str], list[dict]] = {}
    for rnd in range(rounds):
        for model in models:
            for impl in impls:
                if impl == "torch" and machine["torch"] is None:
                    continue
                job = {
                    "kind": "step",
                    "impl": impl,
                    "model": model,
                    "threads": threads,
                    "batch": 100,
                    "distinct_batches": 2 if quick else 5,
                    "warmup": warmup,
                    "repeat": repeat,
                    "infer_images": config["infer_images"],
                    "infer_batch": 100,
                    "seed": rnd,
                    "clock": clock,
                    "data_dir": str(data_dir) if data_dir else None,
                }
                log(f"[round {rnd + 1}/{rounds}] {model:<14} {impl:<11}")
                res = run_worker(job, impl_env(env, impl), timeout)
                if "error" in res:
                    log(f"    skipped: {res['error']}")
                else:
                    med = 1e3 * statistics.median(res["step_times_s"])
                    log(f"    step median {med:.2f} ms")
                runs.setdefault((model, impl), []).append(res)
    results: dict[str, dict] = {}
    for (model, impl), rs in runs.items():
        results.setdefault(model, {})[impl] = _summarise(rs)
    data_src = next(
        (r["data"] for rs in runs.values() for r in rs if "data" in r), "no data loaded"
    )
    report: dict[str, Any] = {
        "machine": machine,
        "config": config,
        "data": data_src,
        "results": results,
        "ratios": compute_ratios(
            results,
            {
                m: {i: round_ratios(runs, m, i) for i in impls if i.startswith("course_lib")}
                for m in models
            },
            cpu_one_thread=clock == "cpu" and threads == 1,
        ),
    }
    if numgrad and "course_lib" in impls:
        job = {
            "kind": "numgrad",
            "hidden": 5 if quick else 50,
            "batch": 10 if quick else 100,
            "repeat": 3 if quick else 20,
            "seed": 0,
            "clock": clock,
            "data_dir": str(data_dir) if data_dir else None,
        }
        log("numerical gradient vs backprop (TwoLayerNet, course_lib)")
        report["numgrad"] = run_worker(job, env, timeout)
    if notebook_memory:
        import notebook_memory as nbm

        log(f"{notebook_memory}: peak resident memory of the quick-mode solution notebook")
        try:
            mnist = find_mnist_dir(data_dir)  # the notebook wants the folder holding mnist/
            datasets = mnist.parent if mnist is not None and mnist.name == "mnist" else mnist
            report["notebook_memory"] = nbm.measure(notebook_memory, data_dir=datasets)
            log("    " + nbm.format_result(report["notebook_memory"]))
        except Exception as exc:  # reported in the JSON and printed; the timings still count
            report["notebook_memory"] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"    failed: {exc}")
    machine["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    out = Path(out_dir) if out_dir else HERE / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for name in ("bench", f"bench-{stamp}"):
        (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    try:
        plot(report, out / "bench.png")
        (out / f"bench-{stamp}.png").write_bytes((out / "bench.png").read_bytes())
        report["chart"] = str(out / "bench.png")
    except Exception as exc:
        log(f"chart not written: {type(exc).__name__}: {exc}")
    report["json"] = str(out / "bench.json")
    log("")
    log(format_report(report))
    log("")
    log(f"Wrote {out / 'bench.json'} and {out / 'bench.png'}")
    return report


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(worker_main(sys.argv[2]))
    from course_lib.cli.bench import main

    sys.exit(main())
