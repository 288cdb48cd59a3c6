"""The deep convolutional network of the book's chapter 8 (over 99% on MNIST)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from course_lib._random import SeedLike
from course_lib.layers import Affine, Convolution, Dropout, Pooling, Relu, SoftmaxWithLoss
from course_lib.models.injection import LayerFactories, layer_factories, with_param_names
from course_lib.models.network import Network
from course_lib.util import conv_output_size


def _conv(filter_num: int, pad: int = 1) -> dict[str, int]:
    return {"filter_num": filter_num, "filter_size": 3, "pad": pad, "stride": 1}


class DeepConvNet(Network):
    """The book's architecture, exactly::

        conv - relu - conv - relu - pool -
        conv - relu - conv - relu - pool -
        conv - relu - conv - relu - pool -
        affine - relu - dropout - affine - dropout - softmax

    3x3 convolutions with 16, 16, 32, 32, 64, 64 filters (padding 1, except 2 for the
    fourth), 2x2 max pooling, a hidden layer of 50 units, He initialisation.
    Parameters ``W1``..``W8``, ``b1``..``b8``, named and shaped as in the book, so its
    trained weights (converted to ``.npz``) load and give the same predictions.
    x: (N, 1, 28, 28) -> scores (N, output_size). ``loss`` runs in training mode by
    default, as in the book.

    ``Conv1`` is built with ``input_grad=False``: training needs no gradient of the
    images, so its ``backward`` stores ``dW`` and ``db`` and returns None (``gradient``
    is unchanged). Set ``net.layers["Conv1"].input_grad = True`` for the image gradient.

    ``layers`` builds the network from other classes (the student's own), by kind:
    ``{"Convolution": ..., "Pooling": ..., "Affine": ..., "Relu": ..., "Dropout": ...,
    "SoftmaxWithLoss": ...}``; kinds left out use :mod:`course_lib.layers` (see
    :mod:`course_lib.models.injection`). Another ``Convolution`` class is built without
    ``input_grad``; ``Dropout`` is built as ``Dropout(dropout_ratio, seed=rng)``.
    """

    eval_batch_size = 200  # im2col patches of 200 images stay well under 100 MB

    def __init__(
        self,
        input_dim: tuple[int, int, int] = (1, 28, 28),
        conv_param_1: Mapping[str, int] | None = None,
        conv_param_2: Mapping[str, int] | None = None,
        conv_param_3: Mapping[str, int] | None = None,
        conv_param_4: Mapping[str, int] | None = None,
        conv_param_5: Mapping[str, int] | None = None,
        conv_param_6: Mapping[str, int] | None = None,
        hidden_size: int = 50,
        output_size: int = 10,
        *,
        dropout_ratio: float = 0.5,
        dtype: Any = np.float32,
        seed: SeedLike = None,
        layers: LayerFactories | None = None,
    ) -> None:
        super().__init__(dtype=dtype, seed=seed)
        make = layer_factories(layers, _DEFAULT_LAYERS, "DeepConvNet")
        defaults = [_conv(16), _conv(16), _conv(32), _conv(32, pad=2), _conv(64), _conv(64)]
        given = [conv_param_1, conv_param_2, conv_param_3, conv_param_4, conv_param_5, conv_param_6]
        convs = [dict(d, **(g or {})) for d, g in zip(defaults, given)]

        C, H, W = input_dim
        for idx, cp in enumerate(convs, start=1):
            fs, fn = cp["filter_size"], cp["filter_num"]
            scale = np.sqrt(2.0 / (C * fs * fs))  # He initialisation
            Wc, bc = self._init_weight((fn, C, fs, fs), scale), self._zeros(fn)
            if make["Convolution"] is Convolution:  # the images need no gradient
                conv = Convolution(Wc, bc, cp["stride"], cp["pad"], input_grad=idx > 1)
            else:
                conv = make["Convolution"](Wc, bc, cp["stride"], cp["pad"])
            self.layers[f"Conv{idx}"] = with_param_names(conv, ("W", "b"))
            self.layers[f"Relu{idx}"] = make["Relu"]()
            H = conv_output_size(H, fs, cp["stride"], cp["pad"])
            W = conv_output_size(W, fs, cp["stride"], cp["pad"])
            C = fn
            if idx % 2 == 0:
                self.layers[f"Pool{idx // 2}"] = make["Pooling"](pool_h=2, pool_w=2, stride=2)
                H, W = H // 2, W // 2
        flat = C * H * W
        self.layers["Affine1"] = with_param_names(
            make["Affine"](
                self._init_weight((flat, hidden_size), np.sqrt(2.0 / flat)),
                self._zeros(hidden_size),
            ),
            ("W", "b"),
        )
        self.layers["Relu7"] = make["Relu"]()
        self.layers["Dropout1"] = make["Dropout"](dropout_ratio, seed=self.rng)
        self.layers["Affine2"] = with_param_names(
            make["Affine"](
                self._init_weight((hidden_size, output_size), np.sqrt(2.0 / hidden_size)),
                self._zeros(output_size),
            ),
            ("W", "b"),
        )
        self.layers["Dropout2"] = make["Dropout"](dropout_ratio, seed=self.rng)
        self.last_layer = make["SoftmaxWithLoss"]()
        self._collect_params()

    def loss(self, x: np.ndarray, t: np.ndarray, train_flg: bool = True) -> float:
        """Cross-entropy of the batch, in training mode (dropout on) unless told otherwise."""
        return super().loss(x, t, train_flg)


_DEFAULT_LAYERS = {
    "Convolution": Convolution,
    "Relu": Relu,
    "Pooling": Pooling,
    "Affine": Affine,
    "Dropout": Dropout,
    "SoftmaxWithLoss": SoftmaxWithLoss,
}
