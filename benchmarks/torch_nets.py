"""The benchmark architectures in PyTorch (CPU), for side-by-side timing.

Same layer shapes, same loss (softmax cross entropy), same optimiser (Adam,
lr=0.001) as ``course_lib`` and the book-style baseline. PyTorch is optional:
install it with ``pip install -e ".[bench]"``; :func:`torch_available` lets the
harness skip it with a clear message.
"""

from __future__ import annotations


def torch_available() -> tuple[bool, str]:
    """``(True, version)`` or ``(False, reason)``."""
    try:
        import torch
    except ImportError as exc:
        return False, (
            f"PyTorch is not installed ({exc}); install the optional extra with "
            '`pip install -e ".[bench]"` to time it side by side'
        )
    return True, torch.__version__


def build(model: str):
    """Return a ``torch.nn.Module`` for ``model`` (float32, default init)."""
    from torch import nn

    if model == "TwoLayerNet":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 10))
    if model == "SimpleConvNet":
        return nn.Sequential(
            nn.Conv2d(1, 30, 5),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Flatten(),
            nn.Linear(30 * 12 * 12, 100),
            nn.ReLU(),
            nn.Linear(100, 10),
        )
    if model == "DeepConvNet":
        layers: list[nn.Module] = []
        c_in = 1
        for i, (fn, pad) in enumerate([(16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1)]):
            layers += [nn.Conv2d(c_in, fn, 3, padding=pad), nn.ReLU()]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2, 2))
            c_in = fn
        layers += [
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 50),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(50, 10),
            nn.Dropout(0.5),
        ]
        return nn.Sequential(*layers)
    raise ValueError(f"unknown model {model!r}; expected TwoLayerNet, SimpleConvNet or DeepConvNet")


class TorchRunner:
    """One training step / inference pass with the same interface as the NumPy runners."""

    def __init__(self, model: str, threads: int, seed: int = 0):
        import torch

        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        self.torch = torch
        self.net = build(model)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=0.001)
        self.loss_fn = torch.nn.CrossEntropyLoss()

    def convert(self, x, t=None):
        """NumPy arrays -> tensors (done once, outside the timed region)."""
        xt = self.torch.from_numpy(x)
        return xt if t is None else (xt, self.torch.from_numpy(t.astype("int64")))

    def step(self, x, t) -> float:
        self.net.train()
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.net(x), t)
        loss.backward()
        self.opt.step()
        return loss.item()

    def predict(self, x):
        self.net.eval()
        with self.torch.inference_mode():
            return self.net(x).argmax(dim=1).numpy()
