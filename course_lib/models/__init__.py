"""Networks of the book, built from :mod:`course_lib.layers` (float32 by default).

Every model has ``params``, ``layers``, ``predict``, ``loss``, ``accuracy``,
``gradient(x, t)`` (backprop, a dict keyed like ``params``),
``numerical_gradient(x, t)``, ``save_params`` / ``load_params`` (``.npz``) and
``astype(dtype)``. Constructors take the book's arguments plus keyword-only
``dtype`` and ``seed``.
"""

from course_lib.models.deep_convnet import DeepConvNet
from course_lib.models.multi_layer_net import MultiLayerNet, MultiLayerNetExtend
from course_lib.models.network import Network, ParamsFileError, Sequential
from course_lib.models.simple_convnet import SimpleConvNet
from course_lib.models.two_layer_net import TwoLayerNet

__all__ = [
    "DeepConvNet",
    "MultiLayerNet",
    "MultiLayerNetExtend",
    "Network",
    "ParamsFileError",
    "Sequential",
    "SimpleConvNet",
    "TwoLayerNet",
]
