"""``course-lib bench``: time course_lib against a book-style NumPy baseline and PyTorch CPU.

The benchmark code lives in the repository's ``benchmarks/`` folder (it is
developer tooling, not part of the installed library); this command finds that
folder next to the ``course_lib`` package, or through ``COURSE_LIB_BENCHMARKS``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from course_lib.cli import options_for

#: CPU flags OpenBLAS's SkylakeX (AVX-512) kernels need.
AVX512_FLAGS = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

MODELS = ("TwoLayerNet", "SimpleConvNet", "DeepConvNet")
IMPLS = ("course_lib", "course_lib_numpy", "book", "torch")
#: The solution notebook whose quick-mode peak memory a full run measures.
NOTEBOOK_MEMORY_CHAPTER = "ch05_deep_networks"


def find_benchmarks_dir() -> Path:
    """The ``benchmarks/`` folder holding ``bench_harness.py``; raises a clear error if absent."""
    candidates = []
    if os.environ.get("COURSE_LIB_BENCHMARKS"):
        candidates.append(Path(os.environ["COURSE_LIB_BENCHMARKS"]))
    candidates.append(Path(__file__).resolve().parents[2] / "benchmarks")
    candidates.append(Path.cwd() / "benchmarks")
    for c in candidates:
        if (c / "bench_harness.py").is_file():
            return c
    raise FileNotFoundError(
        "course-lib bench needs the repository's benchmarks/ folder (looked in: "
        + ", ".join(str(c) for c in candidates)
        + "). Run it from a clone of the repository or set COURSE_LIB_BENCHMARKS."
    )


def openblas_corename() -> str | None:
    """The kernel family the OpenBLAS under NumPy chose (e.g. ``'Haswell'``), or None."""
    import ctypes

    import numpy as np

    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        if "openblas" not in str(blas.get("name", "")).lower():
            return None
    except Exception:
        return None
    libs = list((Path(np.__file__).parent.parent / "numpy.libs").glob("*openblas*"))
    for lib_path in libs:
        lib = ctypes.CDLL(str(lib_path))
        for fn in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
                   "openblas_get_corename64_", "openblas_get_corename"):  # fmt: skip
            f = getattr(lib, fn, None)
            if f is not None:
                f.restype = ctypes.c_char_p
                return f().decode()
    return None


def cpu_has_avx512() -> bool:
    """True when /proc/cpuinfo lists every AVX-512 subset the SkylakeX kernels use."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        return False
    return all(flag in flags for flag in AVX512_FLAGS)


def blas_environment(
    base: Mapping[str, str], threads: int | None, coretype: str = "inherit"
) -> dict[str, str]:
    """A copy of the environment ``base`` set up to run NumPy code: threads and OpenBLAS kernel.

    threads: sets ``OMP/OPENBLAS/MKL_NUM_THREADS`` (None: leave them).
    coretype: ``"inherit"`` keeps ``OPENBLAS_CORETYPE`` as it is in ``base``;
    ``"detect"`` removes it so that OpenBLAS picks the kernels for this CPU itself;
    any other value (e.g. ``"SkylakeX"``, ``"Haswell"``) is set. OpenBLAS reads these
    variables when it is loaded, so they only affect processes started with them.
    """
    env = dict(base)
    if threads is not None:
        env.update({k: str(threads) for k in THREAD_ENV})
    if coretype == "detect":
        env.pop("OPENBLAS_CORETYPE", None)
    elif coretype != "inherit":
        env["OPENBLAS_CORETYPE"] = coretype
    return env


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny iteration counts (checks that the harness runs; figures are not meaningful)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        choices=MODELS,
        metavar="MODEL",
        help=f"models to time (default: all of {', '.join(MODELS)})",
    )
    parser.add_argument(
        "--impls",
        nargs="+",
        choices=IMPLS,
        metavar="IMPL",
        help="implementations (default: course_lib book torch; course_lib_numpy is the "
        "NumPy reference path of course_lib, COURSE_LIB_KERNELS=numpy)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="BLAS/OpenMP/torch threads for every implementation (default 2)",
    )
    parser.add_argument("--repeat", type=int, help="timed steps per round (default 15; quick 2)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 3; quick 1)")
    parser.add_argument(
        "--rounds",
        type=int,
        help="interleaved rounds over all implementations (default 2; quick 1)",
    )
    parser.add_argument(
        "--no-inference", action="store_true", help="skip the test-set inference timing"
    )
    parser.add_argument(
        "--no-numgrad", action="store_true", help="skip the numerical-gradient vs backprop timing"
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time (default) or the worker's CPU time: on a busy machine, "
        "'--clock cpu --threads 1' compares the work each implementation does",
    )
    parser.add_argument(
        "--openblas-coretype",
        default="inherit",
        help="OpenBLAS kernels for both NumPy implementations: 'inherit' (as the environment "
        "says, default), 'detect' (unset OPENBLAS_CORETYPE: OpenBLAS picks for this CPU) or "
        "a core name such as SkylakeX (AVX-512) or Haswell (AVX2)",
    )
    parser.add_argument(
        "--out", help="output folder for bench.json / bench.png (default benchmarks/results)"
    )
    parser.add_argument(
        "--no-notebook-memory",
        action="store_true",
        help=f"skip running {NOTEBOOK_MEMORY_CHAPTER}'s solution in quick mode for its peak "
        "resident memory (never run with --quick)",
    )
    parser.add_argument(
        "--data-dir",
        help="folder with the MNIST IDX files (default: "
        "$COURSE_LIB_DATA or ../shared/data; synthetic images when absent)",
    )


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark training steps against a book-style baseline and PyTorch",
        description=(
            "Median training-step time (forward, backward, Adam; batch 100) for TwoLayerNet, "
            "SimpleConvNet and DeepConvNet in course_lib, a book-style NumPy baseline and "
            "PyTorch CPU, plus inference and numerical-gradient timings. "
            "Writes JSON and a PNG chart."
        ),
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    for name in ("threads", "repeat", "warmup", "rounds"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"course-lib bench: --{name} must be at least 1, got {value}", file=sys.stderr)
            return 2
    try:
        bench_dir = find_benchmarks_dir()
    except FileNotFoundError as exc:
        print(f"course-lib bench: {exc}", file=sys.stderr)
        return 2
    if str(bench_dir) not in sys.path:
        sys.path.insert(0, str(bench_dir))
    harness = importlib.import_module("bench_harness")
    options = options_for(  # quick, models, impls, threads, repeat, rounds, clock...
        harness.run_benchmarks,
        args,
        inference=not args.no_inference,
        numgrad=not args.no_numgrad,
        out_dir=args.out,
        notebook_memory=None if args.quick or args.no_notebook_memory else NOTEBOOK_MEMORY_CHAPTER,
    )
    harness.run_benchmarks(**options)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course-lib bench")
    add_arguments(parser)
    return run(parser.parse_args(argv))
