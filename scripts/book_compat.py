#!/usr/bin/env python
"""Run the book's example scripts unchanged on course_lib, beside the book's own ``common/``.

The book's scripts import ``common.functions``, ``common.layers``, ... and
``dataset.mnist.load_mnist``. With ``--backend course_lib`` those modules are
aliased to course_lib's (no file of the book's ``common/`` is used); with
``--backend book`` the book's own modules run. Both runs get the same global
NumPy seed (the scripts draw their own initial weights from it) and the same
MNIST files, so their printed figures can be compared line by line.

    python scripts/book_compat.py BOOK_DIR [--scripts ch05/gradient_check.py ...] [--json out.json]

BOOK_DIR is a checkout of github.com/oreilly-japan/deep-learning-from-scratch.
Nothing of the book is copied into this repository.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Scripts that finish in a few minutes on 2 cores (the long training runs are opt-in).
QUICK_SCRIPTS = [
    "ch04/gradient_1d.py",
    "ch04/gradient_2d.py",
    "ch04/gradient_method.py",
    "ch04/gradient_simplenet.py",
    "ch05/buy_apple.py",
    "ch05/buy_apple_orange.py",
    "ch05/gradient_check.py",
    "ch06/batch_norm_gradient_check.py",
    "ch06/optimizer_compare_naive.py",
    "ch06/weight_init_activation_histogram.py",
    "ch06/overfit_weight_decay.py",
    "ch06/batch_norm_test.py",
    "ch07/gradient_check.py",
    "ch07/visualize_filter.py",
    "ch07/apply_filter.py",
    "ch08/misclassified_mnist.py",
    "ch08/half_float_network.py",
]
SLOW_SCRIPTS = [
    "ch05/train_neuralnet.py",
    "ch04/train_neuralnet.py",
    "ch06/optimizer_compare_mnist.py",
    "ch06/weight_init_compare.py",
    "ch06/overfit_dropout.py",
    "ch06/hyperparameter_optimization.py",
    "ch07/train_convnet.py",
    "ch08/train_deepnet.py",
]

ALIASES = {
    "common.functions": "course_lib.functions",
    "common.gradient": "course_lib.gradcheck",
    "common.layers": "course_lib.layers",
    "common.util": "course_lib.util",
    "common.optimizer": "course_lib.optimizers",
    "common.trainer": "course_lib.trainer",
    "common.multi_layer_net": "course_lib.models",
    "common.multi_layer_net_extend": "course_lib.models",
}

RUNNER = r"""
import importlib, runpy, sys, types
import numpy as np
backend, script, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
if backend == "course_lib":
    aliases = {aliases!r}
    for pkg in ("common", "dataset"):
        mod = types.ModuleType(pkg)
        mod.__path__ = []
        sys.modules[pkg] = mod
    for name, target in aliases.items():
        sys.modules[name] = importlib.import_module(target)
        setattr(sys.modules["common"], name.split(".")[1], sys.modules[name])
    from course_lib.datasets import load_mnist
    mnist = types.ModuleType("dataset.mnist")
    mnist.load_mnist = lambda *a, **k: load_mnist(*a, progress=False, **k)
    sys.modules["dataset.mnist"] = mnist
np.random.seed(seed)
sys.argv = [script]
runpy.run_path(script, run_name="__main__")
""".replace("{aliases!r}", repr(ALIASES))

NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def prepare_book(book: Path, data_dir: Path | None, workdir: Path) -> Path:
    """A scratch copy of the book (scripts write files next to themselves), with MNIST in place."""
    dst = workdir / "book"
    shutil.copytree(book, dst, ignore=shutil.ignore_patterns(".git", "*.pkl.tmp"))
    if data_dir is not None:  # the book's loader reads its gz files from dataset/
        for f in (data_dir / "mnist").glob("*.gz"):
            shutil.copy2(f, dst / "dataset" / f.name)
    return dst


def run_script(book: Path, script: str, backend: str, seed: int, timeout: float) -> dict:
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0")
    path = book / script
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", RUNNER, backend, path.name, str(seed)],
            cwd=path.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        out, err = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        status, out, err = "timeout", exc.stdout or "", exc.stderr or ""
        out = out.decode() if isinstance(out, bytes) else out
        err = err.decode() if isinstance(err, bytes) else err
    return {
        "script": script,
        "backend": backend,
        "status": status,
        "seconds": round(time.perf_counter() - start, 2),
        "stdout": out,
        "stderr_tail": err[-3000:],
    }


def figures(stdout: str) -> list[tuple[str, list[float]]]:
    """Each printed line as (text with numbers masked, the numbers)."""
    out = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line or line.startswith(("Converting", "Done", "Creating", "Downloading")):
            continue
        nums = [float(n) for n in NUMBER.findall(line)]
        out.append((NUMBER.sub("#", line), nums))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("book", type=Path, help="checkout of the book's repository")
    ap.add_argument("--scripts", nargs="*", help="scripts to run (default: the quick set)")
    ap.add_argument("--all", action="store_true", help="also the long training scripts")
    ap.add_argument("--backend", choices=["book", "course_lib", "both"], default="both")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--data-dir", type=Path, default=os.environ.get("COURSE_LIB_DATA"))
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)

    scripts = args.scripts or (QUICK_SCRIPTS + (SLOW_SCRIPTS if args.all else []))
    backends = ["book", "course_lib"] if args.backend == "both" else [args.backend]
    results = []
    with tempfile.TemporaryDirectory(prefix="book-compat-") as tmp:
        book = prepare_book(args.book.resolve(), args.data_dir, Path(tmp))
        for script in scripts:
            for backend in backends:
                r = run_script(book, script, backend, args.seed, args.timeout)
                results.append(r)
                print(
                    f"{script:45s} {backend:10s} {r['status']:8s} {r['seconds']:8.1f}s", flush=True
                )
                if r["status"] != "ok":
                    print("   " + r["stderr_tail"].strip().replace("\n", "\n   ")[-1500:])
                if args.json:  # written as we go, so a cut-off run keeps what it measured
                    args.json.write_text(json.dumps(results, indent=1))
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
