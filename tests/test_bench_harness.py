"""The benchmark harness runs end to end (``course-lib bench --quick``); no timing assertions."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from course_lib.cli import main
from course_lib.cli.bench import blas_environment, find_benchmarks_dir

BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))

import bench_harness  # noqa: E402
import book_baseline  # noqa: E402


def test_bench_quick_runs_every_model_and_writes_json_and_chart(tmp_path, capsys):
    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "bench.json").read_text())
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["config"]["quick"] is True
    assert report["machine"]["threads"] == 2
    assert report["machine"]["worker_env"]["OPENBLAS_NUM_THREADS"] == "2"
    torch_ok = report["machine"]["torch"] is not None
    for model in bench_harness.MODELS:
        per_impl = report["results"][model]
        for impl in ("course_lib", "book"):
            r = per_impl[impl]
            assert "error" not in r, r
            assert r["steps_timed"] == 2
            assert r["step_median_ms"] > 0 and r["peak_rss_mb"] > 0
            assert r["step_alloc_peak_mb"] > 0  # tracemalloc saw NumPy's temporaries
            assert r["infer_images"] == 200 and r["infer_time_s"] > 0
        assert ("torch" in per_impl) == torch_ok
        assert report["ratios"][model]["speedup_vs_book"] > 0
        if torch_ok:
            assert report["ratios"][model]["course_lib_vs_torch"] > 0
    assert set(report["ratios"]["SimpleConvNet"]["targets_met"]) == (
        {"vs_torch", "vs_book"} if torch_ok else {"vs_book"}
    )
    ng = report["numgrad"]
    assert "error" not in ng, ng
    assert ng["n_params"] == 784 * 5 + 5 + 5 * 10 + 10
    assert ng["ratio"] > 1  # the numerical gradient is the slow one
    assert "course_lib / torch" in printed or not torch_ok
    assert "book / course_lib" in printed


def test_missing_torch_is_skipped_with_a_clear_message(tmp_path, monkeypatch):
    import torch_nets

    monkeypatch.setattr(torch_nets, "torch_available", lambda: (False, "PyTorch is not installed"))
    lines: list[str] = []
    report = bench_harness.run_benchmarks(
        quick=True,
        models=["TwoLayerNet"],
        inference=False,
        numgrad=False,
        out_dir=tmp_path,
        log=lines.append,
    )
    assert any("PyTorch skipped: PyTorch is not installed" in ln for ln in lines)
    assert set(report["results"]["TwoLayerNet"]) == {"course_lib", "book"}
    assert "course_lib_vs_torch" not in report["ratios"]["TwoLayerNet"]


def test_bad_arguments_are_refused(capsys):
    assert main(["bench", "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown model"):
        bench_harness.run_benchmarks(models=["ResNet"], log=lambda _: None)


def test_ratios_and_targets_are_computed_from_medians():
    results = {
        "SimpleConvNet": {
            "course_lib": {"step_median_ms": 10.0},
            "book": {"step_median_ms": 100.0},
            "torch": {"step_median_ms": 12.5},
        },
        "DeepConvNet": {
            "course_lib": {"step_median_ms": 40.0},
            "book": {"step_median_ms": 120.0},
            "torch": {"step_median_ms": 25.0},
        },
    }
    r = bench_harness.compute_ratios(results)
    assert r["SimpleConvNet"]["course_lib_vs_torch"] == pytest.approx(0.8)
    assert r["SimpleConvNet"]["speedup_vs_book"] == pytest.approx(10.0)
    assert r["SimpleConvNet"]["targets_met"] == {"vs_torch": True, "vs_book": True}
    assert r["DeepConvNet"]["course_lib_vs_torch"] == pytest.approx(1.6)
    assert r["DeepConvNet"]["targets_met"] == {"vs_torch": False, "vs_book": False}


def test_blas_environment_options():
    base = {"OPENBLAS_CORETYPE": "Haswell", "PATH": "/bin"}
    assert blas_environment(base, None, "inherit") == base
    detect = blas_environment(base, 2, "detect")
    assert "OPENBLAS_CORETYPE" not in detect
    assert detect["OPENBLAS_NUM_THREADS"] == detect["OMP_NUM_THREADS"] == "2"
    assert blas_environment(base, None, "SkylakeX")["OPENBLAS_CORETYPE"] == "SkylakeX"
    assert base["OPENBLAS_CORETYPE"] == "Haswell"  # not modified


def test_benchmarks_folder_is_found(monkeypatch, tmp_path):
    assert find_benchmarks_dir() == BENCH_DIR
    monkeypatch.setenv("COURSE_LIB_BENCHMARKS", str(tmp_path))  # empty: falls through
    assert find_benchmarks_dir() == BENCH_DIR


# ----------------------------------------------------------------------------- the baseline


def _numgrad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        fp = f()
        x[i] = old - h
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g


@pytest.mark.parametrize(("stride", "pad"), [(1, 0), (1, 1), (2, 1), (1, 2)])
def test_book_baseline_convolution_matches_course_lib_and_its_gradients(rng, stride, pad):
    from course_lib.layers import Convolution

    x = rng.standard_normal((2, 3, 7, 6))
    W, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    book, ours = book_baseline.Convolution(W, b, stride, pad), Convolution(W, b, stride, pad)
    out = book.forward(x)
    np.testing.assert_allclose(out, ours.forward(x), rtol=1e-12, atol=1e-12)
    d = rng.standard_normal(out.shape)
    dx = book.backward(d)
    np.testing.assert_allclose(dx, ours.backward(d), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(book.dW, ours.dW, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(_numgrad(lambda: np.sum(book.forward(x) * d), x), dx, atol=1e-6)


@pytest.mark.parametrize(("size", "stride"), [(2, 2), (3, 1)])
def test_book_baseline_pooling_matches_course_lib(rng, size, stride):
    from course_lib.layers import Pooling

    x = rng.permutation(2 * 3 * 6 * 6).reshape(2, 3, 6, 6).astype(np.float64)
    book, ours = book_baseline.Pooling(size, size, stride), Pooling(size, size, stride)
    out = book.forward(x)
    np.testing.assert_array_equal(out, ours.forward(x))
    d = rng.standard_normal(out.shape)
    np.testing.assert_allclose(book.backward(d), ours.backward(d))


@pytest.mark.parametrize("model", list(book_baseline.MODELS))
def test_book_baseline_networks_are_float64_and_learn(rng, model):
    net = book_baseline.MODELS[model](seed=0)
    shape = (4, 784) if model == "TwoLayerNet" else (4, 1, 28, 28)
    x, t = rng.random(shape), rng.integers(0, 10, 4)
    opt = book_baseline.Adam(lr=0.003)
    first = net.loss(x, t)
    for _ in range(2 if model == "DeepConvNet" else 6):
        grads = net.gradient(x, t)
        assert set(grads) == set(net.params)
        assert all(
            g.dtype == np.float64 and g.shape == net.params[k].shape for k, g in grads.items()
        )
        opt.update(net.params, grads)
    if model != "DeepConvNet":  # dropout makes single losses noisy
        assert net.loss(x, t) < first
