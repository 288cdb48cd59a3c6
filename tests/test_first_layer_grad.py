"""The convolutional models skip the gradient of their input images (``input_grad=False``).

Training needs only the parameter gradients; these tests make sure skipping the
image gradient changes none of them, survives copies and saving, and can be
turned back on for anyone who wants the image gradient.
"""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.gradcheck import check_model, numerical_gradient
from course_lib.models import DeepConvNet, SimpleConvNet

SMALL_DEEP = [{"filter_num": 2, "filter_size": 3, "pad": 1, "stride": 1}] * 6


def small_simple() -> SimpleConvNet:
    conv = {"filter_num": 3, "filter_size": 3, "pad": 1, "stride": 1}
    return SimpleConvNet((1, 8, 8), conv, hidden_size=5, output_size=3, weight_init_std=0.3, seed=1)


def small_deep() -> DeepConvNet:
    return DeepConvNet((1, 12, 12), *SMALL_DEEP, hidden_size=6, output_size=3, seed=2)


MODELS = {"simple": (small_simple, (3, 1, 8, 8)), "deep": (small_deep, (2, 1, 12, 12))}


@pytest.mark.parametrize("name", list(MODELS))
def test_only_the_first_convolution_skips_the_input_gradient(name):
    net = MODELS[name][0]()
    convs = [layer for key, layer in net.layers.items() if key.startswith("Conv")]
    assert [c.input_grad for c in convs] == [False] + [True] * (len(convs) - 1)
    assert net.astype(np.float64).layers["Conv1"].input_grad is False


@pytest.mark.parametrize("name", list(MODELS))
def test_gradients_are_those_of_the_full_backward(name, rng):
    make, shape = MODELS[name]
    x = rng.standard_normal(shape).astype(np.float32)
    t = rng.integers(0, 3, shape[0])
    skipping, full = make(), make()
    full.layers["Conv1"].input_grad = True
    g_skip, g_full = skipping.gradient(x, t), full.gradient(x, t)
    assert set(g_skip) == set(skipping.params)
    for key in g_full:
        np.testing.assert_array_equal(g_skip[key], g_full[key], err_msg=key)
    assert skipping.last_loss == full.last_loss


@pytest.mark.parametrize("name", list(MODELS))
def test_gradient_check_passes_in_float64(name, rng):
    make, shape = MODELS[name]
    net = make().astype(np.float64)
    for key, p in net.params.items():  # non-zero biases, so their gradients are tested too
        if key.startswith("b"):
            p[...] = 0.1 * rng.standard_normal(p.shape)
    report = check_model(net, rng.standard_normal(shape), rng.integers(0, 3, shape[0]))
    assert report.ok, str(report)
    assert {c.name for c in report.comparisons} == set(net.params)


def test_image_gradient_can_be_turned_back_on(rng):
    net = small_simple().astype(np.float64)
    x, t = rng.standard_normal((2, 1, 8, 8)), np.array([0, 2])
    conv = net.layers["Conv1"]
    conv.input_grad = True
    net.loss(x, t)
    dout = net.last_layer.backward(1)
    for layer in reversed(list(net.layers.values())):
        dout = layer.backward(dout)
    assert dout.shape == x.shape

    def f(_: np.ndarray) -> float:
        return net.loss(x, t)

    expected = numerical_gradient(f, x)
    np.testing.assert_allclose(dout, expected, rtol=1e-5, atol=1e-8)


def test_skipping_layer_returns_none_and_saved_params_reload(tmp_path, rng):
    net = small_simple()
    x, t = rng.standard_normal((2, 1, 8, 8)).astype(np.float32), np.array([1, 0])
    net.loss(x, t)
    dout = net.last_layer.backward(1)
    for layer in reversed(list(net.layers.values())):
        dout = layer.backward(dout)
    assert dout is None  # the book's loop simply ends with the first layer
    net.save_params(tmp_path / "p.npz")
    other = small_simple()
    other.load_params(tmp_path / "p.npz")
    assert other.layers["Conv1"].input_grad is False
    np.testing.assert_array_equal(other.predict(x), net.predict(x))
