"""course_lib: the NumPy reference library of the course *Deep Learning from Scratch*.

Modules follow the book's ``common/`` package, one idea each:

- :mod:`course_lib.functions`  activation and loss functions
- :mod:`course_lib.gradcheck`  numerical gradients and gradient checking
- :mod:`course_lib.layers`     layers with ``forward`` / ``backward``
- :mod:`course_lib.util`       ``im2col`` / ``col2im`` and small helpers
- :mod:`course_lib.optimizers` SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam
- :mod:`course_lib.models`     TwoLayerNet, MultiLayerNet(Extend), SimpleConvNet, DeepConvNet
- :mod:`course_lib.trainer`    the Trainer
- :mod:`course_lib.datasets`   MNIST and Fashion-MNIST loaders
"""

__version__ = "0.1.0"

from course_lib.modes import quick_mode

__all__ = ["__version__", "quick_mode"]
