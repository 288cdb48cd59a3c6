"""Layers with ``forward`` / ``backward``, one small class per idea (the book's ``common/layers.py``).

Each layer computes in the dtype it is given (float64 in, float64 out) and
caches in ``forward`` what ``backward`` needs, except inside :func:`inference`
(how ``Network.predict`` runs them). :mod:`course_lib.kernels` chooses between the
NumPy code here (the reference) and compiled kernels for the hot loops. Parameter gradients are stored on
the layer as ``dW``, ``db`` (``dgamma``, ``dbeta``).
"""

from course_lib.functions import *
from course_lib.layers.activations import LeakyRelu, Relu, Sigmoid
from course_lib.layers.affine import Affine
from course_lib.layers.base import Layer, MissingCacheError, inference, recording
from course_lib.layers.batch_norm import BatchNormalization
from course_lib.layers.convolution import Convolution
from course_lib.layers.dropout import Dropout
from course_lib.layers.pooling import GlobalAvgPooling, Pooling
from course_lib.layers.softmax_with_loss import SoftmaxWithLoss
from course_lib.util import col2im, im2col

__all__ = [
    "Affine",
    "BatchNormalization",
    "Convolution",
    "Dropout",
    "GlobalAvgPooling",
    "Layer",
    "LeakyRelu",
    "MissingCacheError",
    "Pooling",
    "Relu",
    "Sigmoid",
    "SoftmaxWithLoss",
    "col2im",
    "im2col",
    "inference",
    "recording",
    "sigmoid",
    "softmax",
    "relu",
    "cross_entropy_error",
    "step_function",
    "identity_function",
    "sigmoid_grad",
    "relu_grad",
    "softmax_loss",
    "sum_squared_error",
    "numerical_diff",
]
