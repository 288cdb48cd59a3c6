"""Peak resident memory of a chapter's solution notebook, run in quick mode in a real kernel.

    python benchmarks/notebook_memory.py ch05_deep_networks [--kernels numpy numba] [--threads 1]

Runs ``solutions/<chapter>/<chapter>.ipynb`` with ``COURSE_QUICK=1`` in a Jupyter kernel
(nbclient), in a scratch copy of its folder, then asks the kernel for its resident-set
high-water mark (``VmHWM`` in ``/proc/self/status``) and the peak after each cell, so the
cell that sets the peak is named. ``course-lib bench`` calls :func:`measure` for chapter 5
unless ``--no-notebook-memory``. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

_PROBE = (
    "print('__VMHWM__', [int(l.split()[1]) for l in open('/proc/self/status') "
    "if l.startswith('VmHWM:')][0])"
)


def _hwm_kb(outputs: list[dict]) -> int | None:
    for out in outputs:
        found = re.search(r"__VMHWM__ (\d+)", str(out.get("text", "")))
        if found:
            return int(found.group(1))
    return None


def measure(
    chapter: str = "ch05_deep_networks",
    *,
    kernels: str | None = None,
    threads: int = 1,
    timeout: float = 600.0,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Run the chapter's solution in quick mode; return its peak RSS (MB), per-cell peaks, times."""
    import nbformat
    from nbclient import NotebookClient

    src_dir = REPO / "solutions" / chapter
    nb = nbformat.read(src_dir / f"{chapter}.ipynb", as_version=4)
    # after every code cell, one probe cell reads the kernel's high-water mark
    cells = []
    for cell in nb.cells:
        cells.append(cell)
        if cell.cell_type == "code":
            cells.append(nbformat.v4.new_code_cell(_PROBE))
    nb.cells = cells
    env_before = dict(os.environ)
    os.environ["COURSE_QUICK"] = "1"
    if data_dir:
        os.environ["COURSE_LIB_DATA"] = str(data_dir)
    if kernels:
        os.environ["COURSE_LIB_KERNELS"] = kernels
    for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[key] = str(threads)
    os.environ.pop("MPLBACKEND", None)
    work = Path(tempfile.mkdtemp(prefix="nbmem-"))
    try:
        shutil.copytree(src_dir, work / chapter)
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            allow_errors=True,
            resources={"metadata": {"path": str(work / chapter)}},
        )
        t0 = time.perf_counter()
        client.execute()
        wall = time.perf_counter() - t0
    finally:
        os.environ.clear()
        os.environ.update(env_before)
        shutil.rmtree(work, ignore_errors=True)
    per_cell = []
    errors = []
    last = 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or cell.source == _PROBE:
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append(f"{out.get('ename')}: {out.get('evalue')}"[:200])
        probe = nb.cells[i + 1] if i + 1 < len(nb.cells) else None
        kb = _hwm_kb(probe.get("outputs", [])) if probe is not None else None
        if kb is not None:
            first_line = cell.source.strip().splitlines()[0][:70] if cell.source.strip() else ""
            per_cell.append(
                {"cell": first_line, "peak_mb": kb / 1024, "grew_mb": (kb - last) / 1024}
            )
            last = kb
    peak = max((c["peak_mb"] for c in per_cell), default=float("nan"))
    biggest = sorted(per_cell, key=lambda c: -c["grew_mb"])[:5]
    return {
        "chapter": chapter,
        "mode": "quick (COURSE_QUICK=1)",
        "kernels": kernels or os.environ.get("COURSE_LIB_KERNELS", "auto"),
        "threads": threads,
        "peak_rss_mb": peak,
        "wall_s": wall,
        "cells_raising_the_peak_most": biggest,
        "errors": errors,
        "loadavg": list(os.getloadavg()),
    }


def format_result(r: dict[str, Any]) -> str:
    lines = [
        f"{r['chapter']} {r['mode']}, kernels={r['kernels']}, {r['threads']} thread(s): "
        f"peak RSS {r['peak_rss_mb']:.0f} MB, {r['wall_s']:.0f} s"
        + (f", {len(r['errors'])} cell error(s): {r['errors'][0]}" if r["errors"] else "")
    ]
    for c in r["cells_raising_the_peak_most"]:
        lines.append(f"    +{c['grew_mb']:7.0f} MB -> {c['peak_mb']:6.0f} MB  {c['cell']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("chapter", nargs="?", default="ch05_deep_networks")
    ap.add_argument("--kernels", nargs="+", default=[None], help="numpy, numba (default: as set)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args(argv)
    results = []
    for k in args.kernels:
        r = measure(args.chapter, kernels=k, threads=args.threads)
        print(format_result(r), flush=True)
        results.append(r)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
