"""Gradient checks of a student's object in ONE round trip to the kernel.

A numerical gradient check calls the student's ``forward`` (or ``loss``) twice per checked
number: an ``Affine`` layer with a (12, 2) weight on a (2, 3, 2, 2) input needs about 130
evaluations, a small network a few hundred. Through the data-only RPC of
:mod:`course_lib.grading.rpc` each evaluation would be several socket round trips between the
verdict process and the kernel; on a loaded machine every round trip waits for both processes to
be scheduled, and one test cell took more than 30 s.

So in the verdict process, :func:`install` wraps ``course_lib.gradcheck.check_layer``,
``check_loss_layer`` and ``check_model`` (and the names ``course_lib.grading.checks`` bound):
for an object that lives in the student's kernel (a proxy) the wrapper sends ONE request,
``gradcheck``, that makes the kernel run *the student's calls* of the check in the same order
as the original (:func:`kernel_evaluate`: copy the layer, perturb one input or parameter entry
by ``±h``, call ``forward``) and return their raw results as data. Everything that decides the
verdict stays in the verdict process: the upstream gradient ``dout`` (seeded there), the
scalar losses ``sum(out * dout)``, the centred differences, the comparison with the student's
``backward`` and the report. The kernel side is no more trusted than before: it could only
return values that the student's own ``forward`` could have returned call by call anyway. Local
(non-proxy) objects go to the original functions unchanged.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["install", "kernel_evaluate"]

#: Output bytes returned by one ``gradcheck`` request before the kernel refuses.
MAX_RESULT_BYTES = 128 * 1024 * 1024


# ------------------------------------------------------------------------------------------
# kernel side: runs in the student's process, returns the student's results as data


def _f64(a: Any) -> np.ndarray:
    return np.array(a, dtype=np.float64)


def _stack(outs: list[Any]) -> Any:
    arrays = [np.asarray(o) for o in outs]
    if arrays and all(a.shape == arrays[0].shape and a.dtype != object for a in arrays):
        return np.stack(arrays)
    return outs


def _budget(outs: list[Any], item: Any) -> None:
    outs.append(item)
    size = sum(getattr(o, "nbytes", 8) for o in outs)
    if size > MAX_RESULT_BYTES:
        raise MemoryError("the gradient check's outputs are too large to send to the grader")


def _perturbed(value: np.ndarray, h: float) -> Any:
    """Copies of ``value`` with one entry moved by +h, then -h, entry after entry."""
    flat = value.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        for new in (old + h, old - h):
            v = value.copy()
            v.reshape(-1)[i] = new
            yield v


def kernel_evaluate(obj: Any, spec: Mapping[str, Any]) -> Any:
    """The student's calls of a gradient check on ``obj`` (see the module docstring)."""
    mode = spec["mode"]
    kw = dict(spec.get("kw") or {})
    h = float(spec.get("h", 1e-4))
    if mode in ("layer_out", "layer"):
        names = [str(n) for n in spec.get("names") or []]
        x = _f64(spec["x"])
        base = copy.deepcopy(obj)
        for n in names:
            setattr(base, n, _f64(getattr(base, n)))
        if mode == "layer_out":
            return copy.deepcopy(base).forward(x.copy(), **kw)
        dout = _f64(spec["dout"])
        analytic = copy.deepcopy(base)
        analytic.forward(x.copy(), **kw)
        dx = analytic.backward(dout.copy())
        grads = {n: getattr(analytic, "d" + n, None) for n in names}
        outs: list[Any] = []
        for v in _perturbed(x, h):
            _budget(outs, np.asarray(copy.deepcopy(base).forward(v.copy(), **kw)))
        result = {"dx": dx, "grads": grads, "x": _stack(outs), "params": {}, "shapes": {}}
        for n in names:
            value = _f64(getattr(base, n))
            result["shapes"][n] = list(value.shape)
            outs = []
            for v in _perturbed(value, h):
                twin = copy.deepcopy(base)
                setattr(twin, n, v)
                _budget(outs, np.asarray(twin.forward(x.copy(), **kw)))
            result["params"][n] = _stack(outs)
        return result
    if mode == "loss_layer":
        x = _f64(spec["x"])
        t = spec["t"]
        analytic = copy.deepcopy(obj)
        loss = analytic.forward(x.copy(), t)
        dx = analytic.backward(1)
        losses = [float(copy.deepcopy(obj).forward(v.copy(), t)) for v in _perturbed(x, h)]
        return {"loss": float(loss), "dx": dx, "x": np.array(losses, dtype=np.float64)}
    if mode == "model":
        from course_lib.gradcheck import _freeze_randomness, _takes_train_flg

        x = _f64(spec["x"])
        t = spec["t"]
        twin = obj.astype(np.float64) if hasattr(obj, "astype") else copy.deepcopy(obj)
        restore = _freeze_randomness(twin)
        train_kw = {"train_flg": True} if _takes_train_flg(twin) else {}

        def f() -> float:
            restore()
            return float(twin.loss(x, t, **train_kw))

        restore()
        analytic = dict(twin.gradient(x, t))
        loss0 = f()
        keys, shapes, losses = [], {}, {}
        for key, value in twin.params.items():
            flat = value.reshape(-1)
            if not np.shares_memory(flat, value):
                raise ValueError(f"parameter {key} is not a contiguous array")
            out = np.empty(2 * flat.size, dtype=np.float64)
            for i in range(flat.size):
                old = flat[i]
                try:
                    flat[i] = old + h
                    out[2 * i] = f()
                    flat[i] = old - h
                    out[2 * i + 1] = f()
                finally:
                    flat[i] = old
            keys.append(str(key))
            shapes[str(key)] = list(value.shape)
            losses[str(key)] = out
        return {
            "analytic": analytic,
            "loss0": loss0,
            "keys": keys,
            "shapes": shapes,
            "losses": losses,
        }
    raise ValueError(f"unknown gradient-check mode {mode!r}")


# ------------------------------------------------------------------------------------------
# verdict side


def _centred(values: Sequence[float], shape: Sequence[int], h: float, what: str) -> np.ndarray:
    shape = tuple(int(s) for s in shape)
    grad = np.zeros(shape, dtype=np.float64)
    flat = grad.reshape(-1)
    if len(values) != 2 * flat.size:
        raise AssertionError(
            f"{what}: the gradient check expected {2 * flat.size} evaluations of your code, "
            f"got {len(values)}"
        )
    for i in range(flat.size):
        flat[i] = (float(values[2 * i]) - float(values[2 * i + 1])) / (2 * h)
    return grad


def _reduced(outs: Any, dout: np.ndarray) -> list[float]:
    """``float(sum(out * dout))`` for each output, computed here (the verdict process)."""
    if isinstance(outs, np.ndarray) and outs.dtype != object:
        return [float(np.sum(o * dout)) for o in outs]
    return [float(np.sum(np.asarray(o) * dout)) for o in outs]


def install(is_remote: Callable[[Any], bool], request: Callable[..., Any]) -> None:
    """Route gradient checks of kernel objects through :func:`kernel_evaluate`.

    ``is_remote(obj)`` says whether ``obj`` is a proxy; ``request(obj, spec)`` sends the
    ``gradcheck`` request for the proxy ``obj`` and returns the decoded answer.
    """
    import course_lib.gradcheck as gc
    import course_lib.grading.checks as checks
    from course_lib._random import as_generator

    originals = {n: getattr(gc, n) for n in ("check_layer", "check_loss_layer", "check_model")}

    def check_layer(
        layer: Any,
        x: np.ndarray,
        *,
        forward_kwargs: Mapping[str, Any] | None = None,
        dout: np.ndarray | None = None,
        params: Sequence[str] | None = None,
        seed: Any = 0,
        h: float = gc.CHECK_H,
        tol: float = gc.CHECK_TOL,
    ) -> Any:
        kw = dict(forward_kwargs or {})
        names = gc._layer_param_names(layer, params)
        x64 = _f64(x)
        spec = {"names": names, "x": x64, "kw": kw, "h": h}
        out = request(layer, {**spec, "mode": "layer_out"})
        if dout is None:
            dout = as_generator(seed).standard_normal(np.shape(out))
        dout = _f64(dout)
        res = request(layer, {**spec, "mode": "layer", "dout": dout})
        tiny = gc.noise_floor_tiny(float(np.sum(np.abs(np.asarray(out) * dout))), h, tol)
        report = gc.GradCheckReport(what=f"gradient check of {type(layer).__name__}", tol=tol)
        num_dx = _centred(_reduced(res["x"], dout), x64.shape, h, "dx")
        report.comparisons.append(gc.compare_gradients("dx", res["dx"], num_dx, tol, tiny))
        for n in names:
            num = _centred(_reduced(res["params"][n], dout), res["shapes"][n], h, "d" + n)
            report.comparisons.append(
                gc.compare_gradients("d" + n, res["grads"].get(n), num, tol, tiny)
            )
        return report

    def check_loss_layer(
        layer: Any,
        x: np.ndarray,
        t: np.ndarray,
        *,
        h: float = gc.CHECK_H,
        tol: float = gc.CHECK_TOL,
    ) -> Any:
        x64 = _f64(x)
        res = request(layer, {"mode": "loss_layer", "x": x64, "t": t, "h": h})
        tiny = gc.noise_floor_tiny(float(res["loss"]), h, tol)
        report = gc.GradCheckReport(what=f"gradient check of {type(layer).__name__}", tol=tol)
        num = _centred(list(res["x"]), x64.shape, h, "dx")
        report.comparisons.append(gc.compare_gradients("dx", res["dx"], num, tol, tiny))
        return report

    def check_model(
        model: Any,
        x: np.ndarray,
        t: np.ndarray,
        *,
        h: float = gc.CHECK_H,
        tol: float = gc.CHECK_TOL,
    ) -> Any:
        res = request(model, {"mode": "model", "x": _f64(x), "t": t, "h": h})
        tiny = gc.noise_floor_tiny(float(res["loss0"]), h, tol)
        report = gc.GradCheckReport(what=f"gradient check of {type(model).__name__}", tol=tol)
        analytic = res["analytic"]
        for key in res["keys"]:
            num = _centred(list(res["losses"][key]), res["shapes"][key], h, key)
            report.comparisons.append(gc.compare_gradients(key, analytic.get(key), num, tol, tiny))
        return report

    batched = {
        "check_layer": check_layer,
        "check_loss_layer": check_loss_layer,
        "check_model": check_model,
    }
    for name, original in originals.items():

        def dispatch(
            obj: Any,
            *args: Any,
            _original: Callable[..., Any] = original,
            _batched: Callable[..., Any] = batched[name],
            **kwargs: Any,
        ) -> Any:
            if is_remote(obj):
                return _batched(obj, *args, **kwargs)
            return _original(obj, *args, **kwargs)

        functools.update_wrapper(dispatch, original)
        setattr(gc, name, dispatch)
        if getattr(checks, name, None) is original:
            setattr(checks, name, dispatch)
