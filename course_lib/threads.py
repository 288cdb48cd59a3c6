"""One thread policy for every thread pool a training step can use: BLAS, Numba, PyTorch.

Three libraries keep their own pools: OpenBLAS (NumPy's matrix products),
Numba (the compiled kernels of :mod:`course_lib.kernels`) and, when the benchmark
loads it, PyTorch. Each would size itself to every core, and pools that do not
know of each other fight over the cores (a thread spinning for work while the
other library's thread needs the core). The policy is one number, applied to all:

* ``threads()`` is ``COURSE_LIB_THREADS``, else ``OMP_NUM_THREADS``, else
  ``OPENBLAS_NUM_THREADS``, else the number of cores this process may use;
* :func:`set_threads` applies it to BLAS/OpenMP through ``threadpoolctl``, to
  Numba (``numba.set_num_threads``) and to PyTorch if it is loaded;
* Numba's threading layer is ``workqueue`` (its own simple pool: its threads
  sleep between kernels instead of spinning, which leaves the cores to
  OpenBLAS's threads between two kernels) unless ``NUMBA_THREADING_LAYER`` says
  otherwise. See docs/performance.md for the measurements behind this choice.

Kernels and products run one after the other, never at the same time, so the
pools take turns on the same cores.
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["NUMBA_LAYER", "prepare_numba", "set_threads", "thread_info", "threads"]

#: Numba's threading layer unless NUMBA_THREADING_LAYER is set (measured: docs/performance.md).
NUMBA_LAYER = "workqueue"

_threads: int | None = None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads() -> int:
    """The number of threads every pool should use (see the module docstring)."""
    if _threads is not None:
        return _threads
    for name in ("COURSE_LIB_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return _cores()


def prepare_numba() -> None:
    """Before Numba's first parallel kernel: pick its threading layer and size its pool.

    Sets ``NUMBA_THREADING_LAYER`` (unless given) and ``NUMBA_NUM_THREADS`` (the
    most threads Numba may ever start: the cores) before Numba is imported, then
    limits Numba to :func:`threads`.
    """
    os.environ.setdefault("NUMBA_THREADING_LAYER", NUMBA_LAYER)
    os.environ.setdefault("NUMBA_NUM_THREADS", str(max(_cores(), threads())))
    import numba

    numba.set_num_threads(min(threads(), numba.config.NUMBA_NUM_THREADS))


def set_threads(n: int) -> int:
    """Use ``n`` threads in BLAS/OpenMP, Numba and PyTorch (those loaded now and later).

    Returns ``n``. BLAS and OpenMP pools are limited through ``threadpoolctl``;
    Numba through ``numba.set_num_threads`` (if it is loaded; else when it loads);
    PyTorch through ``torch.set_num_threads`` if it is already imported.
    """
    global _threads
    if n < 1:
        raise ValueError(f"threads must be at least 1, got {n}")
    _threads = int(n)
    os.environ["COURSE_LIB_THREADS"] = str(n)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    return n


def thread_info() -> dict[str, Any]:
    """What each pool uses now: the policy, BLAS/OpenMP libraries, Numba, PyTorch."""
    from threadpoolctl import threadpool_info

    info: dict[str, Any] = {
        "policy": threads(),
        "pools": [
            {k: p.get(k) for k in ("user_api", "internal_api", "num_threads", "version")}
            for p in threadpool_info()
        ],
    }
    if "numba" in sys.modules:
        import numba

        try:
            layer = numba.threading_layer()
        except ValueError:  # no parallel kernel has run yet
            layer = os.environ.get("NUMBA_THREADING_LAYER", "not started")
        info["numba"] = {"threads": numba.get_num_threads(), "layer": layer}
    if "torch" in sys.modules:
        info["torch"] = {"threads": sys.modules["torch"].get_num_threads()}
    return info
