"""With the real MNIST: TwoLayerNet trained by backprop reaches at least 97% test accuracy."""

import time

import numpy as np
import pytest

from course_lib.datasets import load_mnist
from course_lib.models import TwoLayerNet
from course_lib.trainer import Trainer


@pytest.mark.slow
def test_two_layer_net_reaches_97_percent_on_mnist(data_dir):
    (x_train, t_train), (x_test, t_test) = load_mnist(data_dir=data_dir, progress=False)
    net = TwoLayerNet(784, 100, 10, weight_init_std=0.01, seed=0)
    trainer = Trainer(
        net, x_train, t_train, x_test, t_test,
        epochs=8, mini_batch_size=100, optimizer="SGD", optimizer_param={"lr": 0.3},
        evaluate_sample_num_per_epoch=2000, verbose=False, progress=False, seed=0,
    )  # fmt: skip
    start = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - start
    acc = net.accuracy(x_test, t_test)
    print(
        f"TwoLayerNet 784-100-10, 8 epochs SGD lr 0.3: test accuracy {acc:.4f} in {elapsed:.1f} s"
    )
    assert acc >= 0.97
    assert all(p.dtype == np.float32 for p in net.params.values())
