"""A straightforward, book-style NumPy implementation: the benchmark baseline.

This is what a reader writes after following the book chapter by chapter:
float64 everywhere, ``im2col`` that fills a 6-D buffer with one slice copy per
kernel offset, convolution as one big matrix product, max pooling through
``im2col`` + ``argmax``, ``col2im`` that adds the slices back one offset at a
time, and Adam written as in the paper. It is written for this repository (it
is not the book's code) and is deliberately *not* tuned: it is the yardstick
``course_lib`` is measured against.

Shapes follow the book: images ``x: (N, C, H, W)``, filters ``W: (FN, C, FH, FW)``,
``col: (N*OH*OW, C*FH*FW)``.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

FLOAT = np.float64


# --------------------------------------------------------------------------- im2col


def out_size(size: int, k: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - k) // stride + 1


def im2col(x: np.ndarray, fh: int, fw: int, stride: int = 1, pad: int = 0) -> np.ndarray:
    """``x: (N, C, H, W)`` -> ``col: (N*OH*OW, C*FH*FW)``, one slice copy per kernel offset."""
    n, c, h, w = x.shape
    oh, ow = out_size(h, fh, stride, pad), out_size(w, fw, stride, pad)
    padded = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)], mode="constant")
    buf = np.zeros((n, c, fh, fw, oh, ow), dtype=x.dtype)
    for dy in range(fh):
        for dx in range(fw):
            buf[:, :, dy, dx, :, :] = padded[
                :, :, dy : dy + stride * oh : stride, dx : dx + stride * ow : stride
            ]
    return buf.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, -1)


def col2im(
    col: np.ndarray, shape: tuple[int, ...], fh: int, fw: int, stride: int = 1, pad: int = 0
) -> np.ndarray:
    """Inverse scatter-add of :func:`im2col`: ``col`` -> ``(N, C, H, W)``."""
    n, c, h, w = shape
    oh, ow = out_size(h, fh, stride, pad), out_size(w, fw, stride, pad)
    buf = col.reshape(n, oh, ow, c, fh, fw).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((n, c, h + 2 * pad + stride - 1, w + 2 * pad + stride - 1), dtype=col.dtype)
    for dy in range(fh):
        for dx in range(fw):
            img[:, :, dy : dy + stride * oh : stride, dx : dx + stride * ow : stride] += buf[
                :, :, dy, dx, :, :
            ]
    return img[:, :, pad : h + pad, pad : w + pad]


# --------------------------------------------------------------------------- layers


class Relu:
    def forward(self, x):
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dout = dout.copy()
        dout[self.mask] = 0
        return dout


class Affine:
    """``x: (N, ...)`` flattened to ``(N, D)``; ``W: (D, M)``."""

    def __init__(self, W, b):
        self.W, self.b = W, b

    def forward(self, x):
        self.x_shape = x.shape
        self.x = x.reshape(x.shape[0], -1)
        return self.x @ self.W + self.b

    def backward(self, dout):
        self.dW = self.x.T @ dout
        self.db = dout.sum(axis=0)
        return (dout @ self.W.T).reshape(self.x_shape)


class Convolution:
    def __init__(self, W, b, stride=1, pad=0):
        self.W, self.b, self.stride, self.pad = W, b, stride, pad

    def forward(self, x):
        fn, _, fh, fw = self.W.shape
        n, _, h, w = x.shape
        oh = out_size(h, fh, self.stride, self.pad)
        ow = out_size(w, fw, self.stride, self.pad)
        self.x = x
        self.col = im2col(x, fh, fw, self.stride, self.pad)
        self.col_W = self.W.reshape(fn, -1).T
        out = self.col @ self.col_W + self.b
        return out.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)

    def backward(self, dout):
        fn, c, fh, fw = self.W.shape
        dout = dout.transpose(0, 2, 3, 1).reshape(-1, fn)
        self.db = dout.sum(axis=0)
        self.dW = (self.col.T @ dout).transpose(1, 0).reshape(fn, c, fh, fw)
        dcol = dout @ self.col_W.T
        return col2im(dcol, self.x.shape, fh, fw, self.stride, self.pad)


class Pooling:
    """Max pooling via im2col: one row per (image, channel, output pixel)."""

    def __init__(self, pool_h, pool_w, stride=2, pad=0):
        self.ph, self.pw, self.stride, self.pad = pool_h, pool_w, stride, pad

    def forward(self, x):
        n, c, h, w = x.shape
        oh = out_size(h, self.ph, self.stride, self.pad)
        ow = out_size(w, self.pw, self.stride, self.pad)
        col = im2col(x, self.ph, self.pw, self.stride, self.pad).reshape(-1, self.ph * self.pw)
        self.x = x
        self.arg_max = np.argmax(col, axis=1)
        out = np.max(col, axis=1)
        return out.reshape(n, oh, ow, c).transpose(0, 3, 1, 2)

    def backward(self, dout):
        dout = dout.transpose(0, 2, 3, 1)
        size = self.ph * self.pw
        dmax = np.zeros((dout.size, size), dtype=dout.dtype)
        dmax[np.arange(self.arg_max.size), self.arg_max] = dout.flatten()
        n, oh, ow, c = dout.shape
        dcol = dmax.reshape(n * oh * ow, c * size)
        return col2im(dcol, self.x.shape, self.ph, self.pw, self.stride, self.pad)


class Dropout:
    """Book-style dropout: mask at training time, scale by (1 - ratio) at test time."""

    def __init__(self, ratio=0.5, rng=None):
        self.ratio = ratio
        self.rng = rng if rng is not None else np.random.default_rng(0)

    def forward(self, x, train_flg=True):
        if train_flg:
            self.mask = self.rng.random(x.shape) > self.ratio
            return x * self.mask
        return x * (1.0 - self.ratio)

    def backward(self, dout):
        return dout * self.mask


def softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


class SoftmaxWithLoss:
    """Softmax + cross entropy on integer labels ``t: (N,)``."""

    def forward(self, x, t):
        self.t = t
        self.y = softmax(x)
        n = x.shape[0]
        return -np.sum(np.log(self.y[np.arange(n), t] + 1e-7)) / n

    def backward(self, dout=1):
        n = self.t.shape[0]
        dx = self.y.copy()
        dx[np.arange(n), self.t] -= 1
        return dx * dout / n


class Adam:
    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.iter = 0
        self.m = None
        self.v = None

    def update(self, params, grads):
        if self.m is None:
            self.m = {k: np.zeros_like(v) for k, v in params.items()}
            self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)
        for k in params:
            g = grads[k]
            self.m[k] = self.beta1 * self.m[k] + (1 - self.beta1) * g
            self.v[k] = self.beta2 * self.v[k] + (1 - self.beta2) * g**2
            params[k] -= lr_t * self.m[k] / (np.sqrt(self.v[k]) + 1e-7)


# --------------------------------------------------------------------------- networks


class _Net:
    """Shared predict / loss / gradient over an ordered list of named layers."""

    layers: OrderedDict
    last: SoftmaxWithLoss
    params: dict

    def predict(self, x, train_flg=False):
        x = np.asarray(x, dtype=FLOAT)
        for layer in self.layers.values():
            x = layer.forward(x, train_flg) if isinstance(layer, Dropout) else layer.forward(x)
        return x

    def loss(self, x, t):
        return self.last.forward(self.predict(x, train_flg=True), t)

    def gradient(self, x, t):
        self.loss(x, t)
        dout = self.last.backward(1)
        for layer in reversed(self.layers.values()):
            dout = layer.backward(dout)
        grads = {}
        for name, layer in self.layers.items():
            if hasattr(layer, "W"):
                idx = self._index[name]
                grads[f"W{idx}"], grads[f"b{idx}"] = layer.dW, layer.db
        return grads

    def numerical_gradient(self, x, t, h=1e-4):
        grads = {}
        for key, p in self.params.items():
            g = np.zeros_like(p)
            it = np.nditer(p, flags=["multi_index"])
            for _ in it:
                i = it.multi_index
                old = p[i]
                p[i] = old + h
                fp = self.loss(x, t)
                p[i] = old - h
                fm = self.loss(x, t)
                p[i] = old
                g[i] = (fp - fm) / (2 * h)
            grads[key] = g
        return grads

    def _register(self, layers):
        self.layers = OrderedDict(layers)
        self._index = {}
        k = 0
        for name, layer in self.layers.items():
            if hasattr(layer, "W"):
                k += 1
                self._index[name] = k
        self.last = SoftmaxWithLoss()


class TwoLayerNet(_Net):
    def __init__(self, input_size=784, hidden_size=50, output_size=10, std=0.01, seed=0):
        rng = np.random.default_rng(seed)
        self.params = {
            "W1": std * rng.standard_normal((input_size, hidden_size)),
            "b1": np.zeros(hidden_size),
            "W2": std * rng.standard_normal((hidden_size, output_size)),
            "b2": np.zeros(output_size),
        }
        p = self.params
        self._register(
            [
                ("Affine1", Affine(p["W1"], p["b1"])),
                ("Relu1", Relu()),
                ("Affine2", Affine(p["W2"], p["b2"])),
            ]
        )


class SimpleConvNet(_Net):
    """conv(30, 5x5) - relu - pool(2) - affine(100) - relu - affine(10) - softmax."""

    def __init__(self, filter_num=30, filter_size=5, hidden_size=100, std=0.01, seed=0):
        rng = np.random.default_rng(seed)
        conv_out = out_size(28, filter_size, 1, 0)
        pooled = filter_num * (conv_out // 2) ** 2
        self.params = {
            "W1": std * rng.standard_normal((filter_num, 1, filter_size, filter_size)),
            "b1": np.zeros(filter_num),
            "W2": std * rng.standard_normal((pooled, hidden_size)),
            "b2": np.zeros(hidden_size),
            "W3": std * rng.standard_normal((hidden_size, 10)),
            "b3": np.zeros(10),
        }
        p = self.params
        self._register(
            [
                ("Conv1", Convolution(p["W1"], p["b1"])),
                ("Relu1", Relu()),
                ("Pool1", Pooling(2, 2, stride=2)),
                ("Affine1", Affine(p["W2"], p["b2"])),
                ("Relu2", Relu()),
                ("Affine2", Affine(p["W3"], p["b3"])),
            ]
        )


class DeepConvNet(_Net):
    """The chapter-8 network: 6 conv 3x3 (16, 16, 32, 32, 64, 64), 3 pools, 2 affine, dropout."""

    def __init__(self, hidden_size=50, seed=0):
        rng = np.random.default_rng(seed)
        convs = [(16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1)]  # (filters, pad)
        self.params = {}
        layers = []
        c_in = 1
        for i, (fn, pad) in enumerate(convs, start=1):
            scale = np.sqrt(2.0 / (c_in * 9))
            self.params[f"W{i}"] = scale * rng.standard_normal((fn, c_in, 3, 3))
            self.params[f"b{i}"] = np.zeros(fn)
            layers.append(
                (f"Conv{i}", Convolution(self.params[f"W{i}"], self.params[f"b{i}"], 1, pad))
            )
            layers.append((f"Relu{i}", Relu()))
            if i % 2 == 0:
                layers.append((f"Pool{i // 2}", Pooling(2, 2, stride=2)))
            c_in = fn
        self.params["W7"] = np.sqrt(2.0 / 1024) * rng.standard_normal((64 * 4 * 4, hidden_size))
        self.params["b7"] = np.zeros(hidden_size)
        self.params["W8"] = np.sqrt(2.0 / hidden_size) * rng.standard_normal((hidden_size, 10))
        self.params["b8"] = np.zeros(10)
        p = self.params
        layers += [
            ("Affine1", Affine(p["W7"], p["b7"])),
            ("Relu7", Relu()),
            ("Dropout1", Dropout(0.5, rng)),
            ("Affine2", Affine(p["W8"], p["b8"])),
            ("Dropout2", Dropout(0.5, rng)),
        ]
        self._register(layers)


MODELS = {"TwoLayerNet": TwoLayerNet, "SimpleConvNet": SimpleConvNet, "DeepConvNet": DeepConvNet}
