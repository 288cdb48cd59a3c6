"""Planted wrong answers: mistakes a student could plausibly make, one per exercise.

Used by tests/test_chapter_grading.py (each planted alone, graded by plain nbgrader) and
tests/test_grade_solutions.py (planted together, graded by `course-lib grade`).
"""

from __future__ import annotations

from grading_support import Plant

# One entry per chapter: wrong answers a student could plausibly write, each planted into the
# solution cell named by `cell`, and the test cells (grade ids) that must lose their points.
P = Plant
PLANTED: dict[str, tuple[Plant, ...]] = {
    "ch01_differentiation": (
        P(
            "numerical_diff-off-by-factor-2",
            "ch01_differentiation-numerical_diff",
            "return (f(x + h) - f(x - h)) / (2 * h)",
            "return (f(x + h) - f(x - h)) / h",
            ("ch01_differentiation-numerical_diff-tests",),
        ),
        P(
            "difference_errors-central-is-forward",
            "ch01_differentiation-difference_errors",
            "central = [abs(numerical_diff(f, x, h) - dfdx) for h in hs]",
            "central = [abs((f(x + h) - f(x)) / h - dfdx) for h in hs]",
            ("ch01_differentiation-difference_errors-tests",),
        ),
        P(
            "numerical_gradient-sign-error",
            "ch01_differentiation-numerical_gradient",
            "grad[idx] = (fxh1 - fxh2) / (2 * h)",
            "grad[idx] = (fxh2 - fxh1) / (2 * h)",
            (
                "ch01_differentiation-numerical_gradient-values-tests",
                "ch01_differentiation-numerical_gradient-shapes-tests",
            ),
        ),
        P(
            "gradient_descent-update-off-by-factor",
            "ch01_differentiation-gradient_descent",
            "x = x - lr * grad_f(x)",
            "x = x - 2 * lr * grad_f(x)",
            ("ch01_differentiation-gradient_descent-tests",),
        ),
        P(
            "least_squares_gradient-sum-not-mean",
            "ch01_differentiation-least_squares_gradient",
            "return x.T @ residuals / x.shape[0]",
            "return x.T @ residuals",
            ("ch01_differentiation-least_squares_gradient-tests",),
        ),
        P(
            "softmax-sum-over-wrong-axis",
            "ch01_differentiation-softmax",
            "return e / np.sum(e, axis=-1, keepdims=True)",
            "return e / np.sum(e, axis=0, keepdims=True)",
            ("ch01_differentiation-softmax-tests",),
        ),
        P(
            "cross_entropy_error-argmax-wrong-axis",
            "ch01_differentiation-cross_entropy_error",
            "t = t.argmax(axis=1)",
            "t = t.argmax(axis=0)",
            ("ch01_differentiation-cross_entropy_error-tests",),
        ),
    ),
    "ch02_backpropagation": (
        P(
            "mul-backward-swapped-inputs",
            "ch02_backpropagation-mul_add",
            "return dout * self.y, dout * self.x",
            "return dout * self.x, dout * self.y",
            ("ch02_backpropagation-mul-tests",),
        ),
        P(
            "relu-backward-sign-error",
            "ch02_backpropagation-relu",
            "return np.where(self.mask, 0, dout)",
            "return np.where(self.mask, 0, -dout)",
            ("ch02_backpropagation-relu-backward-tests",),
        ),
        P(
            "sigmoid-backward-sign-error",
            "ch02_backpropagation-sigmoid",
            "return dout * self.out * (1.0 - self.out)",
            "return -dout * self.out * (1.0 - self.out)",
            ("ch02_backpropagation-sigmoid-backward-tests",),
        ),
        P(
            "affine-db-sum-over-wrong-axis",
            "ch02_backpropagation-affine",
            "self.db = np.sum(dout, axis=0)",
            "self.db = np.sum(dout, axis=1)",
            ("ch02_backpropagation-affine-backward-tests",),
        ),
        P(
            "two_layer_net-backward-in-forward-order",
            "ch02_backpropagation-two_layer_net",
            "for layer in reversed(list(self.layers.values())):",
            "for layer in list(self.layers.values()):",
            ("ch02_backpropagation-two_layer_net-tests",),
        ),
        P(
            "initial_loss_check-log10",
            "ch02_backpropagation-initial_loss_check",
            "expected = float(np.log(n_classes))",
            "expected = float(np.log10(n_classes))",
            ("ch02_backpropagation-initial_loss_check-tests",),
        ),
        P(
            "gradient_check-keeps-only-the-last-parameter",
            "ch02_backpropagation-gradient_check",
            "worst = max(worst, float(error.max()))",
            "worst = float(error.max())",
            ("ch02_backpropagation-gradient_check-tests",),
        ),
        P(
            # a hand-written numerical gradient that never puts the moved entry back
            "gradient_check-leaves-the-parameters-moved",
            "ch02_backpropagation-gradient_check",
            "numerical = course_lib.gradcheck.numerical_gradient(lambda _: network.loss(x, t), param, h)",
            "numerical = np.zeros_like(param)\n"
            "        for i in np.ndindex(param.shape):\n"
            "            old = param[i]\n"
            "            param[i] = old + h\n"
            "            up = network.loss(x, t)\n"
            "            param[i] = old - h\n"
            "            numerical[i] = (up - network.loss(x, t)) / (2 * h)",
            ("ch02_backpropagation-gradient_check-tests",),
        ),
    ),
    "ch03_training_techniques": (
        P(
            "sgd-update-sign-error",
            "ch03_training_techniques-sgd",
            "params[key] -= self.lr * grads[key]",
            "params[key] += self.lr * grads[key]",
            ("ch03_training_techniques-sgd-tests",),
        ),
        P(
            "momentum-velocity-not-decayed",
            "ch03_training_techniques-momentum",
            "self.v[key] = self.momentum * self.v[key] - self.lr * grads[key]",
            "self.v[key] = self.v[key] - self.lr * grads[key]",
            ("ch03_training_techniques-momentum-tests",),
        ),
        P(
            "adam-step-off-by-factor",
            "ch03_training_techniques-adam",
            "lr_t = self.lr * np.sqrt(1.0 - self.beta2**t) / (1.0 - self.beta1**t)",
            "lr_t = self.lr",
            ("ch03_training_techniques-adam-tests",),
        ),
        P(
            "batch_norm-dbeta-sum-over-wrong-axis",
            "ch03_training_techniques-batch_norm",
            "self.dbeta = dout.sum(axis=0)",
            "self.dbeta = dout.sum(axis=1)",
            ("ch03_training_techniques-batch_norm-backward-tests",),
        ),
        P(
            "dropout-backward-ignores-mask",
            "ch03_training_techniques-dropout",
            "return dout * self.mask",
            "return dout",
            ("ch03_training_techniques-dropout-backward-tests",),
        ),
        P(
            "split_validation-labels-not-shuffled",
            "ch03_training_techniques-split_validation",
            "x_shuffled, t_shuffled = x[perm], t[perm]",
            "x_shuffled, t_shuffled = x[perm], t",
            ("ch03_training_techniques-split_validation-tests",),
        ),
        P(
            "batch_norm-backward-misses-the-variance-path",
            "ch03_training_techniques-batch_norm",
            "dx = (dxn - dxn.mean(axis=0) - self.xn * np.mean(dxn * self.xn, axis=0)) / self.std",
            "dx = (dxn - dxn.mean(axis=0)) / self.std",
            ("ch03_training_techniques-batch_norm-backward-tests",),
        ),
        P(
            "overfit_tiny_batch-stops-at-90-percent",
            "ch03_training_techniques-overfit_tiny_batch",
            "if network.accuracy(x, t) == 1.0:",
            "if network.accuracy(x, t) >= 0.9:",
            ("ch03_training_techniques-overfit_tiny_batch-tests",),
        ),
        P(
            "lr_sweep-one-batch-generator-for-all-rates",
            "ch03_training_techniques-lr_sweep",
            "batches = np.random.default_rng(seed)  # the same mini-batches for every learning rate",
            "batches = batches if k else np.random.default_rng(seed)",
            ("ch03_training_techniques-lr_sweep-tests",),
        ),
    ),
    "ch04_convolutional_networks": (
        P(
            "conv_output_size-pad-off-by-factor",
            "ch04-conv-output-size",
            "return (input_size + 2 * pad - filter_size) // stride + 1",
            "return (input_size + pad - filter_size) // stride + 1",
            ("ch04-conv-output-size-tests",),
        ),
        P(
            "col2im-overlaps-not-added",
            "ch04-col2im",
            "img[:, :, rows, cols] += blocks[:, :, u, v]",
            "img[:, :, rows, cols] = blocks[:, :, u, v]",
            ("ch04-col2im-tests",),
        ),
        P(
            "convolution-dW-missing-transpose",
            "ch04-convolution",
            "self.dW = (self.col.T @ dout).T.reshape(FN, C, FH, FW)",
            "self.dW = (self.col.T @ dout).reshape(FN, C, FH, FW)",
            ("ch04-convolution-backward-tests",),
        ),
        P(
            "convolution-db-sum-over-wrong-axis",
            "ch04-convolution",
            "self.db = dout.sum(axis=0)",
            "self.db = dout.sum(axis=1)",
            ("ch04-convolution-backward-tests",),
        ),
        P(
            "pooling-backward-sign-error",
            "ch04-pooling",
            "dmax[np.arange(flat.size), self.arg_max] = flat",
            "dmax[np.arange(flat.size), self.arg_max] = -flat",
            ("ch04-pooling-backward-tests",),
        ),
        P(
            "pooling-backward-spreads-over-the-window",
            "ch04-pooling",
            "dmax[np.arange(flat.size), self.arg_max] = flat",
            "dmax[:] = flat[:, None] / size",
            ("ch04-pooling-backward-tests",),
        ),
    ),
    "ch05_deep_networks": (
        P(
            "conv_param_count-missing-factor",
            "ch05-why-deeper",
            "return int(c_out * c_in * kernel_h * kernel_w + (c_out if bias else 0))",
            "return int(c_in * kernel_h * kernel_w + (c_out if bias else 0))",
            ("ch05-why-deeper-tests",),
        ),
        P(
            "shift_images-wrong-direction",
            "ch05-shift-images",
            "out[..., dst_r, dst_c] = x[..., src_r, src_c]",
            "out[..., src_r, src_c] = x[..., dst_r, dst_c]",
            ("ch05-shift-images-tests",),
        ),
        P(
            "leaky_relu-backward-sign-error",
            "ch05-leaky-relu",
            "return np.where(self.mask, dout, self.alpha * dout)",
            "return np.where(self.mask, dout, -self.alpha * dout)",
            ("ch05-leaky-relu-tests",),
        ),
        P(
            "global_avg_pooling-backward-off-by-factor",
            "ch05-global-avg-pooling",
            "(dout / (H * W))",
            "(dout / H)",
            ("ch05-global-avg-pooling-tests",),
        ),
        P(
            "load_params-drops-a-parameter",
            "ch05-save-load",
            "return {name: data[name] for name in data.files}",
            "return {name: data[name] for name in data.files[1:]}",
            ("ch05-save-load-tests",),
        ),
        P(
            "residual_block-backward-forgets-the-skip-path",
            "ch05-residual-block",
            "return dout + da @ self.Wa.T",
            "return da @ self.Wa.T",
            ("ch05-residual-backward-tests",),
        ),
        P(
            "cosine_lr-quarter-period",
            "ch05-cosine-lr",
            "math.cos(math.pi * step / total_steps)",
            "math.cos(math.pi * step / total_steps / 2)",
            ("ch05-cosine-lr-tests",),
        ),
        P(
            "inverted_dropout-backward-forgets-the-scale",
            "ch05-inverted-dropout",
            "return (dout * self.mask / (1.0 - self.dropout_ratio))",
            "return (dout * self.mask)",
            ("ch05-inverted-dropout-backward-tests",),
        ),
    ),
    "ch06_draw_a_digit": (
        P(
            "ink_bounding_box-rows-from-wrong-axis",
            "ch06-ink-bounding-box",
            "rows = np.flatnonzero(mask.any(axis=1))",
            "rows = np.flatnonzero(mask.any(axis=0))",
            ("ch06-ink-bounding-box-tests",),
        ),
        P(
            "center_of_mass-row-col-swapped",
            "ch06-center-of-mass",
            "return float(image.sum(axis=1) @ rows / total), float(image.sum(axis=0) @ cols / total)",
            "return float(image.sum(axis=0) @ cols / total), float(image.sum(axis=1) @ rows / total)",
            ("ch06-center-of-mass-tests",),
        ),
        P(
            "fit_into_box-not-centred",
            "ch06-fit-into-box",
            "top, left = (side - h) // 2, (side - w) // 2",
            "top, left = 0, 0",
            ("ch06-fit-into-box-tests",),
        ),
        P(
            "center_by_mass-shift-sign-error",
            "ch06-center-by-mass",
            "top = int(np.clip(np.round(field // 2 - cy), 0, field - h))",
            "top = int(np.clip(np.round(field // 2 + cy), 0, field - h))",
            ("ch06-center-by-mass-tests",),
        ),
        P(
            "preprocess_digit-divides-by-the-sum",
            "ch06-preprocess-digit",
            "return (placed / placed.max()).astype(np.float32)",
            "return (placed / placed.sum()).astype(np.float32)",
            ("ch06-preprocess-digit-tests",),
        ),
    ),
}
