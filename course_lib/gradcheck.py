"""Numerical gradients and gradient checking (centred differences, in float64).

The book computes gradients by numerical differentiation in chapter 4 and
checks backpropagation against them in chapter 5. This module does both and
reports, per gradient, the largest relative error and where it happens, in
words a student can act on::

    dW: max relative error 4.4e-01 at dW[3, 7]: yours 0.12, numerical 0.31

A check is (1) a *plan*: which entries move and by how much (every entry of the input, then of
each parameter in order, by +h then -h); (2) the *evaluations*: the checked object's own calls
on that plan (:func:`replay`); (3) the *combination*: centred differences of the outputs and
the comparison with the analytic gradients. Only (2) runs the checked code, so the grader
replays the same plan where the code lives (a student's kernel, through
``__gradcheck_replay__`` on the class of its stand-in for the object) and combines here.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from course_lib._random import SeedLike, as_generator

__all__ = [
    "GradCheckReport",
    "GradientComparison",
    "assert_gradients_close",
    "check_layer",
    "check_model",
    "compare_gradients",
    "layer_param_names",
    "noise_floor_tiny",
    "numerical_gradient",
    "rel_error",
    "replay",
]

#: Default step of the centred difference for float64 checks (balances truncation and rounding).
CHECK_H = 1e-5
#: Default tolerance on the max relative error of a float64 check.
CHECK_TOL = 1e-6
#: Floor of the denominator of the relative error, so two tiny gradients do not look far apart.
TINY = 1e-8


def noise_floor_tiny(loss_value: float, h: float, tol: float = 1e-6) -> float:
    """The ``tiny`` to use when comparing with a centred difference of a loss of size ``loss_value``.

    A centred difference carries a rounding error of about ``eps * |L| / h``
    (``eps`` of float64). Gradient entries of that size are noise, so the floor of
    the relative error's denominator is raised until 10 times that noise counts as
    an error of ``tol``: an exactly-zero gradient (say, the bias before a batch
    norm) is not failed by the last bits of float64, while any real mistake is
    still many orders of magnitude above the floor.
    """
    noise = np.finfo(np.float64).eps * max(1.0, abs(float(loss_value))) / h
    return max(TINY, 10.0 * noise / tol)


def numerical_gradient(
    f: Callable[[np.ndarray], Any], x: np.ndarray, h: float = 1e-4
) -> np.ndarray:
    """Gradient of the scalar function ``f`` at ``x`` by centred differences.

    x: a float array of any shape. Each element is moved by ``±h`` in place and
    ``f(x)`` evaluated (so ``f`` may ignore its argument and read ``x`` through
    another reference, as the book's networks do); the element is then restored,
    so ``x`` is unchanged afterwards, even if ``f`` raises. Returns an array of
    ``x``'s shape and dtype: ``(f(x + h e_i) - f(x - h e_i)) / (2 h)`` at every i.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"numerical_gradient needs a float array, got dtype {x.dtype}")
    grad = np.zeros_like(x)
    flat = x.reshape(-1)  # a view when x is contiguous
    if not np.shares_memory(flat, x):
        raise ValueError("numerical_gradient needs a contiguous array (it perturbs x in place)")
    gflat = grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        try:
            flat[i] = old + h
            fxh1 = float(f(x))
            flat[i] = old - h
            fxh2 = float(f(x))
        finally:
            flat[i] = old
        gflat[i] = (fxh1 - fxh2) / (2 * h)
    return grad


def _errors(a: np.ndarray, b: np.ndarray, tiny: float) -> np.ndarray:
    """Element-wise relative error ``|a - b| / max(|a| + |b|, tiny)`` of two float64 arrays."""
    return np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), tiny)


def rel_error(a: np.ndarray, b: np.ndarray, tiny: float = TINY) -> float:
    """Largest element-wise relative error ``|a - b| / max(|a| + |b|, tiny)``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} and {b.shape}")
    return float(np.max(_errors(a, b, tiny))) if a.size else 0.0


def _fmt(v: float) -> str:
    return f"{v:.6g}"


@dataclass
class GradientComparison:
    """One analytic gradient compared with its numerical estimate."""

    name: str  # e.g. "dW"
    max_error: float
    index: tuple[int, ...] | None = None  # where the error is largest
    yours: float | None = None
    numerical: float | None = None
    problem: str | None = None  # a missing gradient or a wrong shape
    hint: str | None = None
    tol: float = CHECK_TOL

    @property
    def ok(self) -> bool:
        return self.problem is None and self.max_error < self.tol

    def __str__(self) -> str:
        if self.problem:
            return f"{self.name}: {self.problem}"
        where = ""
        if self.index is not None:
            idx = ", ".join(str(i) for i in self.index)
            where = f"{self.name}[{idx}]" if idx else self.name
            where = f" at {where}: yours {_fmt(self.yours)}, numerical {_fmt(self.numerical)}"
        verdict = "ok" if self.ok else "WRONG"
        line = f"{self.name}: max relative error {self.max_error:.1e}{where} ({verdict})"
        if not self.ok and self.hint:
            line += f"\n    hint: {self.hint}"
        return line


def _hint(yours: np.ndarray, numerical: np.ndarray) -> str | None:
    """Guess a common mistake from how two gradients differ."""
    scale = max(float(np.max(np.abs(numerical))), TINY)
    if np.allclose(yours, -numerical, rtol=1e-4, atol=1e-6 * scale):
        return "yours is the negative of the numerical gradient: a sign error?"
    if not np.any(yours):
        return "yours is all zeros: is the gradient computed and stored?"
    num = float(np.vdot(yours, numerical))
    den = float(np.vdot(numerical, numerical))
    if den > 0:
        k = num / den
        if (
            abs(k) > 1e-3
            and abs(k - 1) > 1e-3
            and np.allclose(yours, k * numerical, rtol=1e-4, atol=1e-6 * scale)
        ):
            return f"yours is {k:.4g} times the numerical gradient: a missing or extra factor?"
    if yours.ndim == 2 and yours.shape == yours.T.shape and np.allclose(yours.T, numerical):
        return "yours is the transpose of the numerical gradient"
    return None


def compare_gradients(
    name: str, yours: Any, numerical: np.ndarray, tol: float = CHECK_TOL, tiny: float = TINY
) -> GradientComparison:
    """Compare an analytic gradient with a numerical one, element by element.

    The error of each entry is ``|yours - numerical| / max(|yours| + |numerical|, tiny)``.
    """
    if yours is None:
        return GradientComparison(
            name, np.inf, problem="missing (None): was it computed in backward?"
        )
    yours = np.asarray(yours, dtype=np.float64)
    numerical = np.asarray(numerical, dtype=np.float64)
    if yours.shape != numerical.shape:
        if yours.size == numerical.size:
            problem = f"shape {yours.shape}, expected {numerical.shape} (right size: reshape it)"
        else:
            problem = f"shape {yours.shape}, expected {numerical.shape}"
        return GradientComparison(name, np.inf, problem=problem, tol=tol)
    if not np.all(np.isfinite(yours)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(yours))[0])
        return GradientComparison(
            name, np.inf, bad, float(yours[bad]), float(numerical[bad]), "contains nan or inf"
        )
    err = _errors(yours, numerical, tiny)
    if err.size == 0:
        return GradientComparison(name, 0.0, tol=tol)
    worst = np.unravel_index(int(np.argmax(err)), err.shape)
    worst = tuple(int(i) for i in worst)
    comp = GradientComparison(
        name, float(err[worst]), worst, float(yours[worst]), float(numerical[worst]), tol=tol
    )
    if not comp.ok:
        comp.hint = _hint(yours, numerical)
    return comp


@dataclass
class GradCheckReport:
    """The result of a gradient check: one :class:`GradientComparison` per gradient."""

    comparisons: list[GradientComparison] = field(default_factory=list)
    what: str = "gradient check"
    tol: float = CHECK_TOL

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.comparisons)

    @property
    def max_error(self) -> float:
        return max((c.max_error for c in self.comparisons), default=0.0)

    @property
    def failures(self) -> list[GradientComparison]:
        return [c for c in self.comparisons if not c.ok]

    def __getitem__(self, name: str) -> GradientComparison:
        for c in self.comparisons:
            if c.name == name:
                return c
        raise KeyError(name)

    def __str__(self) -> str:
        head = f"{self.what}: {'passed' if self.ok else 'FAILED'} (tolerance {self.tol:.0e})"
        return "\n".join([head, *("  " + str(c) for c in self.comparisons)])

    def __bool__(self) -> bool:
        return self.ok


# --------------------------------------------------------------------------- layers


def _float64(a: Any) -> np.ndarray:
    return np.array(a, dtype=np.float64)


def layer_param_names(layer: Any, params: Sequence[str] | None = None) -> list[str]:
    """``params``, else the layer class's ``param_names``, else which of W, b, gamma, beta it has."""
    if params is not None:
        return list(params)
    declared = getattr(type(layer), "param_names", None)
    if declared:
        return list(declared)
    return [
        n for n in ("W", "b", "gamma", "beta") if isinstance(getattr(layer, n, None), np.ndarray)
    ]


def _as_float64_layer(layer: Any, names: Sequence[str]) -> Any:
    twin = copy.deepcopy(layer)
    for n in names:
        setattr(twin, n, _float64(getattr(twin, n)))
    return twin


#: Output bytes one evaluation plan may return before it stops (a runaway forward).
MAX_PLAN_BYTES = 128 * 1024 * 1024


# --------------------------------------------------------------------------- evaluation plans


def _perturbed(value: np.ndarray, h: float) -> Any:
    """Copies of ``value`` with one entry moved by +h, then -h, entry after entry (the plan)."""
    flat = value.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        for new in (old + h, old - h):
            v = value.copy()
            v.reshape(-1)[i] = new
            yield v


def _keep(outs: list[Any], item: Any) -> None:
    outs.append(item)
    if sum(getattr(o, "nbytes", 8) for o in outs) > MAX_PLAN_BYTES:
        raise MemoryError("the gradient check's outputs are too large")


def _stack(outs: list[Any]) -> Any:
    arrays = [np.asarray(o) for o in outs]
    if arrays and all(a.shape == arrays[0].shape and a.dtype != object for a in arrays):
        return np.stack(arrays)
    return outs


def _replay_layer(layer: Any, plan: Mapping[str, Any]) -> Any:
    names = [str(n) for n in plan.get("names") or []]
    kw = dict(plan.get("kw") or {})
    h = float(plan["h"])
    x = _float64(plan["x"])
    base = _as_float64_layer(layer, names)
    if plan["step"] == "out":
        return copy.deepcopy(base).forward(x.copy(), **kw)
    dout = _float64(plan["dout"])
    analytic = copy.deepcopy(base)
    analytic.forward(x.copy(), **kw)
    dx = analytic.backward(dout.copy())
    outs: list[Any] = []
    for v in _perturbed(x, h):
        _keep(outs, np.asarray(copy.deepcopy(base).forward(v.copy(), **kw)))
    runs = {"dx": dx, "grads": {}, "x": _stack(outs), "params": {}, "shapes": {}}
    for n in names:
        runs["grads"][n] = getattr(analytic, "d" + n, None)
        value = _float64(getattr(base, n))
        runs["shapes"][n] = list(value.shape)
        outs = []
        for v in _perturbed(value, h):
            twin = copy.deepcopy(base)
            setattr(twin, n, v)
            _keep(outs, np.asarray(twin.forward(x.copy(), **kw)))
        runs["params"][n] = _stack(outs)
    return runs


def _replay_loss_layer(layer: Any, plan: Mapping[str, Any]) -> Any:
    x, t, h = _float64(plan["x"]), plan["t"], float(plan["h"])
    analytic = copy.deepcopy(layer)
    loss = analytic.forward(x.copy(), t)
    dx = analytic.backward(1)
    losses = [float(copy.deepcopy(layer).forward(v.copy(), t)) for v in _perturbed(x, h)]
    return {"loss": float(loss), "dx": dx, "x": np.array(losses, dtype=np.float64)}


def _replay_model(model: Any, plan: Mapping[str, Any], perturb=numerical_gradient) -> Any:
    # perturb: bound before any student cell runs (a student may replace numerical_gradient)
    x, t, h = _float64(plan["x"]), plan["t"], float(plan["h"])
    twin = model.astype(np.float64) if hasattr(model, "astype") else copy.deepcopy(model)
    restore = _freeze_randomness(twin)
    train_kw = {"train_flg": True} if _takes_train_flg(twin) else {}

    losses: list[float] = []  # every evaluation of the loss, in the plan's order

    def f(_: Any = None) -> float:
        restore()
        losses.append(float(twin.loss(x, t, **train_kw)))
        return losses[-1]

    restore()
    analytic = dict(twin.gradient(x, t))
    runs: dict[str, Any] = {"analytic": analytic, "loss0": f(), "keys": [], "shapes": {}}
    runs["losses"] = {}
    for key, value in twin.params.items():
        start = len(losses)
        # moved in place (the book's networks read their own params) by +h then -h, restored
        perturb(f, value, h)
        runs["keys"].append(str(key))
        runs["shapes"][str(key)] = list(value.shape)
        runs["losses"][str(key)] = np.array(losses[start:], dtype=np.float64)
    return runs


_REPLAYS = {"layer": _replay_layer, "loss_layer": _replay_loss_layer, "model": _replay_model}


def replay(obj: Any, plan: Mapping[str, Any]) -> Any:
    """Run the checked object's own calls of one evaluation plan; return their raw results.

    ``plan["kind"]``: ``"layer"`` (``step`` ``"out"``: one forward pass; ``step``
    ``"grads"``: backward with ``dout``, then forward on every perturbed input and parameter),
    ``"loss_layer"`` or ``"model"`` (every parameter entry moved in place, ``loss`` called).
    Only data goes in and comes out, so the grader can run it in the student's kernel.
    """
    return _REPLAYS[str(plan["kind"])](obj, plan)


def _evaluate(obj: Any, plan: Mapping[str, Any]) -> Any:
    """:func:`replay` where ``obj`` lives: a proxy's class may run it remotely."""
    remote = getattr(type(obj), "__gradcheck_replay__", None)
    return remote(obj, dict(plan)) if remote is not None else replay(obj, plan)


def _centred(values: Sequence[float], shape: Sequence[int], h: float, what: str) -> np.ndarray:
    """Centred differences of the plan's evaluations (+h, -h per entry) in ``shape``."""
    shape = tuple(int(s) for s in shape)
    pairs = np.asarray(values, dtype=np.float64).reshape(-1)
    if pairs.size != 2 * int(np.prod(shape)):
        raise AssertionError(
            f"{what}: the gradient check expected {2 * int(np.prod(shape))} evaluations of your "
            f"code, got {pairs.size}"
        )
    return ((pairs[0::2] - pairs[1::2]) / (2 * h)).reshape(shape)


def _reduced(outs: Any, dout: np.ndarray) -> list[float]:
    """``L = sum(out * dout)`` of each evaluated output."""
    return [float(np.sum(np.asarray(o) * dout)) for o in outs]


def check_layer(
    layer: Any,
    x: np.ndarray,
    *,
    forward_kwargs: Mapping[str, Any] | None = None,
    dout: np.ndarray | None = None,
    params: Sequence[str] | None = None,
    seed: SeedLike = 0,
    h: float = CHECK_H,
    tol: float = CHECK_TOL,
) -> GradCheckReport:
    """Check a layer's ``backward`` against numerical gradients, in float64.

    layer: any object with ``forward(x, **forward_kwargs)`` and ``backward(dout)``
    whose parameters are attributes (``W``, ``b``, ``gamma``, ``beta``, or those in
    ``params``) with gradients ``dW``, ``db``, ... stored by ``backward``.
    x: the input, e.g. (N, C, H, W). The check uses the scalar
    ``L = sum(forward(x) * dout)`` with a random upstream gradient ``dout`` (seeded),
    so ``backward(dout)`` must equal ``dL/dx`` and the stored parameter gradients
    ``dL/dW``... Every evaluation runs on a fresh copy of the layer, so layers with
    state (running statistics, a random generator) give repeatable outputs.
    The layer and ``x`` are left untouched.
    """
    names = layer_param_names(layer, params)
    x64 = _float64(x)
    plan = {"kind": "layer", "names": names, "x": x64, "kw": dict(forward_kwargs or {}), "h": h}
    out = _evaluate(layer, {**plan, "step": "out"})
    if dout is None:
        dout = as_generator(seed).standard_normal(np.shape(out))
    dout = _float64(dout)
    runs = _evaluate(layer, {**plan, "step": "grads", "dout": dout})
    tiny = noise_floor_tiny(float(np.sum(np.abs(np.asarray(out) * dout))), h, tol)
    report = GradCheckReport(what=f"gradient check of {type(layer).__name__}", tol=tol)
    num_dx = _centred(_reduced(runs["x"], dout), x64.shape, h, "dx")
    report.comparisons.append(compare_gradients("dx", runs["dx"], num_dx, tol, tiny))
    for n in names:
        num = _centred(_reduced(runs["params"][n], dout), runs["shapes"][n], h, "d" + n)
        report.comparisons.append(compare_gradients("d" + n, runs["grads"].get(n), num, tol, tiny))
    return report


def check_loss_layer(
    layer: Any, x: np.ndarray, t: np.ndarray, *, h: float = CHECK_H, tol: float = CHECK_TOL
) -> GradCheckReport:
    """Check a loss layer (``forward(x, t)`` -> scalar, ``backward(1)`` -> dx) in float64."""
    x64 = _float64(x)
    runs = _evaluate(layer, {"kind": "loss_layer", "x": x64, "t": t, "h": h})
    tiny = noise_floor_tiny(float(runs["loss"]), h, tol)
    report = GradCheckReport(what=f"gradient check of {type(layer).__name__}", tol=tol)
    num = _centred(list(runs["x"]), x64.shape, h, "dx")
    report.comparisons.append(compare_gradients("dx", runs["dx"], num, tol, tiny))
    return report


def check_model(
    model: Any, x: np.ndarray, t: np.ndarray, *, h: float = CHECK_H, tol: float = CHECK_TOL
) -> GradCheckReport:
    """Check ``model.gradient(x, t)`` against numerical gradients of ``model.loss`` in float64.

    model: a network with ``params`` and ``gradient``; course_lib models are
    converted with ``model.astype(np.float64)`` (the original is untouched).
    Randomness inside the model (dropout) is replayed identically for every evaluation.
    """
    runs = _evaluate(model, {"kind": "model", "x": _float64(x), "t": t, "h": h})
    tiny = noise_floor_tiny(float(runs["loss0"]), h, tol)
    report = GradCheckReport(what=f"gradient check of {type(model).__name__}", tol=tol)
    analytic = runs["analytic"]
    for key in runs["keys"]:
        num = _centred(list(runs["losses"][key]), runs["shapes"][key], h, key)
        report.comparisons.append(compare_gradients(key, analytic.get(key), num, tol, tiny))
    return report


def _takes_train_flg(model: Any) -> bool:
    try:
        return "train_flg" in inspect.signature(model.loss).parameters
    except (TypeError, ValueError):
        return False


def _freeze_randomness(model: Any) -> Callable[[], None]:
    """Return a function that resets every layer's random generator to its current state."""
    layers = getattr(model, "layers", {})
    layers = layers.values() if isinstance(layers, Mapping) else layers
    saved = [
        (layer.rng, copy.deepcopy(layer.rng.bit_generator.state))
        for layer in layers
        if isinstance(getattr(layer, "rng", None), np.random.Generator)
    ]

    def restore() -> None:
        for rng, state in saved:
            rng.bit_generator.state = copy.deepcopy(state)

    return restore


def assert_gradients_close(report: GradCheckReport) -> None:
    """Raise ``AssertionError`` with the report's text when the check failed."""
    if not report.ok:
        raise AssertionError(str(report))
