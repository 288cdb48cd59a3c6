"""``course-lib train``: run a seeded training recipe (see :mod:`course_lib.recipes`).

    course-lib train --list
    course-lib train simple_convnet_mnist --out runs/simple.json --save runs/simple.npz
    course-lib train simple_convnet_mnist --epochs 1 --train-size 20000   # a shortened run

BLAS reads its thread count and kernel choice when it is loaded, so when
``--threads`` or the OpenBLAS kernel choice changes them, the command runs the
training in a child process started with those environment variables.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from course_lib.cli import options_for

_CHILD_MARK = "_COURSE_LIB_TRAIN_CHILD"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="run a seeded training recipe and record accuracy and wall time",
        description="Train one of the course's recipes (seeded, reproducible) and print, "
        "and optionally save, the per-epoch test accuracy and the wall time.",
    )
    parser.add_argument("recipe", nargs="?", help="recipe name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the recipes and exit")
    parser.add_argument("--epochs", type=int, help="shorten (or lengthen) the run")
    parser.add_argument("--train-size", type=int, help="use only the first N training images")
    parser.add_argument("--test-size", type=int, help="evaluate on the first N test images only")
    parser.add_argument("--seed", type=int, help="override the recipe's seed")
    parser.add_argument(
        "--data-dir", help="dataset folder (default: $COURSE_LIB_DATA or the cache)"
    )
    parser.add_argument("--out", help="write the run's record (JSON) here")
    parser.add_argument("--save", help="save the trained parameters (.npz) here")
    parser.add_argument(
        "--progress-every", type=int, default=0, help="log every N steps within an epoch"
    )
    parser.add_argument("--threads", type=int, help="BLAS threads (default: BLAS's own choice)")
    parser.add_argument(
        "--openblas-coretype",
        default="inherit",
        help="OpenBLAS kernels: 'inherit' (as the environment says), 'detect' (let OpenBLAS "
        "pick for this CPU) or a core name such as SkylakeX",
    )
    parser.set_defaults(func=run)
    return parser


def _child_argv(args: argparse.Namespace) -> list[str]:
    argv = ["train", args.recipe]
    names = (
        "epochs",
        "train_size",
        "test_size",
        "seed",
        "data_dir",
        "out",
        "save",
        "progress_every",
    )
    for name in names:
        value = getattr(args, name)
        if value is not None:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    return argv


def run(args: argparse.Namespace) -> int:
    from course_lib.recipes import RECIPES, run_recipe

    if args.list or not args.recipe:
        for r in RECIPES.values():
            print(f"{r.name:<22} {r.dataset:<14} {r.epochs:>3} epochs  target {r.target:.3f}")
            print(f"{'':<22} {r.description}")
        return 0 if args.list else 2
    if args.recipe not in RECIPES:
        print(
            f"course-lib train: unknown recipe {args.recipe!r}; choose one of {', '.join(RECIPES)}",
            file=sys.stderr,
        )
        return 2
    if args.threads is not None and args.threads < 1:
        print(
            f"course-lib train: --threads must be at least 1, got {args.threads}", file=sys.stderr
        )
        return 2

    from course_lib.cli.bench import blas_environment

    env = blas_environment(os.environ, args.threads, args.openblas_coretype)
    changes = sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k))
    if changes and not os.environ.get(_CHILD_MARK):
        shown = " ".join(f"{k}={env.get(k, '(unset)')}" for k in changes)
        print(f"running in a child process with {shown}", flush=True)
        env[_CHILD_MARK] = "1"
        cmd = [sys.executable, "-m", "course_lib.cli", *_child_argv(args)]
        return subprocess.run(cmd, env=env, check=False).returncode

    try:
        # recipe, data_dir, epochs, train_size, test_size, seed, out, progress_every
        record = run_recipe(**options_for(run_recipe, args, save_params=args.save))
    except ValueError as exc:
        print(f"course-lib train: {exc}", file=sys.stderr)
        return 2
    if args.out:
        print(f"record written to {args.out}")
    return 0 if record["test_accuracy"] >= record["target"] or record["shortened"] else 1
