"""The book's own scripts run unchanged on course_lib and print the book's figures.

Needs a checkout of github.com/oreilly-japan/deep-learning-from-scratch in $BOOK_REPO
(nothing of the book is copied into this repository) and the real MNIST files.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
BOOK = Path(os.environ["BOOK_REPO"]) if os.environ.get("BOOK_REPO") else None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        BOOK is None or not (BOOK / "common" / "layers.py").is_file(),
        reason="set BOOK_REPO to a checkout of oreilly-japan/deep-learning-from-scratch",
    ),
]


def _harness():
    spec = importlib.util.spec_from_file_location(
        "book_compat", REPO / "scripts" / "book_compat.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    scripts = [
        "ch04/gradient_simplenet.py",
        "ch05/buy_apple_orange.py",
        "ch05/gradient_check.py",
        "ch06/optimizer_compare_naive.py",
        "ch07/gradient_check.py",
        "ch07/visualize_filter.py",
        "ch08/half_float_network.py",
    ]
    out = tmp_path_factory.mktemp("book") / "runs.json"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "book_compat.py"), str(BOOK),
         "--data-dir", str(data_dir), "--json", str(out), "--scripts", *scripts],
        check=False, timeout=1500,
    )  # fmt: skip
    results = json.loads(out.read_text())
    by = {}
    for r in results:
        by.setdefault(r["script"], {})[r["backend"]] = r
    return by, _harness()


def figures(runs, script):
    by, harness = runs
    pair = by[script]
    for backend in ("book", "course_lib"):
        assert pair[backend]["status"] == "ok", pair[backend]["stderr_tail"]
    return harness.figures(pair["book"]["stdout"]), harness.figures(pair["course_lib"]["stdout"])


def test_every_script_runs(runs):
    by, _ = runs
    failed = {s: b for s, p in by.items() for b, r in p.items() if r["status"] != "ok"}
    assert not failed


@pytest.mark.parametrize(
    "script",
    ["ch04/gradient_simplenet.py", "ch05/buy_apple_orange.py", "ch08/half_float_network.py"],
)
def test_same_figures(runs, script):
    book, ours = figures(runs, script)
    assert [t for t, _ in book] == [t for t, _ in ours]
    for (text, a), (_, b) in zip(book, ours):
        np.testing.assert_allclose(b, a, rtol=1e-6, err_msg=text)


@pytest.mark.parametrize("script", ["ch05/gradient_check.py", "ch07/gradient_check.py"])
def test_gradient_checks_agree_at_least_as_well_as_the_books(runs, script):
    book, ours = figures(runs, script)
    assert [t for t, _ in book] == [t for t, _ in ours]
    for (text, a), (_, b) in zip(book, ours):
        # mean |backprop - numerical| per parameter: tiny in both, never worse than the book
        assert b[-1] < 1e-5 and b[-1] <= max(10 * a[-1], 1e-9), text


def test_book_weights_load_and_give_the_books_predictions(tmp_path, data_dir):
    """The book's trained DeepConvNet, converted to .npz, predicts what the book's code predicts."""
    converted = tmp_path / "deep.npz"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "convert_pickle_params.py"),
         str(BOOK / "ch08" / "deep_convnet_params.pkl"), str(converted)],
        check=True, capture_output=True,
    )  # fmt: skip
    from course_lib.datasets import load_mnist
    from course_lib.models import DeepConvNet

    (_, _), (x, _) = load_mnist(flatten=False, data_dir=data_dir, progress=False)
    x = x[:500]
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys, numpy as np; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/ch08'];"
        "from deep_convnet import DeepConvNet; net = DeepConvNet();"
        "net.load_params(sys.argv[1] + '/ch08/deep_convnet_params.pkl');"
        "np.save(sys.argv[3], net.predict(np.load(sys.argv[2]), train_flg=False))"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(BOOK), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        check=True, cwd=BOOK / "ch08",
    )  # fmt: skip
    book_scores = np.load(tmp_path / "y.npy")
    net = DeepConvNet(dtype=np.float64)
    net.load_params(converted)
    ours = net.predict(x.astype(np.float64), train_flg=False)
    np.testing.assert_allclose(ours, book_scores, rtol=1e-9, atol=1e-9)
    net32 = DeepConvNet()
    net32.load_params(converted)
    np.testing.assert_array_equal(net32.predict(x).argmax(axis=1), book_scores.argmax(axis=1))
