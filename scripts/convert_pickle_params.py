#!/usr/bin/env python
"""Convert a pickled dict of NumPy arrays (e.g. the book's trained weights) to ``.npz``, once.

course_lib never loads pickles: unpickling can run arbitrary code. This
converter unpickles with an allow-list that admits only what a dict of plain
NumPy arrays needs (array and dtype reconstruction); anything else, such as a
function or a class from elsewhere, is refused with an error naming it.

    python scripts/convert_pickle_params.py deep_convnet_params.pkl deep_convnet_params.npz
"""

from __future__ import annotations

import argparse
import pickle  # only behind the allow-list below
import sys
from pathlib import Path

import numpy as np

ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
}


class ArraysOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can build NumPy arrays, dicts and numbers, and nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not a NumPy array part")


def convert(src: Path, dst: Path) -> dict[str, tuple[int, ...]]:
    """Read ``src`` (a pickled mapping name -> array) and write ``dst`` (.npz). Returns the shapes."""
    with open(src, "rb") as f:
        data = ArraysOnlyUnpickler(f).load()
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ValueError(f"{src}: expected a dict of named arrays, got {type(data).__name__}")
    arrays = {k: np.asarray(v) for k, v in data.items()}
    for k, v in arrays.items():
        if v.dtype == object:
            raise ValueError(f"{src}: entry {k!r} is not a numeric array")
    with open(dst, "wb") as f:  # exactly this name (np.savez would append .npz to a str path)
        np.savez(f, **arrays)
    return {k: v.shape for k, v in arrays.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    args = ap.parse_args(argv)
    shapes = convert(args.src, args.dst)
    for k, s in shapes.items():
        print(f"{k}: {s}")
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
