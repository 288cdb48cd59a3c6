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

Most kernels and products run one after the other, so the pools take turns on
the same cores. A convolution's blocks of images are the exception: every block is
a small patch copy and a small product, far too little work to split over threads
(a 2-thread BLAS call or Numba kernel costs tens of microseconds to start and to
join, on a virtual machine more). :func:`run_shares` instead gives each thread its
own share of the blocks, with BLAS held to one thread meanwhile: one hand-over per
layer instead of two per block.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = [
    "NUMBA_LAYER",
    "prepare_numba",
    "run_shares",
    "set_threads",
    "single_threaded_blas",
    "thread_info",
    "threads",
]

T = TypeVar("T")
R = TypeVar("R")

#: Numba's threading layer unless NUMBA_THREADING_LAYER is set (measured: docs/performance.md).
NUMBA_LAYER = "workqueue"

_threads: int | None = None
_pool: ThreadPoolExecutor | None = None  # run_shares' helper threads
_pool_size = 0
_blas: list[Any] | None = None  # threadpoolctl's controllers of the loaded BLAS libraries


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


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS runs on the calling thread only, inside the block (its thread count restored after).

    Setting OpenBLAS's count is a plain function call (under a microsecond); the
    libraries are looked up once, through ``threadpoolctl``.
    """
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
    before = [c.num_threads for c in _blas]
    for c in _blas:
        c.set_num_threads(1)
    try:
        yield
    finally:
        for c, n in zip(_blas, before, strict=True):
            c.set_num_threads(n)


def run_shares(work: Callable[[Sequence[T]], R], items: Sequence[T]) -> list[R]:
    """Call ``work(share)`` on :func:`threads` contiguous shares of ``items``, in parallel.

    Returns what each call returned, in the order of the shares. The calling thread
    takes the first share, helper threads the others; BLAS is single-threaded
    meanwhile (see :func:`single_threaded_blas`), so each thread runs its own
    products, and so is it when one thread or one item leaves a single share to run
    here. ``work`` must release the GIL for its heavy parts (NumPy's products and the
    serial Numba kernels do) and must not start a parallel Numba kernel (Numba's
    workqueue pool cannot be entered from two threads).
    """
    global _pool, _pool_size
    n = min(threads(), len(items))
    with single_threaded_blas():
        if n <= 1:
            return [work(items)]
        shares = [items[i * len(items) // n : (i + 1) * len(items) // n] for i in range(n)]
        if _pool is None or _pool_size < n - 1:
            _pool = ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="course_lib")
            _pool_size = n - 1
        futures = [_pool.submit(work, share) for share in shares[1:]]
        try:
            first = work(shares[0])
        finally:
            rest = [f.result() for f in futures]
        return [first, *rest]


def _forget_pool() -> None:
    """In a forked child the helper threads do not exist: start a new pool when needed."""
    global _pool, _pool_size
    _pool, _pool_size = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


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
