"""Training recipes: the data, the helpers and a tiny real run (fast)."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace

import numpy as np
import pytest

from course_lib import recipes
from course_lib.cli import main
from course_lib.recipes import (
    RECIPES,
    build_model,
    get_recipe,
    lr_at,
    random_hflip,
    random_shift,
    run_recipe,
)


def test_recipes_cover_the_issue_targets():
    targets = {name: r.target for name, r in RECIPES.items()}
    assert targets["simple_convnet_mnist"] >= 0.990
    assert targets["deep_convnet_mnist"] >= 0.994
    assert targets["fashion_cnn"] >= 0.91
    assert targets["fashion_fc"] >= 0.88
    for r in RECIPES.values():
        assert r.dataset in ("mnist", "fashion-mnist")
        assert r.model in recipes.MODEL_BUILDERS


def test_unknown_recipe_names_the_known_ones():
    with pytest.raises(ValueError, match="simple_convnet_mnist"):
        get_recipe("resnet")


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_builds_a_float32_model_of_the_right_shape(name):
    r = RECIPES[name]
    net = build_model(r)
    shape = (3, 784) if r.flatten else (3, 1, 28, 28)
    out = net.predict(np.zeros(shape, np.float32))
    assert out.shape == (3, 10)
    assert out.dtype == np.float32
    assert all(p.dtype == np.float32 for p in net.params.values())


def test_build_model_is_seeded():
    r = RECIPES["fashion_cnn"]
    a, b, c = build_model(r, seed=1), build_model(r, seed=1), build_model(r, seed=2)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["W1"], c.params["W1"])


def test_cosine_schedule_runs_from_lr_to_the_floor():
    r = replace(RECIPES["simple_convnet_mnist"], lr=1e-3, lr_final_ratio=0.01, epochs=10)
    lrs = [lr_at(r, e) for e in range(10)]
    assert lrs[0] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-5)
    assert all(a > b for a, b in itertools.pairwise(lrs))
    assert lr_at(r, 0, epochs=1) == pytest.approx(1e-3)
    const = replace(r, lr_schedule="constant")
    assert {lr_at(const, e) for e in range(10)} == {1e-3}
    with pytest.raises(ValueError, match="cosine"):
        lr_at(replace(r, lr_schedule="step"), 1)


def test_random_shift_translates_each_image_within_bounds():
    rng = np.random.default_rng(0)
    x = np.zeros((20, 1, 12, 12), np.float32)
    x[:, :, 4:8, 4:8] = rng.random((20, 1, 4, 4), dtype=np.float32) + 0.5  # away from borders
    before = x.copy()
    out = random_shift(x, 2, np.random.default_rng(1))
    np.testing.assert_array_equal(x, before)  # input untouched
    assert out.shape == x.shape and out.dtype == x.dtype
    seen = set()
    for img, src in zip(out, x):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if np.array_equal(img, np.roll(src, (dy, dx), axis=(1, 2)))
        ]
        assert matches, "every output must be its input moved by at most 2 pixels"
        seen.add(matches[0])
    assert len(seen) > 5  # the offsets really vary
    assert random_shift(x, 0, rng) is x


def test_random_hflip_mirrors_about_half():
    rng = np.random.default_rng(0)
    x = rng.random((200, 1, 5, 5)).astype(np.float32)
    out = random_hflip(x, np.random.default_rng(3))
    flipped = [np.array_equal(o, i[..., ::-1]) for o, i in zip(out, x)]
    kept = [np.array_equal(o, i) for o, i in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 60 < sum(flipped) < 140


def test_run_recipe_rejects_bad_sizes(data_dir):
    with pytest.raises(ValueError, match="epochs"):
        run_recipe("fashion_fc", epochs=0, data_dir=data_dir, log=None)
    with pytest.raises(ValueError, match="batch size"):
        run_recipe("fashion_fc", train_size=50, epochs=1, data_dir=data_dir, log=None)


def test_tiny_run_is_reproducible_and_recorded(data_dir, tmp_path):
    kw = dict(epochs=2, train_size=300, test_size=200, data_dir=data_dir, log=None)
    a = run_recipe("fashion_fc", out=tmp_path / "a.json", save_params=tmp_path / "a.npz", **kw)
    b = run_recipe("fashion_fc", **kw)
    c = run_recipe("fashion_fc", seed=7, **kw)
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert a["test_accuracy"] == b["test_accuracy"]
    assert [h["train_loss"] for h in a["history"]] != [h["train_loss"] for h in c["history"]]
    saved = json.loads((tmp_path / "a.json").read_text())
    assert saved["recipe"]["name"] == "fashion_fc"
    assert saved["shortened"] is True
    assert saved["train_size"] == 300 and saved["test_size"] == 200
    assert len(saved["history"]) == 2
    assert saved["history"][0]["lr"] > saved["history"][1]["lr"]
    assert 0.0 <= saved["test_accuracy"] <= 1.0 and math.isfinite(saved["wall_time_s"])
    assert saved["machine"]["numpy"] == np.__version__
    assert (tmp_path / "a.npz").is_file()
    net = build_model(RECIPES["fashion_fc"])
    net.load_params(tmp_path / "a.npz")
    (x, t), _ = recipes._load(RECIPES["fashion_fc"], data_dir)
    assert net.accuracy(x[:300], t[:300]) > 0.5  # the saved weights are the trained ones


def test_cli_lists_recipes_and_rejects_unknown_ones(capsys):
    assert main(["train", "--list"]) == 0
    listed = capsys.readouterr().out
    for name in RECIPES:
        assert name in listed
    assert main(["train", "no_such_recipe"]) == 2
    assert "unknown recipe 'no_such_recipe'" in capsys.readouterr().err


THREAD_VARS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def test_cli_shortened_run_sets_threads_in_a_child_and_writes_a_record(
    data_dir, tmp_path, monkeypatch, capfd
):
    monkeypatch.setenv("COURSE_LIB_DATA", str(data_dir))
    monkeypatch.delenv("_COURSE_LIB_TRAIN_CHILD", raising=False)
    for var in THREAD_VARS:  # another test may have left them set; a child is then unneeded
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "run.json"
    args = ["fashion_fc", "--epochs", "1", "--train-size", "200", "--test-size", "100"]
    assert main(["train", *args, "--threads", "1", "--out", str(out)]) == 0
    assert "running in a child process with" in capfd.readouterr().out
    record = json.loads(out.read_text())
    assert record["machine"]["env"]["OPENBLAS_NUM_THREADS"] == "1"  # set before BLAS loaded
    assert record["epochs_run"] == 1
