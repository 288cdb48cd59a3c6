"""course_lib.grading.checks: the messages students read, and that they cannot be fooled."""

import numpy as np
import pytest

from course_lib.grading import checks
from course_lib.layers import Affine, Relu
from course_lib.optimizers import SGD, Momentum


class MyRelu:
    def __init__(self):
        self.mask = None

    def forward(self, x):
        self.mask = x <= 0
        return np.where(self.mask, 0, x)

    def backward(self, dout):
        return np.where(self.mask, 0, dout)


class SignErrorAffine:
    def __init__(self, W, b):
        self.W, self.b = W, b

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW = -(self.x.T @ dout)  # sign error
        self.db = dout.sum(axis=0)
        return dout @ self.W.T


def test_check_close_messages():
    checks.check_close(np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    with pytest.raises(AssertionError, match=r"out\[1\]: yours 2.5, expected 2 "):
        checks.check_close(np.array([1.0, 2.5]), np.array([1.0, 2.0]), "out")
    with pytest.raises(AssertionError, match=r"shape \(4,\), expected \(2, 2\) \(same size"):
        checks.check_close(np.zeros(4), np.zeros((2, 2)))
    with pytest.raises(AssertionError, match="None"):
        checks.check_close(None, np.zeros(2))
    # values that differ but look the same at 6 digits are printed with more
    with pytest.raises(AssertionError, match=r"yours 1.000001, expected 1 "):
        checks.check_close(np.float64(1.000001), np.float64(1.0), rtol=0, atol=0)


def test_layer_gradients_pass_and_fail_with_actionable_text(rng):
    x = rng.standard_normal((3, 4))
    checks.check_layer_gradients(MyRelu(), x + np.sign(x) * 0.1)
    W, b = rng.standard_normal((4, 2)), rng.standard_normal(2)
    with pytest.raises(AssertionError) as err:
        checks.check_layer_gradients(SignErrorAffine(W, b), x)
    text = str(err.value)
    assert "dW" in text and "yours" in text and "numerical" in text and "sign error" in text


def test_layer_matches_reference(rng):
    x = rng.standard_normal((3, 4))
    checks.check_layer_matches(MyRelu(), Relu(), x)
    W, b = rng.standard_normal((4, 2)), rng.standard_normal(2)
    with pytest.raises(AssertionError, match="dW"):
        checks.check_layer_matches(SignErrorAffine(W, b), Affine(W, b), x)


def test_reference_implementation_is_rejected(rng):
    with pytest.raises(AssertionError, match="reference implementation"):
        checks.check_layer_gradients(Relu(), rng.standard_normal((2, 3)))

    class Sneaky(Relu):  # a subclass of the reference is not one's own either
        pass

    with pytest.raises(AssertionError, match="reference implementation"):
        checks.check_own_implementation(Sneaky)


def test_check_optimizer(rng):
    class MySGD:
        def __init__(self, lr=0.01):
            self.lr = lr

        def update(self, params, grads):
            for k in params:
                params[k] -= self.lr * grads[k]

    class HalfSGD(MySGD):
        def update(self, params, grads):
            for k in params:
                params[k] -= 0.5 * self.lr * grads[k]

    checks.check_optimizer(MySGD(0.1), SGD(0.1))
    with pytest.raises(AssertionError, match="after step 1"):
        checks.check_optimizer(HalfSGD(0.1), SGD(0.1))
    with pytest.raises(AssertionError):
        checks.check_optimizer(MySGD(0.1), Momentum(0.1))


def test_check_function_and_errors_inside_student_code():
    def my_square(x):
        return x * x

    def broken(x):
        raise ValueError("oops")

    checks.check_function(my_square, np.square, np.arange(3.0))
    with pytest.raises(AssertionError, match="ValueError: oops"):
        checks.check_function(broken, np.square, np.arange(3.0))
    # NotImplementedError (the student has not started) passes through unchanged
    with pytest.raises(NotImplementedError):
        checks.check_function(_not_started, np.square, 1.0)


def _not_started(x):
    raise NotImplementedError()
