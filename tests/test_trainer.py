"""The Trainer: the book's API, reproducibility, history, optimizers by name or object."""

import numpy as np
import pytest

from course_lib.models import TwoLayerNet
from course_lib.optimizers import Adam
from course_lib.trainer import Trainer


def blobs(rng, n=300):
    centers = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    t = rng.integers(0, 3, n)
    x = (centers[t] + 0.5 * rng.standard_normal((n, 2))).astype(np.float32)
    return x, t


def make(seed=0, **kw):
    rng = np.random.default_rng(99)
    x, t = blobs(rng)
    net = TwoLayerNet(2, 16, 3, weight_init_std=0.5, seed=seed)
    kw.setdefault("progress", False)
    kw.setdefault("verbose", False)
    return net, Trainer(net, x[:200], t[:200], x[200:], t[200:], seed=seed, **kw)


def test_trains_and_records_history():
    _, trainer = make(epochs=5, mini_batch_size=32, optimizer="Adam", optimizer_param={"lr": 0.05})
    history = trainer.train()
    assert len(history["train_acc"]) == len(history["test_acc"]) == 5
    assert len(history["loss"]) == 5 * 7  # ceil(200 / 32) steps per epoch
    assert history["test_acc"][-1] > 0.9
    assert trainer.train_acc_list is history["train_acc"]


def test_reproducible_with_a_seed():
    runs = []
    for _ in range(2):
        net, trainer = make(seed=3, epochs=2, optimizer="SGD", optimizer_param={"lr": 0.1})
        trainer.train()
        runs.append((trainer.train_loss_list, net.params["W1"].copy()))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_optimizer_object_and_default_param_not_shared():
    opt = Adam(lr=0.01)
    _, t1 = make(optimizer=opt)
    assert t1.optimizer is opt
    _, t2 = make()
    _, t3 = make()
    assert t2.optimizer is not t3.optimizer and t2.optimizer.lr == 0.01


def test_evaluate_sample_num_and_verbose_output(capsys):
    _, trainer = make(epochs=1, evaluate_sample_num_per_epoch=50, verbose=True, optimizer="adam")
    trainer.train()
    out = capsys.readouterr().out
    assert "=== epoch:1, train acc:" in out and "test acc:" in out


def test_diverging_training_stops_with_a_clear_error():
    _, trainer = make(epochs=3, optimizer="SGD", optimizer_param={"lr": 1e6})
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        with np.errstate(all="ignore"):
            trainer.train()


def test_rejects_mismatched_data():
    net = TwoLayerNet(2, 3, 3)
    with pytest.raises(ValueError, match="differ in length"):
        Trainer(net, np.zeros((5, 2)), np.zeros(4), np.zeros((2, 2)), np.zeros(2))
