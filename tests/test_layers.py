"""Every layer: analytic gradients against numerical ones (float64, max relative error < 1e-6).

Each test runs twice: with the NumPy reference layers and with the compiled kernels.
"""

import numpy as np
import pytest

from course_lib.gradcheck import check_layer, check_loss_layer
from course_lib.layers import (
    Affine,
    BatchNormalization,
    Convolution,
    Dropout,
    GlobalAvgPooling,
    LeakyRelu,
    Pooling,
    Relu,
    Sigmoid,
    SoftmaxWithLoss,
)

TOL = 1e-6


@pytest.fixture(autouse=True, params=["numpy", "numba"])
def kernels_path(request, monkeypatch):
    """Every test here runs on both paths: the NumPy reference and the compiled kernels.

    Size thresholds are lowered so the tiny inputs of the gradient checks take the
    compiled path too; tests/test_kernels.py compares the two paths' numbers.
    """
    from course_lib import kernels
    from course_lib.layers import activations

    if request.param == "numba":
        pytest.importorskip("numba")
    monkeypatch.setattr(activations, "FAST_MIN_SIZE", 0)
    before = kernels.active()
    kernels.use_kernels(request.param)
    yield request.param
    kernels.use_kernels(before)


def away_from_zero(rng, shape, margin=0.05):
    """Inputs with |x| >= margin, so ReLU-like kinks are never within the difference step."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < margin, np.sign(x + 1e-12) * margin, x)


def assert_ok(report):
    assert report.ok, str(report)
    assert report.max_error < TOL


@pytest.mark.parametrize("shape", [(1, 4), (5, 7), (3, 2, 3, 3)])
def test_affine(rng, shape):
    D = int(np.prod(shape[1:]))
    layer = Affine(rng.standard_normal((D, 6)), rng.standard_normal(6))
    x = rng.standard_normal(shape)
    assert_ok(check_layer(layer, x, seed=1))
    dx = layer.backward(np.ones((shape[0], 6))) if layer.forward(x) is not None else None
    assert dx.shape == shape  # dx comes back in the input's shape


@pytest.mark.parametrize("layer_cls", [Relu, Sigmoid, LeakyRelu])
@pytest.mark.parametrize("shape", [(1, 5), (4, 3), (2, 3, 5, 4)])
def test_activations(rng, layer_cls, shape):
    assert_ok(check_layer(layer_cls(), away_from_zero(rng, shape), seed=2))


def test_activation_values():
    x = np.array([[-2.0, 0.0, 3.0]])
    np.testing.assert_array_equal(Relu().forward(x), [[0.0, 0.0, 3.0]])
    np.testing.assert_allclose(LeakyRelu(0.1).forward(x), [[-0.2, 0.0, 3.0]])
    np.testing.assert_allclose(Sigmoid().forward(np.zeros((1, 2))), [[0.5, 0.5]])


def test_relu_backward_does_not_modify_dout(rng):
    layer = Relu()
    layer.forward(rng.standard_normal((3, 4)))
    dout = rng.standard_normal((3, 4))
    before = dout.copy()
    layer.backward(dout)
    np.testing.assert_array_equal(dout, before)


@pytest.mark.parametrize("n", [1, 4])
def test_softmax_with_loss(rng, n):
    x = rng.standard_normal((n, 5))
    labels = rng.integers(0, 5, n)
    assert_ok(check_loss_layer(SoftmaxWithLoss(), x, labels))
    assert_ok(check_loss_layer(SoftmaxWithLoss(), x, np.eye(5)[labels]))


def test_softmax_with_loss_labels_and_one_hot_agree_and_extremes(rng):
    x = 1e4 * rng.standard_normal((3, 4))
    t = np.array([0, 3, 1])
    a, b = SoftmaxWithLoss(), SoftmaxWithLoss()
    la, lb = a.forward(x, t), b.forward(x, np.eye(4)[t])
    assert np.isfinite(la) and la == pytest.approx(lb)
    np.testing.assert_allclose(a.backward(), b.backward())
    assert np.all(np.isfinite(a.backward()))


def test_softmax_with_loss_known_value():
    layer = SoftmaxWithLoss()
    loss = layer.forward(np.array([[0.0, 0.0]]), np.array([1]))
    assert loss == pytest.approx(np.log(2))
    np.testing.assert_allclose(layer.backward(), [[0.5, -0.5]])


CONV_CASES = [
    # (x shape, W shape, stride, pad)
    ((2, 3, 7, 7), (4, 3, 3, 3), 1, 0),
    ((1, 1, 5, 5), (2, 1, 3, 3), 1, 1),
    ((2, 2, 7, 6), (3, 2, 3, 2), 2, 1),  # non-square kernel, stride 2, odd sizes
    ((3, 1, 6, 6), (2, 1, 2, 2), 2, 0),
    ((1, 2, 5, 7), (2, 2, 1, 3), 1, 2),  # 1x3 kernel, pad 2
]


@pytest.mark.parametrize(("xs", "ws", "stride", "pad"), CONV_CASES)
def test_convolution(rng, xs, ws, stride, pad):
    layer = Convolution(rng.standard_normal(ws), rng.standard_normal(ws[0]), stride, pad)
    assert_ok(check_layer(layer, rng.standard_normal(xs), seed=3))


def naive_conv(x, W, b, stride, pad):
    N, C, H, Wd = x.shape
    FN, _, FH, FW = W.shape
    xp = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    OH, OW = (H + 2 * pad - FH) // stride + 1, (Wd + 2 * pad - FW) // stride + 1
    out = np.zeros((N, FN, OH, OW))
    for n in range(N):
        for f in range(FN):
            for i in range(OH):
                for j in range(OW):
                    patch = xp[n, :, i * stride : i * stride + FH, j * stride : j * stride + FW]
                    out[n, f, i, j] = np.sum(patch * W[f]) + b[f]
    return out


@pytest.mark.parametrize(("xs", "ws", "stride", "pad"), CONV_CASES)
def test_convolution_matches_definition(rng, xs, ws, stride, pad):
    x, W, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    out = Convolution(W, b, stride, pad).forward(x)
    np.testing.assert_allclose(out, naive_conv(x, W, b, stride, pad), rtol=1e-10, atol=1e-12)


POOL_CASES = [
    ((2, 3, 4, 4), 2, 2, 2, 0),
    ((1, 2, 7, 7), 2, 2, 2, 0),  # odd size floors: 7x7 -> 3x3
    ((2, 1, 6, 5), 3, 2, 1, 0),  # overlapping, non-square
    ((1, 2, 5, 5), 2, 2, 2, 1),  # padding
]


@pytest.mark.parametrize(("xs", "ph", "pw", "stride", "pad"), POOL_CASES)
def test_pooling(rng, xs, ph, pw, stride, pad):
    # distinct values, so no two are within the difference step of each other
    x = rng.permutation(np.prod(xs)).reshape(xs) * 0.1 + rng.uniform(0, 0.01, xs)
    assert_ok(check_layer(Pooling(ph, pw, stride, pad), x, seed=4))


def test_pooling_floors_odd_sizes_and_values():
    x = np.arange(49, dtype=np.float64).reshape(1, 1, 7, 7)
    out = Pooling(2, 2, stride=2).forward(x)
    assert out.shape == (1, 1, 3, 3)
    np.testing.assert_array_equal(out[0, 0], [[8, 10, 12], [22, 24, 26], [36, 38, 40]])


def test_pooling_padding_never_wins():
    x = -np.ones((1, 1, 2, 2))
    out = Pooling(2, 2, stride=2, pad=1).forward(x)
    np.testing.assert_array_equal(out, -np.ones((1, 1, 2, 2)))


@pytest.mark.parametrize("xs", [(2, 3, 4, 4), (1, 2, 3, 5)])
def test_global_avg_pooling(rng, xs):
    layer = GlobalAvgPooling()
    x = rng.standard_normal(xs)
    assert_ok(check_layer(layer, x, seed=5))
    np.testing.assert_allclose(layer.forward(x), x.mean(axis=(2, 3)))


@pytest.mark.parametrize(
    ("xs", "gs"),
    [((5, 4), (4,)), ((1 + 2, 6), (6,)), ((3, 2, 3, 3), (2,)), ((4, 2, 2, 3), (12,))],
)
def test_batch_normalization(rng, xs, gs):
    layer = BatchNormalization(1 + 0.2 * rng.standard_normal(gs), 0.1 * rng.standard_normal(gs))
    assert_ok(check_layer(layer, rng.standard_normal(xs) * 3 + 1, seed=6))


def test_batch_normalization_statistics(rng):
    x = rng.standard_normal((64, 3)) * np.array([1.0, 5.0, 0.1]) + np.array([2.0, -1.0, 0.0])
    layer = BatchNormalization(np.ones(3), np.zeros(3), momentum=0.5)
    out = layer.forward(x, train_flg=True)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=1e-4)
    np.testing.assert_allclose(layer.running_mean, 0.5 * x.mean(axis=0))
    test_out = layer.forward(x, train_flg=False)  # uses the running statistics
    expected = (x - layer.running_mean) / np.sqrt(layer.running_var + layer.eps)
    np.testing.assert_allclose(test_out, expected)


def test_spatial_batch_norm_is_per_channel(rng):
    x = rng.standard_normal((4, 2, 3, 3)) + np.array([5.0, -5.0])[None, :, None, None]
    out = BatchNormalization(np.ones(2), np.zeros(2)).forward(x)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)


def test_dropout_gradient_and_semantics(rng):
    assert_ok(check_layer(Dropout(0.3, seed=0), rng.standard_normal((4, 5)), seed=7))
    layer = Dropout(0.5, seed=np.random.default_rng(1))
    x = np.ones((200, 50))
    out = layer.forward(x, train_flg=True)
    assert 0.45 < out.mean() < 0.55
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), layer.mask)
    np.testing.assert_allclose(layer.forward(x, train_flg=False), 0.5)
    # same seed, same mask
    m1 = Dropout(0.5, seed=3).forward(x)
    m2 = Dropout(0.5, seed=3).forward(x)
    np.testing.assert_array_equal(m1, m2)


@pytest.mark.parametrize(
    "make",
    [
        lambda r, d: Affine(r.standard_normal((4, 3)).astype(d), np.zeros(3, d)),
        lambda r, d: Convolution(r.standard_normal((2, 1, 3, 3)).astype(d), np.zeros(2, d), 1, 1),
        lambda r, d: BatchNormalization(np.ones(4, d), np.zeros(4, d)),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layers_follow_the_dtype(rng, make, dtype):
    layer = make(rng, dtype)
    shape = (2, 1, 4, 4) if isinstance(layer, Convolution) else (3, 4)
    x = rng.standard_normal(shape).astype(dtype)
    out = layer.forward(x)
    assert out.dtype == dtype
    dx = layer.backward(np.ones_like(out))
    assert dx.dtype == dtype
    for g in layer.grads.values():
        assert g.dtype == dtype


def test_inputs_are_not_modified(rng):
    x = rng.standard_normal((2, 1, 5, 5))
    before = x.copy()
    for layer in [
        Relu(),
        Sigmoid(),
        Pooling(2, 2),
        Convolution(np.ones((1, 1, 3, 3)), np.zeros(1)),
    ]:
        out = layer.forward(x)
        layer.backward(np.ones_like(out))
    np.testing.assert_array_equal(x, before)


def test_inference_keeps_no_caches_and_backward_says_why(rng):
    from course_lib.layers.base import MissingCacheError, inference

    layers = [
        Convolution(rng.standard_normal((3, 2, 3, 3)), np.zeros(3), 1, 1),
        Relu(),
        Pooling(2, 2),
        Affine(rng.standard_normal((3 * 3 * 3, 4)), np.zeros(4)),
        Sigmoid(),
        Dropout(0.5, seed=0),
    ]
    x = rng.standard_normal((2, 2, 6, 6))
    for layer in layers:  # a training pass keeps the caches
        x = layer.forward(x)
    for layer in reversed(layers):
        x = layer.backward(np.ones_like(x))
    x = rng.standard_normal((2, 2, 6, 6))
    with inference():
        for layer in layers:
            x = layer.forward(x)
    for layer in layers:  # and inference dropped them
        assert all(getattr(layer, name) is None for name in layer.cache_names), layer
    with pytest.raises(MissingCacheError, match=r"net\.loss"):
        layers[0].backward(np.ones((2, 3, 6, 6)))
