"""Checks that the course's test cells call on a student's code.

Each check raises ``AssertionError`` with a message a student can act on
(which output or gradient, which index, yours against expected) and returns
``None`` when all is well. Gradients are compared with numerical ones from
:mod:`course_lib.gradcheck`, in float64; values with the course_lib reference.

Every check first makes sure it was handed the student's own code, not the
reference implementation from ``course_lib``: the grade is for the student's work.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from course_lib._random import SeedLike, as_generator
from course_lib.gradcheck import (
    CHECK_TOL,
    assert_gradients_close,
    check_layer,
    check_loss_layer,
    check_model,
    layer_param_names,
)

__all__ = [
    "check_backprop_chain",
    "check_close",
    "check_convolution_backward",
    "check_function",
    "check_layer_gradients",
    "check_layer_matches",
    "check_loss_layer_gradients",
    "check_network_gradient",
    "check_optimizer",
    "check_own_implementation",
    "check_pooling_backward",
]


def _origin_modules(obj: Any) -> list[str]:
    """Modules that define ``obj`` (a class and its bases, a function, or an instance's class)."""
    if inspect.isclass(obj):
        return [getattr(c, "__module__", "") or "" for c in obj.__mro__ if c is not object]
    if inspect.isroutine(obj) or (callable(obj) and not hasattr(obj, "__dict__")):
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


@contextlib.contextmanager
def _student_code(failed: str) -> Iterator[None]:
    """Turn an exception of the student's code into an ``AssertionError`` that starts with
    ``failed`` (``NotImplementedError``, an exercise not started, passes through)."""
    try:
        yield
    except NotImplementedError:
        raise
    except Exception as exc:
        raise AssertionError(f"{failed}: {type(exc).__name__}: {exc}") from exc


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
    if np.issubdtype(exp.dtype, np.number) and got.dtype.kind not in "biufc":
        raise AssertionError(f"{name}: expected numbers, got dtype {got.dtype}")
    g = got.astype(np.float64)
    e = exp.astype(np.float64)
    if not np.all(np.isfinite(g)) and np.all(np.isfinite(e)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(g))[0])
        where = f"{name}[{', '.join(map(str, idx))}]" if idx else name
        raise AssertionError(
            f"{where} is {g[idx]}: expected a finite number ({_fmt_pair(g[idx], e[idx])[1]})"
        )
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
    name = type(layer).__name__
    with _student_code(f"{name} failed while running forward/backward on x of shape {np.shape(x)}"):
        report = check_layer(
            layer, x, forward_kwargs=forward_kwargs, seed=seed, tol=tol, params=params
        )
    assert_gradients_close(report)


def check_loss_layer_gradients(
    layer: Any, x: np.ndarray, t: np.ndarray, *, seed: SeedLike = 0, tol: float = CHECK_TOL
) -> None:
    """Gradient-check a loss layer: ``forward(x, t)`` -> scalar, ``backward(1)`` -> dx."""
    check_own_implementation(layer)
    with _student_code(f"{type(layer).__name__} failed on x of shape {np.shape(x)}"):
        report = check_loss_layer(layer, x, t, tol=tol)
    assert_gradients_close(report)


def check_layer_matches(
    layer: Any,
    reference_layer: Any,
    x: np.ndarray,
    *,
    forward_kwargs: Mapping[str, Any] | None = None,
    seed: SeedLike = 0,
    rtol: float = 1e-6,
    backward: bool = True,
    check_dx: bool = True,
) -> None:
    """Compare forward output, ``dx`` and parameter gradients with a reference layer.

    Both layers get the same input and the same random upstream gradient (seeded);
    neither argument is modified (copies are run). ``backward=False`` compares the
    forward output only (for a test of ``forward`` that must not depend on
    ``backward``, which has its own exercise); ``check_dx=False`` skips ``dx`` but
    still compares the parameter gradients.
    """
    check_own_implementation(layer)
    kw = dict(forward_kwargs or {})
    yours, ref = copy.deepcopy(layer), copy.deepcopy(reference_layer)
    x = np.asarray(x)
    name = type(layer).__name__
    with _student_code(f"{name}.forward failed"):
        out = yours.forward(x.copy(), **kw)
    ref_out = ref.forward(x.copy(), **kw)
    check_close(out, ref_out, f"{name}.forward(x)", rtol=rtol, atol=1e-10)
    if not backward:
        return
    dout = as_generator(seed).standard_normal(np.shape(ref_out)).astype(np.asarray(ref_out).dtype)
    with _student_code(f"{name}.backward failed"):
        dx = yours.backward(dout.copy())
    ref_dx = ref.backward(dout.copy())
    if check_dx:
        check_close(dx, ref_dx, "dx", rtol=rtol, atol=1e-10)
    for p in layer_param_names(reference_layer):
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
        with _student_code(f"{name}.update failed at step {step}"):
            yours.update(params, {k: g.copy() for k, g in grads.items()})
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
    with _student_code(f"{label} failed"):
        got = fn(*copy.deepcopy(args))
    check_close(got, reference_fn(*copy.deepcopy(args)), label, rtol=rtol)


# ------------------------------------------------------------------------------------------
# One exercise at a time: code that calls another exercise's function (a network calling the
# student's layers, a layer calling the student's col2im) is graded on its own step, so one
# mistake costs the points of its own exercise only.


def check_backprop_chain(
    net: Any, x: np.ndarray, t: np.ndarray, layer_grads: Mapping[str, tuple[str, str]]
) -> None:
    """Compare ``net.gradient(x, t)`` with backpropagation through the net's own layers.

    The reference chaining runs here: ``net.loss(x, t)``, then ``last_layer.backward(1)``
    and every layer's ``backward`` in reverse order, reading each gradient where
    ``layer_grads`` says it is (``{"W1": ("Affine1", "dW"), ...}``). Whatever the layers
    compute, right or wrong, ``gradient`` must hand back exactly what they give.
    """
    check_own_implementation(net.gradient, f"{type(net).__name__}.gradient")
    with _student_code("gradient(x, t) failed"):
        grads = net.gradient(x, t)
    if not isinstance(grads, Mapping):
        raise AssertionError(f"gradient(x, t) should return a dict, got {type(grads).__name__}")
    grads = {k: np.array(v, copy=True) for k, v in grads.items()}
    net.loss(x, t)
    dout = net.last_layer.backward(1)
    for layer in reversed(list(net.layers.values())):
        dout = layer.backward(dout)
    for key, (layer_name, attr) in layer_grads.items():
        if key not in grads:
            raise AssertionError(f"gradient() returned no '{key}' (keys: {sorted(grads)})")
        chained = getattr(net.layers[layer_name], attr)
        try:
            check_close(grads[key], chained, f"grads['{key}']", rtol=1e-9, atol=1e-12)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; expected: {layer_name}.{attr} after backpropagating through the layers"
            ) from None


def check_network_gradient(
    net: Any, x: np.ndarray, t: np.ndarray, layer_grads: Mapping[str, tuple[str, str]]
) -> bool:
    """Grade a network's ``gradient``: against numerical gradients, or else against its layers.

    Passes when ``net.gradient`` agrees with numerical gradients of ``net.loss``. When it
    does not, the fault may lie in a layer's ``backward`` (an exercise of its own): then
    ``gradient`` must still chain the layers correctly (:func:`check_backprop_chain`), and
    a note says that a layer is at fault. Returns True when the numerical check passed,
    False when only the chaining did (so a test can skip checks that need right layers).
    """
    report = check_model(net, x, t)
    if report.ok:
        print(report)
        return True
    try:
        check_backprop_chain(net, x, t, layer_grads)
    except AssertionError as exc:
        raise AssertionError(
            f"{type(net).__name__}.gradient disagrees with numerical gradients:\n{report}\n"
            f"and it does not return what backpropagating through its layers gives: {exc}"
        ) from None
    print(
        f"Note: {type(net).__name__}.gradient chains its layers correctly, but the result "
        f"disagrees with numerical gradients, so one of its layers' backward is wrong "
        f"(see that layer's own test):\n{report}"
    )
    return False


def _check_backward_through_col2im(
    make_layer: Callable[[], Any],
    reference_layer: Any,
    x: np.ndarray,
    dx_with: Callable[[Callable[..., Any], np.ndarray], Any],
    col2im: Callable[..., Any],
    seed: SeedLike,
) -> bool:
    """The common part of the convolution and pooling checks (see there)."""
    from course_lib.util import col2im as reference_col2im

    x = np.asarray(x, dtype=np.float64)
    dout = as_generator(seed).standard_normal(np.shape(copy.deepcopy(reference_layer).forward(x)))
    right = dx_with(reference_col2im, dout)
    try:
        via_yours = np.asarray(dx_with(col2im, dout), dtype=np.float64)
        col2im_right = via_yours.shape == right.shape and np.allclose(via_yours, right, 1e-9, 1e-12)
    except NotImplementedError:
        raise
    except Exception:
        via_yours, col2im_right = None, False
    if col2im_right:
        check_layer_gradients(make_layer(), x, seed=seed)
        check_layer_matches(make_layer(), reference_layer, x, seed=seed)
        return True
    # col2im is wrong (its own test says how): grade everything but what col2im decides.
    check_layer_matches(make_layer(), reference_layer, x, seed=seed, check_dx=False)
    layer = make_layer()
    layer.forward(x.copy())
    dx = layer.backward(dout.copy())
    try:
        check_close(dx, right, "dx")
        return False  # right although col2im is not: this layer does not use it
    except AssertionError as first:
        if via_yours is None:
            raise
        try:
            check_close(dx, via_yours, "dx")
        except AssertionError:
            raise first from None
    print(
        "Note: your col2im does not give the reference's result (see its own test), so dx "
        "was compared with what your col2im makes of the right dcol."
    )
    return False


def check_convolution_backward(
    convolution_class: Callable[..., Any],
    x: np.ndarray,
    W: np.ndarray,
    b: np.ndarray,
    stride: int = 1,
    pad: int = 0,
    *,
    col2im: Callable[..., Any],
    seed: SeedLike = 0,
) -> bool:
    """Grade a student's ``Convolution(W, b, stride, pad)`` backward, on its own.

    x: (N, C, H, W), W: (FN, C, FH, FW), b: (FN,). When the student's ``col2im`` is
    right, the layer is gradient-checked (float64) and compared with course_lib's
    ``Convolution`` (output, ``dx``, ``dW``, ``db``). When it is not, ``dx`` cannot be
    right either, so ``dx`` is compared with the student's ``col2im`` applied to the right
    ``dcol = dout @ W`` (the book's algorithm), and output, ``dW``, ``db`` with the reference.
    Returns True when the full check ran (the student's ``col2im`` is right), so a test can
    skip known values that need a right ``col2im``.
    """
    from course_lib.layers import Convolution

    check_own_implementation(convolution_class, "Convolution")
    x = np.asarray(x, dtype=np.float64)
    FN, _, FH, FW = np.shape(W)

    def dx_with(put_back: Callable[..., Any], dout: np.ndarray) -> Any:
        dcol = dout.transpose(0, 2, 3, 1).reshape(-1, FN) @ np.reshape(W, (FN, -1))
        return put_back(dcol, x.shape, FH, FW, stride, pad)

    return _check_backward_through_col2im(
        lambda: convolution_class(np.copy(W), np.copy(b), stride, pad),
        Convolution(np.copy(W), np.copy(b), stride, pad),
        x,
        dx_with,
        col2im,
        seed,
    )


def check_pooling_backward(
    pooling_class: Callable[..., Any],
    x: np.ndarray,
    pool_h: int,
    pool_w: int,
    stride: int = 2,
    pad: int = 0,
    *,
    col2im: Callable[..., Any],
    seed: SeedLike = 0,
) -> bool:
    """Grade a student's max ``Pooling(pool_h, pool_w, stride, pad)`` backward, on its own.

    x: (N, C, H, W). Like :func:`check_convolution_backward`: with a wrong ``col2im``,
    ``dx`` is compared with the student's ``col2im`` applied to the right ``dcol`` (each
    upstream gradient at its window's first maximum, rows ``(n, oh, ow)``, columns
    ``(c, ph, pw)``).
    """
    from course_lib.layers import Pooling
    from course_lib.util import conv_output_size, im2col

    check_own_implementation(pooling_class, "Pooling")
    x = np.asarray(x, dtype=np.float64)
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    windows = im2col(xp, pool_h, pool_w, stride, 0).reshape(-1, pool_h * pool_w)
    first_max = np.argmax(windows, axis=1)
    oh = conv_output_size(H, pool_h, stride, pad)
    ow = conv_output_size(W, pool_w, stride, pad)

    def dx_with(put_back: Callable[..., Any], dout: np.ndarray) -> Any:
        flat = dout.transpose(0, 2, 3, 1).ravel()  # (n, oh, ow, c), like the rows of windows
        dmax = np.zeros((flat.size, pool_h * pool_w))
        dmax[np.arange(flat.size), first_max] = flat
        return put_back(dmax.reshape(N * oh * ow, -1), x.shape, pool_h, pool_w, stride, pad)

    return _check_backward_through_col2im(
        lambda: pooling_class(pool_h, pool_w, stride, pad),
        Pooling(pool_h, pool_w, stride, pad),
        x,
        dx_with,
        col2im,
        seed,
    )
