"""Compile the kernels ahead of time, so that no notebook waits for Numba's compiler.

    course-lib warm-kernels            # what ./course.sh start runs, in the background
    python -m course_lib.kernels.warm  # the same

The compiled kernels (:mod:`course_lib.kernels`) are compiled the first time a
layer meets them, once per dtype and memory layout, and cached on disk
(:func:`course_lib.kernels.cache_dir`). :func:`warm` fills that cache ahead of the
notebooks: it does not list the kernels, it runs the course's models through the
layers as the chapters do (one training step with every optimizer, ``predict`` on a
test-set-sized batch, a float64 gradient as the gradient checks do), in float32 and
float64, with one thread and with two (a float32 kernel runs serial with one
thread and parallel with more: two compiled versions). Whatever kernel a layer
takes, today's or one added later, is compiled and cached that way.

:func:`compile_report` tells what a process compiled and what it loaded from the
cache (Numba's own per-dispatcher counters), which is how the tests check that after
a warm-up a fresh process compiles nothing.

A stamp in the cache folder (the versions of Python, NumPy and Numba, the machine,
and a hash of the source of ``course_lib``'s layers, models and kernels) lets a
later warm-up return at once while nothing changed; ``--force`` warms anyway.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Iterable, Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["compile_report", "dispatchers", "fingerprint", "is_warm", "warm", "workload"]

#: Thread counts warmed: 1 (serial kernels) and 2 (parallel kernels, any number of threads).
THREADS = (1, 2)
DTYPES = ("float32", "float64")


def workload(dtype: str = "float32", seed: int = 0) -> None:
    """One chapter's use of the layers, small: every model, every optimizer, inference.

    The book's models, and a network of the layers they leave out (chapter 5's kind,
    :func:`_layers_net`). The sizes are the chapters' (a training batch of 100 MNIST-shaped inputs, the
    fully connected nets' accuracy on a test set of 10,000, the convolutional nets'
    gradient checks on a few images in float64), so each layer takes the path it
    takes in a notebook; ``dtype`` is the models' dtype.
    """
    import numpy as np

    from course_lib import models, optimizers

    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    test = rng.random((10_000, 784), dtype=np.float32).astype(dt)
    labels = rng.integers(0, 10, len(test))
    images = test[:100].reshape(100, 1, 28, 28)
    if dt != np.float32:  # float64 convolutional nets: gradient checks, on a few images
        images = images[:8]
    fully_connected = (
        models.TwoLayerNet(784, 100, 10, dtype=dt, seed=seed),
        models.MultiLayerNet(784, [100, 100], 10, dtype=dt, seed=seed),
        models.MultiLayerNetExtend(
            784, [100, 100], 10, use_batchnorm=True, use_dropout=True, dtype=dt, seed=seed
        ),
    )
    convolutional = (
        models.SimpleConvNet(dtype=dt, seed=seed),
        models.DeepConvNet(dtype=dt, seed=seed),
        _layers_net(dt, seed),
    )
    for net, x, x_test in [
        *[(net, test[:100], test) for net in fully_connected],
        *[(net, images, images) for net in convolutional],
    ]:
        grads = net.gradient(x, labels[: len(x)])
        for make in optimizers.OPTIMIZERS.values():
            make().update(net.params, grads)
        net.accuracy(x_test, labels[: len(x_test)])  # inference


def _layers_net(dtype: Any, seed: int) -> Any:
    """Chapter 5's kind of network, from the layers the book's models leave out.

    conv 3x3 - pool - LeakyReLU - conv 5x5 - batch norm - sigmoid - global average - affine.
    The 5x5 convolution takes the patch path in float32 too (3x3 ones are Winograd's there).
    """
    import numpy as np

    from course_lib import layers as L
    from course_lib.models import Sequential

    rng = np.random.default_rng(seed)

    def conv(c_in: int, c_out: int, size: int) -> Any:
        W = rng.standard_normal((c_out, c_in, size, size)) * np.sqrt(2.0 / (size**2 * c_in))
        return L.Convolution(W.astype(dtype), np.zeros(c_out, dtype), pad=size // 2)

    net = Sequential(
        [
            conv(1, 16, 3),
            L.Pooling(2, 2, stride=2),
            L.LeakyRelu(0.01),
            conv(16, 32, 5),
            L.BatchNormalization(np.ones(32, dtype), np.zeros(32, dtype)),
            L.Sigmoid(),
            L.GlobalAvgPooling(),
            L.Affine(rng.standard_normal((32, 10)).astype(dtype) * 0.1, np.zeros(10, dtype)),
        ],
        seed=seed,
    )
    return net


def dispatchers(module: ModuleType) -> dict[str, Any]:
    """Every Numba dispatcher in ``module`` (top level, or held by a function there), by name."""
    from numba.core.dispatcher import Dispatcher

    found: dict[str, Any] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, Dispatcher):
            found.setdefault(name, obj)

    for name, obj in vars(module).items():
        visit(name, obj)
        if callable(obj) and getattr(obj, "__module__", None) == module.__name__:
            for attr, inner in getattr(obj, "__dict__", {}).items():
                visit(f"{name}.{attr}", inner)
    return found


def compile_report() -> dict[str, dict[str, int]]:
    """What this process did per dispatcher: ``{name: {"compiled": n, "loaded": n}}``.

    ``compiled`` counts the signatures compiled here (Numba's cache misses), ``loaded``
    those loaded from the disk cache (its hits), for the kernels of every module of
    :mod:`course_lib.kernels` loaded. Kernels never used are left out; an empty report
    means Numba was not used (or not imported).
    """
    if "numba" not in sys.modules:  # nothing compiled; and do not import it here
        return {}
    report = {}
    found = {
        name if module_name.endswith("._numba") else f"{module_name}.{name}": d
        for module_name, module in list(sys.modules.items())
        if module_name.startswith("course_lib.kernels.") and module is not None
        for name, d in dispatchers(module).items()
    }
    for name, d in found.items():
        stats = d.stats
        compiled, loaded = sum(stats.cache_misses.values()), sum(stats.cache_hits.values())
        if compiled or loaded:
            report[name] = {"compiled": compiled, "loaded": loaded}
    return report


def _package_sources() -> Iterable[Path]:
    """The modules that decide which kernels run: course_lib's top level, kernels, layers, models."""
    root = Path(__file__).resolve().parents[1]
    return sorted(
        [
            *root.glob("*.py"),
            *[p for d in ("kernels", "layers", "models") for p in (root / d).rglob("*.py")],
        ]
    )


def fingerprint() -> str:
    """What the cache's content depends on: Python, NumPy, Numba, the machine, the layers' source."""
    h = hashlib.sha256()
    for dist in ("numpy", "numba"):
        try:
            h.update(f"{dist}={dist_version(dist)}\n".encode())
        except PackageNotFoundError:
            h.update(f"{dist}=none\n".encode())
    h.update(f"{sys.version}\n{platform.machine()}\n{platform.node()}\n".encode())
    for path in _package_sources():
        h.update(str(path).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _stamp_path(cache: Path) -> Path:
    where = hashlib.sha256(str(Path(__file__).resolve()).encode()).hexdigest()[:12]
    return cache / f"course_lib-warm-{where}.json"


def is_warm() -> bool:
    """Whether a warm-up finished for this install's source and versions (no Numba import)."""
    from course_lib import kernels

    try:
        stamp = json.loads(_stamp_path(kernels.cache_dir()).read_text())
    except (OSError, ValueError):
        return False
    return stamp.get("fingerprint") == fingerprint()


def _run_workloads(threads: Sequence[int], dtypes: Sequence[str]) -> None:
    from course_lib import kernels
    from course_lib import threads as thread_policy

    kernels.use_kernels("numba")
    # the most threads Numba may start is fixed when it loads: enough for the widest run
    os.environ.setdefault("NUMBA_NUM_THREADS", str(max(*threads, thread_policy._cores())))
    default = thread_policy.threads()  # what the notebooks use: warmed first
    for n in sorted(threads, key=lambda n: n != default):
        thread_policy.set_threads(n)
        kernels.compiled()
        for dtype in dtypes:
            workload(dtype)


def warm(
    threads: Sequence[int] = THREADS, dtypes: Sequence[str] = DTYPES, force: bool = False
) -> dict[str, Any]:
    """Compile (or load) every kernel the course's layers use; returns what was done.

    Returns ``{"skipped": True, ...}`` when a finished warm-up's stamp matches (unless
    ``force``); else the cache folder, the seconds taken and :func:`compile_report`.
    Raises ``OSError`` when no cache folder can be written (nothing would be kept).
    """
    from course_lib import kernels

    cache = kernels.cache_dir()  # raises OSError with no writable folder
    if os.environ.get(kernels._ENV, "").strip().lower() == "numpy":
        return {"skipped": True, "cache_dir": str(cache), "why": f"{kernels._ENV}=numpy"}
    if not force and is_warm():
        return {"skipped": True, "cache_dir": str(cache), "why": "already cached"}
    if not kernels._numba_available():
        raise ImportError("numba is not installed: nothing to compile (the NumPy layers run)")
    t0 = time.perf_counter()
    _run_workloads(threads, dtypes)
    report = compile_report()
    result = {
        "skipped": False,
        "why": "warmed",
        "cache_dir": str(cache),
        "seconds": round(time.perf_counter() - t0, 2),
        "compiled": sum(r["compiled"] for r in report.values()),
        "loaded": sum(r["loaded"] for r in report.values()),
        "kernels": report,
    }
    _stamp_path(cache).write_text(json.dumps({"fingerprint": fingerprint(), **result}, indent=1))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.kernels.warm", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="warm even if the stamp matches")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="print nothing unless it fails")


def run(args: argparse.Namespace) -> int:
    try:
        result = warm(force=args.force)
    except (OSError, ImportError) as exc:
        print(f"warm-kernels: nothing compiled ahead: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=1))
    elif args.quiet:
        pass
    elif result["why"] == "already cached":
        print(f"compiled kernels already cached in {result['cache_dir']}")
    elif result["skipped"]:
        print(f"nothing compiled ahead: {result['why']} (the NumPy layers run)")
    else:
        print(
            f"compiled kernels cached in {result['cache_dir']}: {result['compiled']} compiled, "
            f"{result['loaded']} loaded from the cache, {result['seconds']:.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
