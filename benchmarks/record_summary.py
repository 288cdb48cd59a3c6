"""Collect benchmark reports and training records into one small JSON for the repository.

    python benchmarks/record_summary.py \\
        --bench "1 thread, CPU time" results/bench-cpu.json \\
        --run runs/simple_convnet_mnist.json --run runs/fashion_fc.json \\
        --note "shared 2-vCPU VM, load average 9-15 during the runs" \\
        --out benchmarks/recorded/2026-11-24-amd-epyc-2vcpu.json --markdown

``benchmarks/results/`` is git-ignored; ``benchmarks/recorded/`` keeps these
summaries (dated, with the machine) so that figures quoted in the docs can be
traced. ``--markdown`` also prints the tables used in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

STEP_KEYS = (
    "step_median_ms",
    "step_iqr_ms",
    "steps_timed",
    "peak_rss_mb",
    "step_alloc_peak_mb",
    "infer_time_s",
    "infer_images",
    "openblas_core",
    "error",
)


def summarise_bench(label: str, report: dict) -> dict:
    return {
        "label": label,
        "machine": report["machine"],
        "config": report["config"],
        "data": report["data"],
        "results": {
            model: {impl: {k: r[k] for k in STEP_KEYS if k in r} for impl, r in per.items()}
            for model, per in report["results"].items()
        },
        "ratios": report["ratios"],
        "numgrad": report.get("numgrad"),
    }


def summarise_run(record: dict) -> dict:
    keep = ("test_accuracy", "target", "epochs_run", "train_size", "test_size", "shortened")
    out = {"recipe": record["recipe"]["name"], **{k: record[k] for k in keep}}
    out.update(
        wall_time_min=round(record["wall_time_s"] / 60, 1),
        cpu_time_min=round(record.get("cpu_time_s", float("nan")) / 60, 1),
        loadavg_1min=record.get("loadavg_1min"),
        date_utc=record["date_utc"],
        machine=record["machine"],
        recipe_spec=record["recipe"],
        history=[
            {k: round(h[k], 5) for k in ("epoch", "lr", "train_loss", "test_acc", "epoch_time_s")}
            for h in record["history"]
        ],
    )
    return out


def _cores(bench: dict) -> str:
    found = {r.get("openblas_core") for per in bench["results"].values() for r in per.values()}
    return "/".join(sorted(str(c) for c in found if c)) or "?"


def markdown(summary: dict) -> str:
    lines = []
    for b in summary["benchmarks"]:
        unit = "CPU ms" if b["config"].get("clock") == "cpu" else "ms"
        lines += [
            f"**{b['label']}** ({b['machine']['date_utc']}, {b['machine']['threads']} thread(s), "
            f"OpenBLAS kernels {_cores(b)}, "
            f"load average {b['machine'].get('loadavg_start', ['?'])[0]:.1f})",
            "",
            f"| model | course_lib {unit} | book-style {unit} | PyTorch {unit} | "
            "course_lib / PyTorch | book / course_lib |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for model, per in b["results"].items():
            cells = [per.get(i, {}).get("step_median_ms") for i in ("course_lib", "book", "torch")]
            r = b["ratios"].get(model, {})
            vs_t, vs_b = r.get("course_lib_vs_torch"), r.get("speedup_vs_book")
            lines.append(
                f"| {model} | "
                + " | ".join(f"{c:.2f}" if c else "-" for c in cells)
                + " |"
                + (f" {vs_t:.2f}x |" if vs_t else " - |")
                + (f" {vs_b:.2f}x |" if vs_b else " - |")
            )
        lines.append("")
    if summary["training"]:
        lines += [
            "| recipe | test accuracy | target | epochs | wall time | CPU time | load avg |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for t in summary["training"]:
            la = t.get("loadavg_1min") or {}
            lines.append(
                f"| {t['recipe']} | {100 * t['test_accuracy']:.2f}% | {100 * t['target']:.1f}% | "
                f"{t['epochs_run']} | {t['wall_time_min']} min | {t['cpu_time_min']} min | "
                f"{la.get('start', 0):.1f}-{la.get('end', 0):.1f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", nargs=2, action="append", default=[], metavar=("LABEL", "JSON"))
    ap.add_argument("--run", action="append", default=[], metavar="JSON")
    ap.add_argument("--note", default="")
    ap.add_argument("--out", required=True)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    summary = {
        "note": args.note,
        "benchmarks": [
            summarise_bench(label, json.loads(Path(p).read_text())) for label, p in args.bench
        ],
        "training": [summarise_run(json.loads(Path(p).read_text())) for p in args.run],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    if args.markdown:
        print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
