"""Optimizers against steps computed by hand."""

import numpy as np
import pytest

from course_lib.optimizers import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop, get_optimizer


def run(opt, steps, w0=1.0, grads=(0.5, -1.0, 2.0)):
    params = {"w": np.array([w0])}
    ident = id(params["w"])
    out = []
    for g in grads[:steps]:
        opt.update(params, {"w": np.array([g])})
        out.append(float(params["w"][0]))
    assert id(params["w"]) == ident  # updated in place
    return out


def test_sgd():
    assert run(SGD(lr=0.1), 2) == pytest.approx([1 - 0.05, 1 - 0.05 + 0.1])


def test_momentum():
    # v1 = -0.1*0.5 = -0.05 ; w1 = 0.95
    # v2 = 0.9*-0.05 - 0.1*-1 = 0.055 ; w2 = 1.005
    assert run(Momentum(lr=0.1, momentum=0.9), 2) == pytest.approx([0.95, 1.005])


def test_nesterov():
    # w1 = 1 + 0.81*0 - 1.9*0.1*0.5 = 0.905 ; v1 = -0.05
    # w2 = 0.905 + 0.81*-0.05 - 1.9*0.1*-1 = 1.0545 ; v2 = 0.9*-0.05 + 0.1 = 0.055
    assert run(Nesterov(lr=0.1, momentum=0.9), 2) == pytest.approx([0.905, 1.0545])


def test_adagrad():
    # h1 = 0.25 ; w1 = 1 - 0.1*0.5/0.5 = 0.9 ; h2 = 1.25 ; w2 = 0.9 + 0.1/sqrt(1.25)
    assert run(AdaGrad(lr=0.1), 2) == pytest.approx([0.9, 0.9 + 0.1 / np.sqrt(1.25)], rel=1e-6)


def test_rmsprop():
    # h1 = 0.01*0.25 = 0.0025 ; w1 = 1 - 0.1*0.5/(0.05 + 1e-7)
    w1 = 1 - 0.05 / (0.05 + 1e-7)
    h2 = 0.99 * 0.0025 + 0.01 * 1.0
    w2 = w1 + 0.1 / (np.sqrt(h2) + 1e-7)
    assert run(RMSprop(lr=0.1, decay_rate=0.99), 2) == pytest.approx([w1, w2], rel=1e-9)


def test_adam():
    # step 1: m = 0.05, v = 0.00025, lr_t = 0.1*sqrt(0.001)/0.1 ; w -= lr_t*m/sqrt(v) = 0.1
    out = run(Adam(lr=0.1, beta1=0.9, beta2=0.999), 2)
    assert out[0] == pytest.approx(0.9, rel=1e-5)
    m2 = 0.05 + 0.1 * (-1.0 - 0.05)
    v2 = 0.00025 + 0.001 * (1.0 - 0.00025)
    lr2 = 0.1 * np.sqrt(1 - 0.999**2) / (1 - 0.9**2)
    assert out[1] == pytest.approx(0.9 - lr2 * m2 / (np.sqrt(v2) + 1e-7), rel=1e-6)


@pytest.mark.parametrize("cls", [SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam])
def test_keeps_float32_and_handles_python_scalars(cls):
    params = {"W": np.ones((2, 2), np.float32)}
    cls().update(params, {"W": np.ones((2, 2), np.float32)})
    assert params["W"].dtype == np.float32
    scalars = {"x": -7.0, "y": 2.0}  # the book's optimizer_compare_naive.py uses floats
    opt = cls()
    for _ in range(3):
        opt.update(scalars, {"x": 0.1 * scalars["x"], "y": 2 * scalars["y"]})
    assert np.isfinite(scalars["x"]) and np.isfinite(scalars["y"])


def test_get_optimizer():
    assert isinstance(get_optimizer("adam", lr=0.1), Adam)
    opt = SGD()
    assert get_optimizer(opt) is opt
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'"):
        get_optimizer("adamw")
