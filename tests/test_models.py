"""Every model: backprop against numerical gradients in float64; saving; dtypes; the book's API."""

from typing import ClassVar

import numpy as np
import pytest

from course_lib.gradcheck import check_model
from course_lib.layers import Affine, BatchNormalization, Convolution, Pooling, Relu
from course_lib.models import (
    DeepConvNet,
    MultiLayerNet,
    MultiLayerNetExtend,
    ParamsFileError,
    Sequential,
    SimpleConvNet,
    TwoLayerNet,
)

SMALL_DEEP = [
    {"filter_num": n, "filter_size": 3, "pad": p, "stride": 1}
    for n, p in [(2, 1), (3, 1), (2, 1), (3, 2), (2, 1), (3, 1)]
]


def randomise_biases(model, rng):
    """Non-zero biases keep ReLU inputs off the kink at exactly 0 (e.g. all-padding windows)."""
    for key, p in model.params.items():
        if key.startswith("b"):
            p[...] = 0.1 * rng.standard_normal(p.shape)
    return model


MODELS = {
    "two_layer": (lambda: TwoLayerNet(6, 5, 3, weight_init_std=1.0, seed=0), (4, 6)),
    "two_layer_batch1": (lambda: TwoLayerNet(7, 4, 3, weight_init_std=1.0, seed=1), (1, 7)),
    "multi_sigmoid_decay": (
        lambda: MultiLayerNet(5, [4, 3], 3, activation="sigmoid", weight_decay_lambda=0.1, seed=2),
        (3, 5),
    ),
    "extend_bn_dropout": (
        lambda: MultiLayerNetExtend(
            5, [6, 4], 3, use_batchnorm=True, use_dropout=True, dropout_ration=0.2, seed=3
        ),
        (4, 5),
    ),
    "simple_convnet": (
        lambda: SimpleConvNet(
            (1, 7, 7),
            {"filter_num": 3, "filter_size": 3, "pad": 1, "stride": 1},
            hidden_size=5,
            output_size=3,
            weight_init_std=0.3,
            seed=4,
        ),
        (2, 1, 7, 7),
    ),
    "simple_convnet_stride2": (
        lambda: SimpleConvNet(
            (2, 8, 6),
            {"filter_num": 2, "filter_size": 3, "pad": 0, "stride": 2},
            hidden_size=4,
            output_size=3,
            weight_init_std=0.5,
            seed=5,
        ),
        (1, 2, 8, 6),
    ),
    "deep_convnet": (
        lambda: DeepConvNet((1, 12, 12), *SMALL_DEEP, hidden_size=6, output_size=3, seed=6),
        (2, 1, 12, 12),
    ),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_backprop_matches_numerical_gradient(name, rng):
    make, shape = MODELS[name]
    model = randomise_biases(make(), rng)
    x = rng.standard_normal(shape)
    t = rng.integers(0, 3, shape[0])
    report = check_model(model, x, t)
    assert report.ok, str(report)
    assert report.max_error < 1e-6
    assert set(report_keys(report)) == set(model.params)


def report_keys(report):
    return [c.name for c in report.comparisons]


def test_sequential_names_params_like_the_book(rng):
    W1, b1 = rng.standard_normal((4, 3)), rng.standard_normal(3)
    conv = Convolution(rng.standard_normal((2, 1, 3, 3)), rng.standard_normal(2), 1, 1)
    net = Sequential(
        [
            conv,
            Relu(),
            Pooling(2, 2),
            BatchNormalization(np.ones(2), np.zeros(2)),
            Affine(rng.standard_normal((8, 3)), b1),
            Relu(),
            Affine(W1[:3], rng.standard_normal(3)),
        ]
    )
    assert list(net.params) == ["W1", "b1", "gamma1", "beta1", "W2", "b2", "W3", "b3"]
    x = rng.standard_normal((3, 1, 4, 4))
    report = check_model(net, x, np.array([0, 2, 1]))
    assert report.ok, str(report)


def test_default_dtype_is_float32_and_selectable():
    net = SimpleConvNet(seed=0)
    assert all(p.dtype == np.float32 for p in net.params.values())
    x = np.zeros((2, 1, 28, 28), np.float32)
    assert net.predict(x).dtype == np.float32
    net64 = TwoLayerNet(784, 50, 10, dtype=np.float64, seed=0)
    assert net64.params["W1"].dtype == np.float64
    grads = net64.gradient(np.zeros((2, 784)), np.array([1, 2]))
    assert grads["W1"].dtype == np.float64


def test_same_seed_same_weights_whatever_the_dtype():
    a = TwoLayerNet(5, 4, 3, seed=7)
    b = TwoLayerNet(5, 4, 3, seed=7, dtype=np.float64)
    np.testing.assert_allclose(a.params["W1"], b.params["W1"], rtol=1e-6)


def test_optimizer_updates_reach_the_layers(rng):
    from course_lib.optimizers import SGD

    net = TwoLayerNet(4, 3, 2, seed=0)
    x, t = rng.standard_normal((5, 4)).astype(np.float32), rng.integers(0, 2, 5)
    before = net.predict(x).copy()
    SGD(lr=1.0).update(net.params, net.gradient(x, t))
    assert not np.allclose(before, net.predict(x))


def test_accuracy_is_batched_and_exact(rng):
    net = TwoLayerNet(4, 3, 2, seed=0)
    x = rng.standard_normal((1003, 4)).astype(np.float32)
    labels = np.argmax(net.predict(x), axis=1)
    assert net.accuracy(x, labels, batch_size=100) == 1.0
    t = labels.copy()
    t[:3] = 1 - t[:3]
    assert net.accuracy(x, np.eye(2)[t]) == pytest.approx(1000 / 1003)


def test_deep_convnet_is_the_books_architecture():
    net = DeepConvNet(seed=0)
    shapes = {k: v.shape for k, v in net.params.items()}
    assert shapes == {
        "W1": (16, 1, 3, 3), "b1": (16,), "W2": (16, 16, 3, 3), "b2": (16,),
        "W3": (32, 16, 3, 3), "b3": (32,), "W4": (32, 32, 3, 3), "b4": (32,),
        "W5": (64, 32, 3, 3), "b5": (64,), "W6": (64, 64, 3, 3), "b6": (64,),
        "W7": (1024, 50), "b7": (50,), "W8": (50, 10), "b8": (10,),
    }  # fmt: skip
    assert net.predict(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)


def test_save_and_load_params_roundtrip(tmp_path, rng):
    net = MultiLayerNetExtend(6, [5], 3, use_batchnorm=True, seed=0)
    x = rng.standard_normal((8, 6)).astype(np.float32)
    net.gradient(x, rng.integers(0, 3, 8))  # moves the running statistics
    path = tmp_path / "params.pkl"  # the book's file name: written as .npz, exactly there
    net.save_params(path)
    assert path.exists() and not (tmp_path / "params.pkl.npz").exists()
    other = MultiLayerNetExtend(6, [5], 3, use_batchnorm=True, seed=1)
    W1 = other.params["W1"]
    other.load_params(path)
    assert other.params["W1"] is W1  # loaded in place: the layers keep their arrays
    np.testing.assert_array_equal(other.predict(x), net.predict(x))


def test_load_params_rejects_wrong_shapes_missing_keys_and_pickles(tmp_path):
    TwoLayerNet(6, 5, 3, seed=0).save_params(tmp_path / "a.npz")
    with pytest.raises(ParamsFileError, match=r"W1 has shape \(6, 5\).*needs \(6, 4\)"):
        TwoLayerNet(6, 4, 3).load_params(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", W1=np.zeros((6, 5)))
    with pytest.raises(ParamsFileError, match="missing parameters"):
        TwoLayerNet(6, 5, 3).load_params(tmp_path / "b.npz")
    import pickle

    (tmp_path / "c.pkl").write_bytes(pickle.dumps({"W1": np.zeros(3)}))
    with pytest.raises(ParamsFileError, match="never loads pickles"):
        TwoLayerNet(6, 5, 3).load_params(tmp_path / "c.pkl")


def test_numerical_gradient_matches_backprop_in_model_dtype(rng):
    net = TwoLayerNet(5, 4, 3, weight_init_std=1.0, seed=0)
    x, t = rng.standard_normal((3, 5)).astype(np.float32), rng.integers(0, 3, 3)
    num = net.numerical_gradient(x, t)
    grad = net.gradient(x, t)
    for k in net.params:
        assert num[k].dtype == np.float32
        np.testing.assert_allclose(num[k], grad[k], rtol=1e-3, atol=1e-5)


def test_bad_arguments_get_clear_errors():
    with pytest.raises(ValueError, match="activation 'tanh'"):
        MultiLayerNet(4, [3], 2, activation="tanh")
    with pytest.raises(ValueError, match="weight_init_std 'lecun'"):
        MultiLayerNet(4, [3], 2, weight_init_std="lecun")


# --------------------------------------------------------------------------------------------
# layers=: models built from other layer classes (the student's own, in the chapters)
# --------------------------------------------------------------------------------------------


class _Plain:
    """A book-style layer that is not a course_lib Layer (no ``param_names``), delegating the
    arithmetic to a course_lib layer and counting its calls."""

    calls: ClassVar[dict[str, int]] = {}
    inner_class: type = Relu

    def __init__(self, *args, **kwargs):
        self._inner = self.inner_class(*args, **kwargs)
        for name in getattr(self._inner, "param_names", ()):
            setattr(self, name, getattr(self._inner, name))

    def forward(self, *args, **kwargs):
        type(self).calls[type(self).__name__] = type(self).calls.get(type(self).__name__, 0) + 1
        return self._inner.forward(*args, **kwargs)

    def backward(self, dout=1):
        dx = self._inner.backward(dout)
        for name in getattr(self._inner, "param_names", ()):
            setattr(self, "d" + name, getattr(self._inner, "d" + name))
        return dx


def _plain(inner: type) -> type:
    return type(f"Plain{inner.__name__}", (_Plain,), {"inner_class": inner})


def test_layers_keyword_builds_simple_convnet_from_other_classes() -> None:
    from course_lib.layers import SoftmaxWithLoss

    _Plain.calls.clear()
    kinds = {"Convolution": Convolution, "Pooling": Pooling, "Affine": Affine, "Relu": Relu}
    plain = {kind: _plain(cls) for kind, cls in kinds.items()}
    plain["SoftmaxWithLoss"] = _plain(SoftmaxWithLoss)
    args = ((1, 8, 8), {"filter_num": 3, "filter_size": 3, "pad": 1, "stride": 1}, 5, 4, 0.3)
    ours, theirs = SimpleConvNet(*args, seed=7), SimpleConvNet(*args, seed=7, layers=plain)
    assert [type(layer).__name__ for layer in theirs.layers.values()] == [
        "PlainConvolution", "PlainRelu", "PlainPooling", "PlainAffine", "PlainRelu", "PlainAffine",
    ]  # fmt: skip
    assert type(theirs.last_layer).__name__ == "PlainSoftmaxWithLoss"
    assert theirs.params.keys() == ours.params.keys() == {"W1", "b1", "W2", "b2", "W3", "b3"}
    for key in ours.params:  # the same initial weights, held by the plain layers themselves
        np.testing.assert_array_equal(theirs.params[key], ours.params[key])
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((3, 1, 8, 8)).astype(np.float32), np.array([0, 3, 1])
    g_ours, g_theirs = ours.gradient(x, t), theirs.gradient(x, t)
    for key in g_ours:
        np.testing.assert_allclose(g_theirs[key], g_ours[key], rtol=1e-5, atol=1e-7)
    assert _Plain.calls["PlainConvolution"] == 1 and _Plain.calls["PlainSoftmaxWithLoss"] == 1


def test_layers_keyword_builds_multi_layer_net_from_other_classes() -> None:
    plain = {"Affine": _plain(Affine), "Relu": _plain(Relu)}

    class PlainBatchNormalization(_plain(BatchNormalization)):
        def forward(self, x, train_flg=True):  # the book's signature: predict passes train_flg
            return super().forward(x, train_flg=train_flg)

    plain["BatchNormalization"] = PlainBatchNormalization
    net = MultiLayerNetExtend(5, [6, 4], 3, use_batchnorm=True, seed=3, layers=plain)
    ref = MultiLayerNetExtend(5, [6, 4], 3, use_batchnorm=True, seed=3)
    assert net.params.keys() == ref.params.keys()
    assert (
        "gamma1" in net.params
        and type(net.layers["BatchNorm1"]).__name__ == "PlainBatchNormalization"
    )
    x, t = np.random.default_rng(1).standard_normal((4, 5)), np.array([0, 1, 2, 1])
    ref.loss(x, t, train_flg=True), net.loss(x, t, train_flg=True)  # running averages
    np.testing.assert_allclose(net.loss(x, t), ref.loss(x, t), rtol=1e-6)
    g_net, g_ref = net.gradient(x, t), ref.gradient(x, t)
    for key in g_ref:
        np.testing.assert_allclose(g_net[key], g_ref[key], rtol=1e-5, atol=1e-7)
    multi = MultiLayerNet(5, [4], 3, seed=0, layers={"Affine": _plain(Affine)})
    assert type(multi.layers["Affine2"]).__name__ == "PlainAffine"


def test_layers_keyword_names_the_kinds_it_knows() -> None:
    with pytest.raises(ValueError, match=r"no layer kind 'Conv'.*Convolution"):
        SimpleConvNet(seed=0, layers={"Conv": Convolution})
    with pytest.raises(TypeError, match="class or function"):
        MultiLayerNet(4, [3], 2, layers={"Affine": 3})


def test_layers_keyword_builds_deep_convnet_from_other_classes() -> None:
    from course_lib.layers import Dropout, SoftmaxWithLoss

    kinds = {"Convolution": Convolution, "Pooling": Pooling, "Affine": Affine, "Relu": Relu}
    plain = {kind: _plain(cls) for kind, cls in kinds.items()}
    plain["Dropout"], plain["SoftmaxWithLoss"] = _plain(Dropout), _plain(SoftmaxWithLoss)
    ours = DeepConvNet((1, 8, 8), hidden_size=6, seed=5)
    theirs = DeepConvNet((1, 8, 8), hidden_size=6, seed=5, layers=plain)
    assert [type(layer).__name__ for layer in theirs.layers.values()].count("PlainDropout") == 2
    assert type(theirs.last_layer).__name__ == "PlainSoftmaxWithLoss"
    assert theirs.params.keys() == ours.params.keys() and len(ours.params) == 16
    for key in ours.params:
        np.testing.assert_array_equal(theirs.params[key], ours.params[key])
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((3, 1, 8, 8)).astype(np.float32), np.array([0, 3, 1])
    g_ours, g_theirs = ours.gradient(x, t), theirs.gradient(x, t)  # same dropout masks
    for key in g_ours:
        np.testing.assert_allclose(g_theirs[key], g_ours[key], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["simple", "deep"])
def test_predict_and_accuracy_keep_no_caches_but_loss_then_backward_works(name, rng):
    """Inference keeps no per-layer caches; ``loss`` then backward still works, as in the book."""
    if name == "simple":
        conv = {"filter_num": 3, "filter_size": 3, "pad": 1, "stride": 1}
        net, shape = (
            SimpleConvNet((1, 8, 8), conv, hidden_size=5, output_size=3, seed=1),
            (4, 1, 8, 8),
        )
    else:
        net, shape = (
            DeepConvNet((1, 12, 12), *SMALL_DEEP, hidden_size=6, output_size=3, seed=2),
            (3, 1, 12, 12),
        )
    x, t = rng.standard_normal(shape).astype(np.float32), rng.integers(0, 3, shape[0])

    def cached():
        return {
            f"{key}.{name}"
            for key, layer in net.layers.items()
            for name in getattr(layer, "cache_names", ())
            if getattr(layer, name) is not None
        }

    expected = net.gradient(x, t)  # a training step leaves its caches
    assert cached()
    net.predict(x)
    assert cached() == set()
    net.accuracy(x, t)
    assert cached() == set()
    twin = net.astype(np.float64)  # copies never carry caches either
    assert all(
        getattr(l, n, None) is None
        for l in twin.layers.values()
        for n in getattr(l, "cache_names", ())
    )

    net.loss(x, t)  # the book's way: loss, then backward through the layers
    assert cached()
    dout = net.last_layer.backward(1)
    for layer in reversed(list(net.layers.values())):
        dout = layer.backward(dout)
    if name == "simple":  # no dropout: the same gradients as gradient()
        for key, (layer_name, attr) in net._param_refs.items():
            np.testing.assert_array_equal(
                getattr(net.layers[layer_name], "d" + attr), expected[key]
            )
