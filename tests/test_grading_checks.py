"""course_lib.checks: the messages students read, and that they cannot be fooled."""

import numpy as np
import pytest

from course_lib import checks
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
    with pytest.raises(AssertionError, match=r"^out\[1\] is inf: expected a finite number \(2\)$"):
        checks.check_close(np.array([1.0, np.inf]), np.array([1.0, 2.0]), "out")
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


def test_an_error_in_student_code_names_the_call_that_raised(rng):
    class Broken:
        def __init__(self, where):
            self.where = where

        def forward(self, x):
            if self.where == "forward":
                raise ValueError("bad shape")
            return x

        def backward(self, dout):
            raise ValueError("no mask")

        def update(self, params, grads):
            raise KeyError("W")

        def gradient(self, x, t):
            raise ZeroDivisionError("division by zero")

    x = np.abs(rng.standard_normal((2, 3))) + 0.1  # positive: Relu's forward is the identity
    cases = [
        (lambda: checks.check_layer_matches(Broken("forward"), Relu(), x), "Broken.forward failed"),
        (lambda: checks.check_layer_matches(Broken(""), Relu(), x), "Broken.backward failed"),
        (
            lambda: checks.check_layer_gradients(Broken("forward"), x),
            "Broken failed while running forward/backward on x of shape (2, 3)",
        ),
        (
            lambda: checks.check_optimizer(Broken(""), SGD(lr=0.1)),
            "Broken.update failed at step 1",
        ),
        (
            lambda: checks.check_backprop_chain(Broken(""), x, None, {}),
            "gradient(x, t) failed",
        ),
    ]
    for call, start in cases:
        with pytest.raises(AssertionError) as info:
            call()
        assert str(info.value).startswith(start + ": "), (start, str(info.value))


# ------------------------------------------------------------------------------------------
# one exercise at a time: a mistake in a dependency must not cost the dependent exercise


def test_layer_matches_forward_only_and_without_dx(rng):
    class BackwardIgnoresMask(MyRelu):
        def backward(self, dout):
            return dout

    x = rng.standard_normal((3, 4)) + 0.1
    checks.check_layer_matches(BackwardIgnoresMask(), Relu(), x, backward=False)
    with pytest.raises(AssertionError, match="dx"):
        checks.check_layer_matches(BackwardIgnoresMask(), Relu(), x)
    W, b = rng.standard_normal((4, 2)), rng.standard_normal(2)

    class WrongDxAffine(SignErrorAffine):
        def backward(self, dout):
            self.dW = self.x.T @ dout
            self.db = dout.sum(axis=0)
            return 2 * dout @ self.W.T

    checks.check_layer_matches(WrongDxAffine(W, b), Affine(W, b), x, check_dx=False)
    with pytest.raises(AssertionError, match="dx"):
        checks.check_layer_matches(WrongDxAffine(W, b), Affine(W, b), x)


class TinyNet:
    """Affine - Relu - Affine - SoftmaxWithLoss, built from the layer classes it is given."""

    def __init__(self, affine, relu, rng, *, chain_backwards=True):
        from collections import OrderedDict

        from course_lib.layers import SoftmaxWithLoss

        self.params = {
            "W1": rng.standard_normal((4, 5)),
            "b1": rng.standard_normal(5),
            "W2": rng.standard_normal((5, 3)),
            "b2": rng.standard_normal(3),
        }
        self.layers = OrderedDict(
            Affine1=affine(self.params["W1"], self.params["b1"]),
            Relu1=relu(),
            Affine2=affine(self.params["W2"], self.params["b2"]),
        )
        self.last_layer = SoftmaxWithLoss()
        self.chain_backwards = chain_backwards

    def loss(self, x, t):
        for layer in self.layers.values():
            x = layer.forward(x)
        return self.last_layer.forward(x, t)

    def gradient(self, x, t):
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        layers = list(self.layers.values())
        for layer in reversed(layers) if self.chain_backwards else layers[::-1][:-1]:
            dout = layer.backward(dout)
        a1, a2 = self.layers["Affine1"], self.layers["Affine2"]
        return {"W1": a1.dW, "b1": a1.db, "W2": a2.dW, "b2": a2.db}


GRADS = {
    "W1": ("Affine1", "dW"),
    "b1": ("Affine1", "db"),
    "W2": ("Affine2", "dW"),
    "b2": ("Affine2", "db"),
}


class BookAffine(SignErrorAffine):
    def backward(self, dout):
        self.dW = self.x.T @ dout
        self.db = dout.sum(axis=0)
        return dout @ self.W.T


def test_network_gradient_is_graded_apart_from_its_layers(rng, capsys):
    x, t = rng.standard_normal((6, 4)), rng.integers(0, 3, size=6)
    assert checks.check_network_gradient(TinyNet(BookAffine, MyRelu, rng), x, t, GRADS) is True
    # a wrong layer, chained correctly: gradient() passes, with a note naming the cause
    assert (
        checks.check_network_gradient(TinyNet(SignErrorAffine, MyRelu, rng), x, t, GRADS) is False
    )
    assert "one of its layers' backward is wrong" in capsys.readouterr().out
    # right layers, wrong chaining (the first layer's backward is skipped): fails
    broken = TinyNet(BookAffine, MyRelu, rng, chain_backwards=False)
    broken.layers["Affine1"].dW = np.zeros((4, 5))  # a stale gradient from "earlier"
    broken.layers["Affine1"].db = np.zeros(5)
    with pytest.raises(AssertionError, match=r"(?s)numerical gradients.*backpropagating"):
        checks.check_network_gradient(broken, x, t, GRADS)
    # wrong layers AND wrong chaining: fails too
    both = TinyNet(SignErrorAffine, MyRelu, rng, chain_backwards=False)
    both.layers["Affine1"].dW = np.zeros((4, 5))
    both.layers["Affine1"].db = np.zeros(5)
    with pytest.raises(AssertionError, match=r"Affine1\.dW"):
        checks.check_network_gradient(both, x, t, GRADS)


def book_conv_class(col2im, im2col, *, transpose_dW=True):
    """The book's Convolution, calling the col2im it is given (a student's, right or wrong)."""

    class Convolution:
        def __init__(self, W, b, stride=1, pad=0):
            self.W, self.b, self.stride, self.pad = W, b, stride, pad

        def forward(self, x):
            FN, C, FH, FW = self.W.shape
            N, _, H, W = x.shape
            oh = (H + 2 * self.pad - FH) // self.stride + 1
            ow = (W + 2 * self.pad - FW) // self.stride + 1
            self.col = im2col(x, FH, FW, self.stride, self.pad)
            self.col_W = self.W.reshape(FN, -1).T
            self.x_shape = x.shape
            out = self.col @ self.col_W + self.b
            return out.reshape(N, oh, ow, FN).transpose(0, 3, 1, 2)

        def backward(self, dout):
            FN, C, FH, FW = self.W.shape
            dout = dout.transpose(0, 2, 3, 1).reshape(-1, FN)
            self.db = dout.sum(axis=0)
            dW = self.col.T @ dout
            self.dW = (dW.T if transpose_dW else dW).reshape(FN, C, FH, FW)
            dcol = dout @ self.col_W.T
            return col2im(dcol, self.x_shape, FH, FW, self.stride, self.pad)

    return Convolution


def book_pool_class(col2im, im2col):
    class Pooling:
        def __init__(self, pool_h, pool_w, stride=2, pad=0):
            self.pool_h, self.pool_w, self.stride, self.pad = pool_h, pool_w, stride, pad

        def forward(self, x):
            N, C, H, W = x.shape
            oh = (H + 2 * self.pad - self.pool_h) // self.stride + 1
            ow = (W + 2 * self.pad - self.pool_w) // self.stride + 1
            p = self.pad
            x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)
            col = im2col(x, self.pool_h, self.pool_w, self.stride, 0)
            col = col.reshape(-1, self.pool_h * self.pool_w)
            self.arg_max = np.argmax(col, axis=1)
            self.x_shape = (N, C, H, W)
            out = col[np.arange(col.shape[0]), self.arg_max]
            return out.reshape(N, oh, ow, C).transpose(0, 3, 1, 2)

        def backward(self, dout):
            N, C, oh, ow = dout.shape
            size = self.pool_h * self.pool_w
            flat = dout.transpose(0, 2, 3, 1).ravel()
            dmax = np.zeros((flat.size, size))
            dmax[np.arange(flat.size), self.arg_max] = flat
            dcol = dmax.reshape(N * oh * ow, C * size)
            return col2im(dcol, self.x_shape, self.pool_h, self.pool_w, self.stride, self.pad)

    return Pooling


def overlaps_not_added(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    """col2im with a classic mistake: overlapping patches overwrite instead of adding up."""
    N, C, H, W = input_shape
    oh = (H + 2 * pad - filter_h) // stride + 1
    ow = (W + 2 * pad - filter_w) // stride + 1
    col = col.reshape(N, oh, ow, C, filter_h, filter_w).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((N, C, H + 2 * pad + stride - 1, W + 2 * pad + stride - 1))
    for y in range(filter_h):
        for x in range(filter_w):
            img[:, :, y : y + stride * oh : stride, x : x + stride * ow : stride] = col[:, :, y, x]
    return img[:, :, pad : H + pad, pad : W + pad]


def test_convolution_backward_is_graded_apart_from_col2im(rng, capsys):
    from course_lib.util import col2im, im2col

    x, W, b = (
        rng.standard_normal((2, 3, 6, 6)),
        rng.standard_normal((4, 3, 3, 3)),
        rng.standard_normal(4),
    )
    right = book_conv_class(col2im, im2col)
    assert checks.check_convolution_backward(right, x, W, b, 1, 1, col2im=col2im) is True
    # the student's col2im is wrong: their Convolution, which uses it, still gets its points
    wrong_col2im = book_conv_class(overlaps_not_added, im2col)
    assert not np.allclose(
        overlaps_not_added(np.ones((2 * 36, 27)), x.shape, 3, 3, 1, 1),
        col2im(np.ones((2 * 36, 27)), x.shape, 3, 3, 1, 1),
    )
    assert (
        checks.check_convolution_backward(wrong_col2im, x, W, b, 1, 1, col2im=overlaps_not_added)
        is False
    )
    assert "what your col2im makes of the right dcol" in capsys.readouterr().out
    # ... but a mistake of its own fails, with a right or a wrong col2im
    for c2i in (col2im, overlaps_not_added):
        bad = book_conv_class(c2i, im2col, transpose_dW=False)
        with pytest.raises(AssertionError, match="dW"):
            checks.check_convolution_backward(bad, x, W, b, 1, 1, col2im=c2i)


def test_pooling_backward_is_graded_apart_from_col2im(rng):
    from course_lib.util import col2im, im2col

    x = rng.standard_normal((2, 2, 5, 5))
    assert checks.check_pooling_backward(book_pool_class(col2im, im2col), x, 3, 3, 1, col2im=col2im)
    wrong = book_pool_class(overlaps_not_added, im2col)
    assert not checks.check_pooling_backward(wrong, x, 3, 3, 1, col2im=overlaps_not_added)
    assert checks.check_pooling_backward(
        book_pool_class(col2im, im2col), x, 2, 2, 2, 1, col2im=col2im
    )

    class SignError(book_pool_class(overlaps_not_added, im2col)):
        def backward(self, dout):
            return super().backward(-dout)

    with pytest.raises(AssertionError, match="dx"):
        checks.check_pooling_backward(SignError, x, 3, 3, 1, col2im=overlaps_not_added)


def test_the_verdict_process_holds_the_checks_but_not_the_release():
    """The verdict process imports the checks before any student code runs (docs/grading.md),
    under their name outside grading/; the release (nbformat, nbgrader) it never needs."""
    from course_lib.grading.verdict import library_modules

    names = library_modules()
    assert "course_lib.checks" in names
    assert [n for n in names if n.startswith(("course_lib.release", "course_lib.grading."))] == []
