"""The finale's network: the student's saved network in their own layers, else the pretrained one.

``course_lib.mine`` is switched to the reference here (``COURSE_LIB_MINE=reference``) so these
tests do not depend on notebooks; tests/test_mine.py tests where the layers come from, and
tests/test_browser_digitpad.py runs the finale with the solution notebooks' own layers.
"""

from __future__ import annotations

import numpy as np
import pytest

import course_lib.layers as course_layers
import course_lib.pretrained
from course_lib import mine
from course_lib.models import DeepConvNet, SimpleConvNet
from course_lib.widgets import SAVED_NETWORKS, my_network, pretrained_with_layers


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv(mine.MODE_ENV, "reference")
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    for saved in SAVED_NETWORKS:
        (tmp_path / saved.chapter).mkdir()
    return tmp_path


def images(n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).random((n, 1, 28, 28)).astype(np.float32)


def notices(capsys) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if "my_network" in ln]


class CountingRelu(course_layers.Relu):
    """Stands for a student's own class: records that it was built and used."""

    calls = 0

    def forward(self, x, *args, **kwargs):
        CountingRelu.calls += 1
        return np.maximum(x, 0)


def test_pretrained_weights_in_other_layer_classes():
    CountingRelu.calls = 0
    net = pretrained_with_layers({"Relu": CountingRelu})
    relus = [layer for layer in net.layers.values() if isinstance(layer, CountingRelu)]
    assert len(relus) == 3
    x = images()
    np.testing.assert_allclose(
        net.predict(x), course_lib.pretrained.load("mnist-cnn").predict(x), rtol=1e-5, atol=1e-5
    )
    assert CountingRelu.calls == 3


def test_without_a_saved_network_the_pretrained_weights_with_a_notice(workspace, capsys):
    net, about = my_network(workspace)
    assert "pretrained mnist-cnn" in about
    (line,) = notices(capsys)
    assert "no network of yours found" in line
    assert str(workspace / "ch04_convolutional_networks" / "simple_convnet.npz") in line
    x = images()
    np.testing.assert_allclose(
        net.predict(x), course_lib.pretrained.load("mnist-cnn").predict(x), rtol=1e-5, atol=1e-5
    )


def test_the_chapter_4_network_saved_by_the_student(workspace, capsys):
    saved = SimpleConvNet(seed=3)
    saved.save_params(workspace / "ch04_convolutional_networks" / "simple_convnet.npz")
    net, about = my_network(workspace)
    assert about.startswith("your SimpleConvNet from ")
    assert notices(capsys) == []
    np.testing.assert_array_equal(net.predict(images()), saved.predict(images()))


def test_chapter_5_comes_first(workspace):
    SimpleConvNet(seed=3).save_params(
        workspace / "ch04_convolutional_networks" / "simple_convnet.npz"
    )
    deep = DeepConvNet(seed=4)
    deep.save_params(workspace / "ch05_deep_networks" / "deep_convnet_mine.npz")
    net, about = my_network(workspace)
    assert about.startswith("your DeepConvNet from ")
    np.testing.assert_allclose(net.predict(images()), deep.predict(images()), rtol=1e-6)


def test_a_file_that_does_not_fit_is_reported_and_skipped(workspace, capsys):
    path = workspace / "ch05_deep_networks" / "deep_convnet_mine.npz"
    SimpleConvNet(seed=3).save_params(path)  # the wrong model's parameters
    net, about = my_network(workspace)
    assert "pretrained mnist-cnn" in about
    lines = notices(capsys)
    assert len(lines) == 2 and f"cannot use {path}" in lines[0], lines
