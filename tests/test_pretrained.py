"""The pretrained ``mnist-cnn`` shipped in course_lib/pretrained: files, loader, accuracy."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import course_lib.pretrained as pretrained
from course_lib.datasets import load_mnist
from course_lib.models import Sequential
from course_lib.widgets import ModelAdapter, preprocess_drawing
from course_lib.widgets.synthetic import redraw_on_canvas

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED_DIR = Path(pretrained.__file__).parent


@pytest.fixture(scope="module")
def mnist_test(data_dir) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 MNIST test images (N, 28, 28) float32 in [0, 1] and labels (N,)."""
    _, (x, t) = load_mnist(
        normalize=True, flatten=False, data_dir=data_dir, download=False, progress=False
    )
    return x.reshape(-1, 28, 28), t


# ---------------------------------------------------------------- the shipped files
def test_model_is_listed_and_described():
    assert "mnist-cnn" in pretrained.available()
    info = pretrained.info("mnist-cnn")
    assert info["format_version"] == pretrained.FORMAT_VERSION
    assert info["input_shape"] == [1, 28, 28]
    assert info["recipe"]["script"] == "scripts/train_pretrained.py"
    assert (ROOT / info["recipe"]["script"]).is_file()
    assert "60,000" in info["recipe"]["data"], "the shipped model must come from a full run"
    metrics = info["metrics"]
    assert metrics["mnist_test_samples"] == 10_000
    assert metrics["mnist_test_accuracy"] >= 0.99
    assert metrics["redrawn_test_accuracy"] >= 0.97
    assert metrics["training_time_s"] > 0
    assert len(metrics["history"]) == info["recipe"]["epochs"]


def test_weights_file_is_small_plain_npz_and_matches_its_description():
    info = pretrained.info("mnist-cnn")
    path = PRETRAINED_DIR / "mnist-cnn.npz"
    data = path.read_bytes()
    assert len(data) < 1_000_000
    assert info["weights"]["bytes"] == len(data)
    assert info["weights"]["sha256"] == hashlib.sha256(data).hexdigest()
    with np.load(path, allow_pickle=False) as npz:
        assert all(npz[k].dtype == np.float16 for k in npz.files)
        n_params = sum(npz[k].size for k in npz.files)
    assert n_params == info["parameters"]


def test_load_gives_a_course_lib_network():
    net = pretrained.load("mnist-cnn")
    assert isinstance(net, Sequential)
    assert net.params["W1"].dtype == np.float32
    assert net.params["W1"].ndim == 4
    x = np.zeros((3, 1, 28, 28), dtype=np.float32)
    assert net.predict(x).shape == (3, 10)
    net64 = pretrained.load("mnist-cnn", dtype=np.float64)
    assert net64.params["W1"].dtype == np.float64
    np.testing.assert_allclose(net64.params["W1"], net.params["W1"], rtol=1e-6)


def test_unknown_model_names_the_available_ones():
    with pytest.raises(pretrained.PretrainedError, match="mnist-cnn"):
        pretrained.load("imagenet-resnet")


def test_build_network_rejects_unknown_layers_and_is_seeded():
    with pytest.raises(pretrained.PretrainedError, match="unknown layer type 'Softmax'"):
        pretrained.build_network([{"type": "Softmax"}])
    arch = pretrained.info("mnist-cnn")["architecture"]
    a = pretrained.build_network(arch, seed=1)
    b = pretrained.build_network(arch, seed=1)
    np.testing.assert_array_equal(a.params["W3"], b.params["W3"])


# ---------------------------------------------------------------- accuracy (real data)
@pytest.mark.slow
def test_mnist_test_accuracy_is_as_recorded(mnist_test):
    x, t = mnist_test
    net = pretrained.load("mnist-cnn")
    acc = net.accuracy(x.reshape(-1, 1, 28, 28), t, batch_size=500)
    assert acc >= 0.99
    assert acc == pytest.approx(pretrained.info("mnist-cnn")["metrics"]["mnist_test_accuracy"],
                                abs=1e-4)  # fmt: skip


@pytest.mark.slow
def test_redrawn_digits_are_recognised(mnist_test):
    """MNIST test digits redrawn on a 280x280 canvas at random scales, places and pen widths."""
    x, t = mnist_test
    rng = np.random.default_rng(2024)  # not the seed the training script measured with
    picks = rng.choice(len(x), size=1000, replace=False)
    images = np.stack([preprocess_drawing(redraw_on_canvas(x[i], rng)) for i in picks])
    adapter = ModelAdapter(pretrained.load("mnist-cnn"))
    predicted = adapter.probabilities(images).argmax(axis=1)
    accuracy = float(np.mean(predicted == t[picks]))
    assert accuracy >= 0.97, f"redrawn-digit accuracy {accuracy:.3f} < 0.97"


@pytest.mark.slow
def test_training_script_quick_run(tmp_path, data_dir):
    out = tmp_path / "pretrained"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_pretrained.py"), "--quick",
         "--out", str(out), "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    info = json.loads((out / "mnist-cnn.json").read_text())
    assert info["recipe"]["epochs"] == 1
    assert 0.0 < info["metrics"]["mnist_test_accuracy"] <= 1.0
    with np.load(out / "mnist-cnn.npz", allow_pickle=False) as npz:
        assert set(npz.files) == set(pretrained.load("mnist-cnn").params)
