"""Checks that the course's test cells call on a student's code.

Each check raises ``AssertionError`` with a message a student can act on
(which output or gradient, which index, yours against expected) and returns
``None`` when all is well. Gradients are compared with numerical ones from
:mod:`course_lib.gradcheck`, in float64; values with the course_lib reference.

Every check first makes sure it was handed the student's own code, not the
reference implementation from ``course_lib``: the grade is for the student's work.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from course_lib._random import SeedLike, as_generator
from course_lib.gradcheck import CHECK_TOL, check_layer, check_loss_layer

__all__ = [
    "check_close",
    "check_function",
    "check_layer_gradients",
    "check_layer_matches",
    "check_loss_layer_gradients",
    "check_optimizer",
    "check_own_implementation",
]


def _origin_modules(obj: Any) -> list[str]:
    """Modules that define ``obj`` (a class and its bases, a function, or an instance's class)."""
    if inspect.isclass(obj):
        return [getattr(c, "__module__", "") or "" for c in obj.__mro__ if c is not object]
    if inspect.isfunction(obj) or inspect.ismethod(obj) or inspect.isbuiltin(obj):
        return [getattr(obj, "__module__", "") or ""]
    if callable(obj) and not hasattr(obj, "__dict__"):
        return [getattr(obj, "__module__", "") or ""]
    return _origin_modules(type(obj))


def check_own_implementation(obj: Any, name: str | None = None) -> None:
    """Fail if ``obj`` is (or derives from) course_lib's reference implementation."""
    label = name or getattr(obj, "__name__", None) or type(obj).__name__
    for module in _origin_modules(obj):
        if module == "course_lib" or module.startswith("course_lib."):
            raise AssertionError(
                f"{label} comes from {module}, the course's reference implementation. "
                "The grade is for your own code: write it in the solution cell "
                "(the fallback line is only for carrying on with the chapter)."
            )


def _fmt(v: Any) -> str:
    return f"{float(v):.6g}" if np.isscalar(v) or np.ndim(v) == 0 else repr(v)


def _fmt_pair(a: float, b: float) -> tuple[str, str]:
    """Format two numbers with enough digits that different values never print the same."""
    for digits in (6, 10, 17):
        sa, sb = f"{float(a):.{digits}g}", f"{float(b):.{digits}g}"
        if sa != sb or a == b:
            return sa, sb
    return repr(float(a)), repr(float(b))


def check_close(
    yours: Any,
    expected: Any,
    name: str = "output",
    *,
    rtol: float = 1e-6,
    atol: float = 1e-8,
) -> None:
    """Compare values: shape first, then every element within ``atol + rtol * |expected|``."""
    if yours is None:
        raise AssertionError(f"{name} is None: did you forget to return (or store) it?")
    exp = np.asarray(expected)
    try:
        got = np.asarray(yours)
    except Exception as exc:  # pragma: no cover - exotic objects
        raise AssertionError(f"{name}: cannot be read as an array ({exc})") from None
    if got.dtype == object:
        raise AssertionError(f"{name}: expected numbers, got {type(yours).__name__} of objects")
    if got.shape != exp.shape:
        hint = " (same size: reshape it?)" if got.size == exp.size else ""
        raise AssertionError(f"{name} has shape {got.shape}, expected {exp.shape}{hint}")
    if (
        np.issubdtype(exp.dtype, np.number)
        and not np.issubdtype(got.dtype, np.number)
        and not (got.dtype == bool)
    ):
        raise AssertionError(f"{name}: expected numbers, got dtype {got.dtype}")
    g = got.astype(np.float64)
    e = exp.astype(np.float64)
    if not np.all(np.isfinite(g)) and np.all(np.isfinite(e)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(g))[0])
        where = f"{name}[{', '.join(map(str, idx))}]" if idx else name
        raise AssertionError(f"{where} is {g[idx]}: expected a finite number ({_fmt(e[idx])})")
    bad = ~np.isclose(g, e, rtol=rtol, atol=atol, equal_nan=True)
    if np.any(bad):
        diff = np.where(bad, np.abs(g - e), -1.0)
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
        where = f"{name}[{', '.join(map(str, idx))}]" if idx else name
        n_bad, n = int(bad.sum()), bad.size
        shown_g, shown_e = _fmt_pair(g[idx], e[idx])
        raise AssertionError(
            f"{where}: yours {shown_g}, expected {shown_e} "
            f"(max abs difference {float(np.abs(g - e)[bad].max()):.3g}; "
            f"{n_bad} of {n} values differ)"
        )


def check_layer_gradients(
    layer: Any,
    x: np.ndarray,
    *,
    forward_kwargs: Mapping[str, Any] | None = None,
    seed: SeedLike = 0,
    tol: float = CHECK_TOL,
    params: Sequence[str] | None = None,
) -> None:
    """Gradient-check a layer instance in float64 (see :func:`course_lib.gradcheck.check_layer`)."""
    check_own_implementation(layer)
    try:
        report = check_layer(
            layer, x, forward_kwargs=forward_kwargs, seed=seed, tol=tol, params=params
        )
    except NotImplementedError:
        raise
    except Exception as exc:
        raise AssertionError(
            f"{type(layer).__name__} failed while running forward/backward on x of shape "
            f"{np.shape(x)}: {type(exc).__name__}: {exc}"
        ) from exc
    if not report.ok:
        raise AssertionError(str(report))


def check_loss_layer_gradients(
    layer: Any, x: np.ndarray, t: np.ndarray, *, seed: SeedLike = 0, tol: float = CHECK_TOL
) -> None:
    """Gradient-check a loss layer: ``forward(x, t)`` -> scalar, ``backward(1)`` -> dx."""
    check_own_implementation(layer)
    try:
        report = check_loss_layer(layer, x, t, tol=tol)
    except NotImplementedError:
        raise
    except Exception as exc:
        raise AssertionError(
            f"{type(layer).__name__} failed on x of shape {np.shape(x)}: {type(exc).__name__}: {exc}"
        ) from exc
    if not report.ok:
        raise AssertionError(str(report))


def _param_names(layer: Any) -> list[str]:
    declared = getattr(type(layer), "param_names", None)
    if declared:
        return list(declared)
    return [
        n for n in ("W", "b", "gamma", "beta") if isinstance(getattr(layer, n, None), np.ndarray)
    ]


def check_layer_matches(
    layer: Any,
    reference_layer: Any,
    x: np.ndarray,
    *,
    forward_kwargs: Mapping[str, Any] | None = None,
    seed: SeedLike = 0,
    rtol: float = 1e-6,
) -> None:
    """Compare forward output, ``dx`` and parameter gradients with a reference layer.

    Both layers get the same input and the same random upstream gradient (seeded);
    neither argument is modified (copies are run).
    """
    check_own_implementation(layer)
    kw = dict(forward_kwargs or {})
    yours, ref = copy.deepcopy(layer), copy.deepcopy(reference_layer)
    x = np.asarray(x)
    name = type(layer).__name__
    try:
        out = yours.forward(x.copy(), **kw)
    except NotImplementedError:
        raise
    except Exception as exc:
        raise AssertionError(f"{name}.forward failed: {type(exc).__name__}: {exc}") from exc
    ref_out = ref.forward(x.copy(), **kw)
    check_close(out, ref_out, f"{name}.forward(x)", rtol=rtol, atol=1e-10)
    dout = as_generator(seed).standard_normal(np.shape(ref_out)).astype(np.asarray(ref_out).dtype)
    try:
        dx = yours.backward(dout.copy())
    except NotImplementedError:
        raise
    except Exception as exc:
        raise AssertionError(f"{name}.backward failed: {type(exc).__name__}: {exc}") from exc
    check_close(dx, ref.backward(dout.copy()), "dx", rtol=rtol, atol=1e-10)
    for p in _param_names(reference_layer):
        check_close(
            getattr(yours, "d" + p, None), getattr(ref, "d" + p), "d" + p, rtol=rtol, atol=1e-10
        )


def check_optimizer(
    optimizer: Any,
    reference: Any,
    *,
    steps: int = 3,
    seed: SeedLike = 0,
    shapes: Sequence[tuple[int, ...]] = ((3, 4), (4,)),
    rtol: float = 1e-6,
) -> None:
    """Run ``update(params, grads)`` of both optimizers on identical data; compare params after each step.

    The two optimizer objects are copied first, so their state is not touched.
    """
    check_own_implementation(optimizer)
    rng = as_generator(seed)
    yours, ref = copy.deepcopy(optimizer), copy.deepcopy(reference)
    params = {f"p{i}": rng.standard_normal(s) for i, s in enumerate(shapes)}
    ref_params = {k: v.copy() for k, v in params.items()}
    name = type(optimizer).__name__
    for step in range(1, steps + 1):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        try:
            yours.update(params, {k: g.copy() for k, g in grads.items()})
        except NotImplementedError:
            raise
        except Exception as exc:
            raise AssertionError(
                f"{name}.update failed at step {step}: {type(exc).__name__}: {exc}"
            ) from exc
        ref.update(ref_params, grads)
        for k in ref_params:
            check_close(params.get(k), ref_params[k], f"params['{k}'] after step {step}", rtol=rtol)


def check_function(
    fn: Callable[..., Any],
    reference_fn: Callable[..., Any],
    *args: Any,
    name: str | None = None,
    rtol: float = 1e-6,
) -> None:
    """Compare ``fn(*args)`` with ``reference_fn(*args)`` (each gets its own copy of the arguments)."""
    check_own_implementation(fn)
    label = name or f"{getattr(fn, '__name__', 'function')}(...)"
    try:
        got = fn(*copy.deepcopy(args))
    except NotImplementedError:
        raise
    except Exception as exc:
        raise AssertionError(f"{label} failed: {type(exc).__name__}: {exc}") from exc
    check_close(got, reference_fn(*copy.deepcopy(args)), label, rtol=rtol)
