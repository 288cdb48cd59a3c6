"""Activation and loss functions: values, batching, extreme inputs."""

import numpy as np
import pytest

from course_lib.functions import (
    cross_entropy_error,
    numerical_diff,
    relu,
    sigmoid,
    softmax,
    softmax_loss,
    step_function,
)


def test_sigmoid_known_values_and_extremes():
    x = np.array([-1e4, -1.0, 0.0, 1.0, 1e4])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = sigmoid(x)
    np.testing.assert_allclose(y, [0.0, 1 / (1 + np.e), 0.5, 1 / (1 + np.exp(-1)), 1.0])
    assert sigmoid(np.float32(3.0)).dtype == np.float32


def test_relu_and_step():
    x = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(relu(x), [0.0, 0.0, 3.0])
    np.testing.assert_array_equal(step_function(x), [0, 0, 1])


@pytest.mark.parametrize("scale", [1.0, 1e4, -1e4])
def test_softmax_batched_and_stable(scale):
    x = scale * np.array([[1.0, 2.0, 3.0], [0.0, 0.0, -1.0]])
    y = softmax(x)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=1), 1.0)
    single = softmax(x[0])
    np.testing.assert_allclose(single, y[0])


def test_softmax_matches_definition():
    x = np.array([0.3, 2.9, 4.0])
    np.testing.assert_allclose(softmax(x), np.exp(x) / np.exp(x).sum())


def test_cross_entropy_one_hot_and_labels_agree():
    y = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]])
    t_labels = np.array([1, 0])
    t_onehot = np.eye(3)[t_labels]
    expected = -(np.log(0.7 + 1e-7) + np.log(0.5 + 1e-7)) / 2  # the book's delta of 1e-7
    assert cross_entropy_error(y, t_labels) == pytest.approx(expected, rel=1e-12)
    assert cross_entropy_error(y, t_onehot) == pytest.approx(expected, rel=1e-12)
    assert cross_entropy_error(y[0], t_onehot[0]) == pytest.approx(-np.log(0.7 + 1e-7))
    assert cross_entropy_error(y[:1], np.array([[1]])) == pytest.approx(-np.log(0.7 + 1e-7))


def test_cross_entropy_never_takes_log_of_zero():
    y = np.array([[1.0, 0.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = cross_entropy_error(y, np.array([1]))
    assert loss == pytest.approx(-np.log(1e-7))  # finite: the book's delta


@pytest.mark.parametrize("scale", [1e2, 1e4, 1e6])
def test_softmax_loss_finite_on_extreme_logits(scale):
    x = scale * np.array([[1.0, -1.0, 0.5], [-3.0, 2.0, 1.0]])
    loss = softmax_loss(x, np.array([1, 0]))
    assert np.isfinite(loss)
    # the wrong class is 2*scale below the best one in row 0, 5*scale in row 1
    assert loss == pytest.approx((2 * scale + 5 * scale) / 2, rel=1e-6)


def test_numerical_diff_is_central():
    # central difference of x^3 at 2 with h: 12 + h^2 exactly
    assert numerical_diff(lambda x: x**3, 2.0, h=1e-2) == pytest.approx(12.0 + 1e-4, rel=1e-12)
