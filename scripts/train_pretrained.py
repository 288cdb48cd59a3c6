#!/usr/bin/env python
"""Train the pretrained ``mnist-cnn`` shipped in ``course_lib/pretrained``.

A small CNN built from course_lib layers (``course_lib.models.Sequential``),
trained with course_lib's Adam on MNIST with augmentation, so that digits drawn
in :class:`course_lib.widgets.DigitPad` — thick or thin strokes, slanted,
rotated, any size and place — are recognised after
:func:`course_lib.widgets.preprocess_drawing`.

Augmentation (NumPy, seeded ``np.random.Generator``, fresh every epoch), at 2×
resolution (56×56) for a fraction ``--augment-fraction`` of the images:

1. stroke thickness: grey dilation (max filter) or erosion (min filter) by a
   square of radius -1..3 half-pixels, i.e. -0.5 to +1.5 MNIST pixels per side;
2. a random affine map about the centre: rotation, slant (shear), aspect ratio;
3. the MNIST normalisation again (crop to the ink, fit 20×20, centre of mass in
   28×28): exactly what the widget does to a drawing.

Afterwards it measures, on the *shipped* (float16) weights: accuracy on the
10,000 MNIST test images, and on MNIST test digits redrawn on a 280×280 canvas
(``course_lib.widgets.synthetic.redraw_on_canvas``) and preprocessed like a
drawing. Everything goes into ``<out>/<name>.json`` next to ``<name>.npz``.

Usage::

    python scripts/train_pretrained.py                 # the shipped model (see docs/widget.md for time)
    python scripts/train_pretrained.py --quick --out /tmp/pretrained   # smoke run (~1 min)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_lib.datasets import load_mnist  # noqa: E402
from course_lib.optimizers import Adam  # noqa: E402
from course_lib.pretrained import FORMAT_VERSION, build_network  # noqa: E402
from course_lib.widgets.classify import ModelAdapter  # noqa: E402
from course_lib.widgets.preprocess import preprocess_drawing, resize_antialiased  # noqa: E402
from course_lib.widgets.synthetic import redraw_on_canvas  # noqa: E402

ARCHITECTURE: list[dict[str, Any]] = [
    {"type": "Convolution", "filters": 16, "size": 5, "stride": 1, "pad": 2},
    {"type": "Relu"},
    {"type": "Pooling", "size": 2, "stride": 2},
    {"type": "Convolution", "filters": 32, "size": 5, "stride": 1, "pad": 2},
    {"type": "Relu"},
    {"type": "Pooling", "size": 2, "stride": 2},
    {"type": "Affine", "units": 128},
    {"type": "Relu"},
    {"type": "Affine", "units": 10},
]

AUGMENT = {
    "fraction": 0.75,
    "resolution": 56,
    "thickness_radius_half_px": [-1, 0, 1, 2, 3],
    "thickness_probabilities": [0.15, 0.25, 0.25, 0.2, 0.15],
    "rotation_deg": 12.0,
    "shear": 0.3,
    "aspect": [0.8, 1.2],
    "renormalise": "crop to ink, fit 20x20 keeping aspect, centre of mass in 28x28",
}


# --------------------------------------------------------------------------- augmentation
def _batched_extreme(images: np.ndarray, radius: int, reduce: np.ufunc) -> np.ndarray:
    """Separable square max/min filter over ``(N, H, W)``."""
    out = images
    for axis in (1, 2):
        n = out.shape[axis]
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="constant", constant_values=0.0)
        acc = np.take(padded, np.arange(n), axis=axis)
        for shift in range(1, 2 * radius + 1):
            acc = reduce(acc, np.take(padded, np.arange(shift, shift + n), axis=axis))
        out = acc
    return out


def _affine_warp(images: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Bilinear warp of ``(N, S, S)`` about the centre; ``matrices (N, 2, 2)`` map output→input."""
    n, size, _ = images.shape
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    coords = np.stack([yy.ravel() - c, xx.ravel() - c])  # (2, S*S)
    src = matrices @ coords + c  # (N, 2, S*S)
    sy, sx = src[:, 0], src[:, 1]
    y0, x0 = np.floor(sy).astype(np.int64), np.floor(sx).astype(np.int64)
    wy, wx = sy - y0, sx - x0
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    flat = padded.reshape(n, -1)
    width = size + 2
    out = np.zeros((n, size * size), dtype=np.float32)
    for dy, dx, w in (
        (0, 0, (1 - wy) * (1 - wx)),
        (0, 1, (1 - wy) * wx),
        (1, 0, wy * (1 - wx)),
        (1, 1, wy * wx),
    ):
        yi = np.clip(y0 + dy + 1, 0, size + 1)
        xi = np.clip(x0 + dx + 1, 0, size + 1)
        out += w * np.take_along_axis(flat, yi * width + xi, axis=1)
    return out.reshape(n, size, size)


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Augment ``(N, 28, 28)`` digits in [0, 1]; returns a new ``(N, 28, 28)`` float32 array."""
    out = images.astype(np.float32, copy=True)
    chosen = np.flatnonzero(rng.random(len(images)) < AUGMENT["fraction"])
    res = AUGMENT["resolution"]
    up_rows = resize_antialiased(np.eye(28), (res, 28)).astype(np.float32)  # (56, 28) upsampling
    for start in range(0, chosen.size, 2000):
        idx = chosen[start : start + 2000]
        big = up_rows @ images[idx].astype(np.float32) @ up_rows.T
        radii = rng.choice(
            AUGMENT["thickness_radius_half_px"], size=idx.size, p=AUGMENT["thickness_probabilities"]
        )
        for r in np.unique(radii):
            sel = radii == r
            if r > 0:
                big[sel] = _batched_extreme(big[sel], int(r), np.maximum)
            elif r < 0:
                big[sel] = _batched_extreme(big[sel], int(-r), np.minimum)
        theta = np.deg2rad(rng.uniform(-AUGMENT["rotation_deg"], AUGMENT["rotation_deg"], idx.size))
        shear = rng.uniform(-AUGMENT["shear"], AUGMENT["shear"], idx.size)
        aspect = np.exp(rng.uniform(*np.log(AUGMENT["aspect"]), idx.size))
        cos, sin = np.cos(theta), np.sin(theta)
        # forward map on (y, x): rotate, slant x by shear*y, stretch x; the warp needs its inverse
        rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
        shr = np.zeros_like(rot)
        shr[:, 0, 0] = 1.0
        shr[:, 1, 0] = -shear
        shr[:, 1, 1] = 1.0
        stretch = np.zeros_like(rot)
        stretch[:, 0, 0] = 1.0
        stretch[:, 1, 1] = aspect
        forward = stretch @ shr @ rot
        warped = np.clip(_affine_warp(big, np.linalg.inv(forward).astype(np.float32)), 0.0, 1.0)
        for k, image in zip(idx, warped):
            if image.max() > 0.1:
                out[k] = preprocess_drawing(image, invert=False)
    return out


# --------------------------------------------------------------------------- evaluation
def redrawn_accuracy(
    network: Any, x_test: np.ndarray, t_test: np.ndarray, n: int, seed: int
) -> float:
    """Accuracy on ``n`` MNIST test digits redrawn on a 280×280 canvas and preprocessed."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(x_test), size=n, replace=False)
    adapter = ModelAdapter(network)
    images = np.stack(
        [preprocess_drawing(redraw_on_canvas(x_test[i].reshape(28, 28), rng)) for i in picks]
    )
    predicted = adapter.probabilities(images).argmax(axis=1)
    return float(np.mean(predicted == t_test[picks]))


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data = os.environ.get("COURSE_LIB_DATA") or (
        str(ROOT.parent / "shared" / "data") if (ROOT.parent / "shared" / "data").is_dir() else None
    )
    parser.add_argument(
        "--data-dir",
        default=default_data,
        help="folder holding mnist/*.gz (default: COURSE_LIB_DATA, "
        "../shared/data, else course_lib's cache)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "course_lib" / "pretrained")
    parser.add_argument("--name", default="mnist-cnn")
    parser.add_argument("--epochs", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--min-lr", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--redrawn", type=int, default=2000, help="redrawn test digits for the robustness metric"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2000 training images, 1 epoch, small evaluations",
    )
    args = parser.parse_args(argv)

    start = time.perf_counter()
    (x_train, t_train), (x_test, t_test) = load_mnist(
        normalize=True, flatten=False, data_dir=args.data_dir, download=False, progress=False
    )
    x_train = x_train.reshape(-1, 28, 28)
    if args.quick:
        x_train, t_train = x_train[:2000], t_train[:2000]
        x_test, t_test = x_test[:500], t_test[:500]
        args.epochs, args.redrawn = 1, 100
    rng = np.random.default_rng(args.seed)
    network = build_network(ARCHITECTURE, (1, 28, 28), dtype=np.float32, seed=rng)
    optimizer = Adam(lr=args.lr)
    n = len(x_train)
    steps_per_epoch = math.ceil(n / args.batch_size)
    total_steps = args.epochs * steps_per_epoch
    history = []
    step = 0
    print(
        f"{network.count_params():,} parameters; {n} training images; {args.epochs} epochs",
        flush=True,
    )
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        x_epoch = augment(x_train, rng)
        t_aug = time.perf_counter() - t0
        order = rng.permutation(n)
        losses = []
        for b in range(steps_per_epoch):
            batch = order[b * args.batch_size : (b + 1) * args.batch_size]
            # cosine decay of the learning rate from --lr to --min-lr
            optimizer.lr = args.min_lr + 0.5 * (args.lr - args.min_lr) * (
                1 + math.cos(math.pi * step / total_steps)
            )
            grads = network.gradient(x_epoch[batch][:, None], t_train[batch])
            optimizer.update(network.params, grads)
            losses.append(network.last_loss)
            step += 1
        sub = slice(0, 2000)
        test_acc = network.accuracy(x_test[sub].reshape(-1, 1, 28, 28), t_test[sub])
        row = {
            "epoch": epoch,
            "loss": float(np.mean(losses)),
            "test_acc_2000": test_acc,
            "augment_s": round(t_aug, 1),
            "epoch_s": round(time.perf_counter() - t0, 1),
        }
        history.append(row)
        print(json.dumps(row), flush=True)
    training_time = time.perf_counter() - start

    # Ship float16 weights; measure what is shipped (float16 -> float32).
    args.out.mkdir(parents=True, exist_ok=True)
    npz_path = args.out / f"{args.name}.npz"
    arrays = {k: v.astype(np.float16) for k, v in network.params.items()}
    tmp = npz_path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, npz_path)
    shipped = build_network(ARCHITECTURE, (1, 28, 28), dtype=np.float32, seed=0)
    with np.load(npz_path, allow_pickle=False) as data:
        shipped.set_params({k: data[k].astype(np.float32) for k in data.files})
    t_eval = time.perf_counter()
    mnist_acc = shipped.accuracy(x_test.reshape(-1, 1, 28, 28), t_test, batch_size=500)
    float32_acc = network.accuracy(x_test.reshape(-1, 1, 28, 28), t_test, batch_size=500)
    robust_acc = redrawn_accuracy(shipped, x_test, t_test, args.redrawn, seed=12345)
    eval_time = time.perf_counter() - t_eval
    print(
        f"MNIST test accuracy {mnist_acc:.4f} (float32 weights {float32_acc:.4f}); "
        f"redrawn {robust_acc:.4f}; training {training_time:.0f} s",
        flush=True,
    )

    description = {
        "format_version": FORMAT_VERSION,
        "name": args.name,
        "description": "Small CNN for 28x28 MNIST-like digits, trained with augmentation for "
        "hand-drawn input (course_lib.widgets.DigitPad).",
        "input_shape": [1, 28, 28],
        "input": "(N, 1, 28, 28) float in [0, 1], ink bright on black; preprocess drawings with "
        "course_lib.widgets.preprocess_drawing",
        "output": "(N, 10) scores (logits); softmax gives class probabilities",
        "architecture": ARCHITECTURE,
        "parameters": int(network.count_params()),
        "weights": {
            "file": npz_path.name,
            "dtype": "float16",
            "bytes": npz_path.stat().st_size,
            "sha256": hashlib.sha256(npz_path.read_bytes()).hexdigest(),
        },
        "recipe": {
            "script": "scripts/train_pretrained.py",
            "command": "python scripts/train_pretrained.py"
            + (" --quick" if args.quick else "")
            + f" --epochs {args.epochs} --seed {args.seed}",
            "data": "MNIST training set (60,000 images)"
            if not args.quick
            else f"MNIST training subset ({n} images, --quick)",
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": {
                "name": "Adam",
                "lr": args.lr,
                "schedule": "cosine",
                "min_lr": args.min_lr,
            },
            "init": "He normal",
            "seed": args.seed,
            "augmentation": AUGMENT,
        },
        "metrics": {
            "mnist_test_accuracy": round(mnist_acc, 4),
            "mnist_test_samples": len(x_test),
            "mnist_test_accuracy_float32": round(float32_acc, 4),
            "redrawn_test_accuracy": round(robust_acc, 4),
            "redrawn_test_samples": args.redrawn,
            "redrawn_procedure": "course_lib.widgets.synthetic.redraw_on_canvas (280x280, box "
            "height 90-250 px, stroke -0.4..+1.6 MNIST px per side, random "
            "position), then preprocess_drawing; seed 12345",
            "training_time_s": round(training_time, 1),
            "evaluation_time_s": round(eval_time, 1),
            "history": history,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "platform": platform.platform(),
        },
    }
    json_path = args.out / f"{args.name}.json"
    json_path.write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {npz_path} ({npz_path.stat().st_size:,} bytes) and {json_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
