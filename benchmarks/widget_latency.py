#!/usr/bin/env python
"""DigitPad latency: from the end of a stroke to the updated prediction (goal: < 100 ms).

Kernel side (always): the time the kernel spends on one canvas image, measured
on the real code path with the shipped ``mnist-cnn`` model, for several kinds of
drawings on a 280×280 canvas:

* ``preprocess``: :func:`course_lib.widgets.preprocess_drawing` alone;
* ``predict``: ``model.predict`` on one preprocessed image;
* ``handler``: the whole message handler the browser's message reaches
  (decode the alpha buffer, preprocess, predict, update the synced state);
* ``handler_default_blas``: the same with NumPy's default BLAS threading instead
  of the one thread the widget uses (on a busy machine the difference is large).

The first three run with BLAS limited to one thread, as the widget runs them.

Browser side (``--browser``): runs the end-to-end test
(tests/test_browser_digitpad.py), whose page records, for every drawn digit,
the time from ``pointerup`` to the prediction being rendered, and reports
those figures (they include the websocket round trip and rendering).

Usage::

    python benchmarks/widget_latency.py               # kernel side, ~10 s
    python benchmarks/widget_latency.py --browser     # + real browser (~1-2 min)

Results: printed, and written to ``benchmarks/results/widget_latency.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_lib.widgets import DigitPad, preprocess_drawing  # noqa: E402
from course_lib.widgets.digitpad import _blas_threads_limited  # noqa: E402
from course_lib.widgets.synthetic import stroke_line  # noqa: E402

GOAL_MS = 100.0
SIZE = 280


def drawings() -> dict[str, np.ndarray]:
    """RGBA canvases like the browser's: ink in alpha over a transparent background."""

    def rgba(strokes: list[list[tuple[float, float]]], width: float) -> np.ndarray:
        ink = np.zeros((SIZE, SIZE))
        for stroke in strokes:
            ink = stroke_line(ink, stroke, width)
        out = np.zeros((SIZE, SIZE, 4), dtype=np.uint8)
        out[..., 3] = np.round(ink * 255).astype(np.uint8)
        return out

    seven = [[(70, 62), (120, 60), (210, 58), (180, 120), (150, 180), (125, 240)]]
    t = np.linspace(0, 2 * np.pi, 60)
    zero = [list(zip(140 + 125 * np.cos(t), 140 + 130 * np.sin(t)))]
    small_four = [[(150, 100), (125, 135), (110, 150), (160, 150)], [(145, 120), (145, 175)]]
    return {
        "seven, pen 22 px": rgba(seven, 22),
        "zero filling the canvas, pen 40 px": rgba(zero, 40),
        "small four off-centre, pen 8 px": rgba(small_four, 8),
    }


def timed(fn: Callable[[], object], repeat: int, warmup: int = 5) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000.0)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 3),
        "p95_ms": round(samples[int(0.95 * (len(samples) - 1))], 3),
        "max_ms": round(samples[-1], 3),
        "repeat": repeat,
    }


def _one_blas_thread(fn: Callable[[np.ndarray], object], arg: np.ndarray) -> object:
    """Run ``fn(arg)`` with BLAS limited to one thread, as the widget's handler does."""
    with _blas_threads_limited(1):
        return fn(arg)


def kernel_side(repeat: int) -> dict[str, dict[str, dict[str, float]]]:
    pad = DigitPad()  # the shipped pretrained model, as a student would use it
    model = pad.model
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, canvas in drawings().items():
        image = preprocess_drawing(canvas)
        x = image.reshape(1, 1, 28, 28)
        alpha = np.ascontiguousarray(canvas[..., 3])
        content = {"type": "image", "seq": 1, "final": True, "width": SIZE, "height": SIZE}
        buffers = [memoryview(alpha.tobytes())]
        results[name] = {
            "preprocess": timed(lambda c=canvas: _one_blas_thread(preprocess_drawing, c), repeat),
            "predict": timed(lambda x=x: _one_blas_thread(model.predict, x), repeat),
            "handler": timed(
                lambda c=content, b=buffers: pad._on_message(pad.canvas, c, b), repeat
            ),
        }
        # The same handler with NumPy's default BLAS threading (what the widget avoids).
        pad.blas_threads = None
        results[name]["handler_default_blas"] = timed(
            lambda c=content, b=buffers: pad._on_message(pad.canvas, c, b), repeat
        )
        pad.blas_threads = 1
        results[name]["prediction"] = pad.prediction  # type: ignore[assignment]
    return results


def browser_side() -> dict[str, object]:
    artefacts = ROOT / "test-artifacts"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           str(ROOT / "tests" / "test_browser_digitpad.py")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    out: dict[str, object] = {"pytest_exit_code": proc.returncode,
                              "pytest_summary": proc.stdout.strip().splitlines()[-1:]}  # fmt: skip
    for path in sorted(artefacts.glob("digitpad-*.json")):
        report = json.loads(path.read_text())
        out[report["frontend"]] = report.get("latency_ms")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--browser", action="store_true", help="also run the real-browser test")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    result: dict[str, object] = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "goal_ms": GOAL_MS,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "load_avg": os.getloadavg(),
        },
    }
    kernel = kernel_side(args.repeat)
    result["kernel"] = kernel
    print(f"Kernel side, {args.repeat} runs each (median / p95 ms):")
    worst = 0.0
    for name, parts in kernel.items():
        cells = "  ".join(
            f"{part} {parts[part]['median_ms']:.2f} / {parts[part]['p95_ms']:.2f}"
            for part in ("preprocess", "predict", "handler", "handler_default_blas")
        )
        print(f"  {name:38s} {cells}   -> {parts['prediction']}")
        worst = max(worst, parts["handler"]["p95_ms"])
    verdict = "meets" if worst < GOAL_MS else "MISSES"
    print(f"Worst p95 of the whole handler: {worst:.2f} ms, {verdict} the {GOAL_MS:.0f} ms goal")
    result["kernel_worst_p95_ms"] = worst

    if args.browser:
        browser = browser_side()
        result["browser"] = browser
        print("Browser, pointerup -> prediction rendered (ms):")
        for key, value in browser.items():
            print(f"  {key}: {value}")

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "widget_latency.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
