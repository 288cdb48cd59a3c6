"""Numerical gradients and the gradient-check report."""

import numpy as np
import pytest

from course_lib.gradcheck import check_layer, compare_gradients, numerical_gradient, rel_error
from course_lib.layers import Affine


def test_numerical_gradient_any_shape_and_restores_x(rng):
    x = rng.standard_normal((2, 3, 4))
    before = x.copy()
    grad = numerical_gradient(lambda v: np.sum(v**2), x)
    np.testing.assert_allclose(grad, 2 * before, rtol=1e-7)
    np.testing.assert_array_equal(x, before)


def test_numerical_gradient_book_style_closure(rng):
    """f may ignore its argument and read x through another reference (the book's nets do)."""
    W = rng.standard_normal((3, 2))
    grad = numerical_gradient(lambda _: float(np.sum(np.sin(W))), W)
    np.testing.assert_allclose(grad, np.cos(W), rtol=1e-6)


def test_numerical_gradient_restores_x_when_f_raises():
    x = np.array([1.0, 2.0])

    def f(v):
        if v[0] != 1.0:
            raise RuntimeError("boom")
        return 0.0

    with pytest.raises(RuntimeError):
        numerical_gradient(f, x)
    np.testing.assert_array_equal(x, [1.0, 2.0])


def test_numerical_gradient_rejects_integers():
    with pytest.raises(TypeError, match="float"):
        numerical_gradient(lambda v: 0.0, np.array([1, 2]))


def test_rel_error():
    assert rel_error(np.array([1.0]), np.array([1.0])) == 0.0
    assert rel_error(np.array([1.0]), np.array([3.0])) == pytest.approx(0.5)
    assert rel_error(np.array([0.0]), np.array([0.0])) == 0.0
    with pytest.raises(ValueError):
        rel_error(np.zeros(2), np.zeros(3))


def test_report_names_gradient_index_and_values():
    numerical = np.zeros((4, 8))
    numerical[3, 7] = 0.31
    yours = numerical.copy()
    yours[3, 7] = 0.12
    text = str(compare_gradients("dW", yours, numerical))
    assert "dW[3, 7]: yours 0.12, numerical 0.31" in text
    assert "WRONG" in text


def test_report_hints_sign_and_factor(rng):
    g = rng.standard_normal((3, 3))
    assert "sign" in compare_gradients("dx", -g, g).hint
    assert "2 times" in compare_gradients("dx", 2 * g, g).hint
    assert "None" in str(compare_gradients("db", None, g))
    assert "shape" in str(compare_gradients("db", g.reshape(-1), g))


class _BrokenAffine(Affine):
    def backward(self, dout):
        dx = super().backward(dout)
        self.dW = self.dW.T.copy().T * 2  # off by a factor of two
        return dx


def test_check_layer_catches_a_wrong_gradient(rng):
    W, b = rng.standard_normal((4, 3)), rng.standard_normal(3)
    x = rng.standard_normal((5, 4))
    assert check_layer(Affine(W, b), x).ok
    report = check_layer(_BrokenAffine(W, b), x)
    assert not report.ok
    assert report["dx"].ok and report["db"].ok and not report["dW"].ok
    assert "2 times" in str(report)


def test_check_layer_runs_in_float64_on_float32_layers(rng):
    W = rng.standard_normal((4, 3)).astype(np.float32)
    b = np.zeros(3, np.float32)
    layer = Affine(W, b)
    report = check_layer(layer, rng.standard_normal((2, 4)).astype(np.float32))
    assert report.ok, str(report)
    assert report.max_error < 1e-8
    assert layer.W.dtype == np.float32  # the layer itself is untouched
