"""Classify a drawing with any model that has ``predict(x)``.

The model may be a ``course_lib`` model or a student's own network: all that
is needed is a ``predict`` method taking a batch of MNIST-like images, either
``(N, 1, 28, 28)`` (convolutional networks) or ``(N, 784)`` (fully connected
ones), and returning ``(N, 10)`` scores (logits or probabilities).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from course_lib.widgets.preprocess import (
    FIELD_SIZE,
    EmptyDrawingError,
    ink_bounding_box,
    preprocess_drawing,
    to_ink,
)

__all__ = [
    "DigitPrediction",
    "ModelAdapter",
    "PreprocessingError",
    "Predictor",
    "predict_digit",
    "run_preprocess",
]

#: a preprocessing function: a drawing ``(H, W)`` / ``(H, W, 4)`` -> ``(28, 28)`` in [0, 1]
Preprocess = Callable[[np.ndarray], np.ndarray]


class PreprocessingError(ValueError):
    """A preprocessing function (e.g. a student's) raised or returned something unusable."""


IMAGE_SHAPE = (1, FIELD_SIZE, FIELD_SIZE)
FLAT_SHAPE = (FIELD_SIZE * FIELD_SIZE,)


@runtime_checkable
class Predictor(Protocol):
    """Anything with ``predict(x)``: ``x (N, 1, 28, 28)`` or ``(N, 784)`` -> ``(N, 10)`` scores."""

    def predict(self, x: np.ndarray) -> Any: ...


@dataclass(frozen=True)
class DigitPrediction:
    """What a model says about one drawing.

    Attributes:
        digit: the most probable class, 0..9.
        probabilities: ``(10,)`` float64, sums to 1.
        image: ``(28, 28)`` float32, the preprocessed image the model saw.
    """

    digit: int
    probabilities: np.ndarray = field(repr=False)
    image: np.ndarray = field(repr=False)

    @property
    def confidence(self) -> float:
        """Probability of the predicted digit."""
        return float(self.probabilities[self.digit])


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _looks_like_probabilities(scores: np.ndarray) -> bool:
    return bool(
        np.all(scores >= 0.0)
        and np.all(scores <= 1.0)
        and np.allclose(scores.sum(axis=-1), 1.0, atol=1e-3)
    )


class ModelAdapter:
    """Feeds 28×28 images to a model in the input layout it expects.

    Args:
        model: object with ``predict(x)``.
        input_shape: per-image input shape, ``(1, 28, 28)`` or ``(784,)``; ``None``
            infers it: from the first weight of ``model.params`` if there is one
            (4-D: convolutional, 2-D: fully connected), else by trying both.
    """

    def __init__(self, model: Any, input_shape: tuple[int, ...] | None = None) -> None:
        predict = getattr(model, "predict", None)
        if not callable(predict):
            raise TypeError(
                f"the model must have a predict(x) method; got {type(model).__name__} without one"
            )
        if input_shape is not None:
            input_shape = tuple(int(s) for s in input_shape)
            if input_shape not in (IMAGE_SHAPE, FLAT_SHAPE, (FIELD_SIZE, FIELD_SIZE)):
                raise ValueError(
                    f"input_shape must be {IMAGE_SHAPE}, {FLAT_SHAPE} or (28, 28); "
                    f"got {input_shape}"
                )
        self.model = model
        self.input_shape: tuple[int, ...] | None = input_shape or self._guess_shape(model)
        self.dtype = self._guess_dtype(model)

    @staticmethod
    def _first_weight(model: Any) -> np.ndarray | None:
        params = getattr(model, "params", None)
        if not isinstance(params, dict) or not params:
            return None
        weight = params.get("W1")
        if weight is None:
            weight = next((v for v in params.values() if getattr(v, "ndim", 0) >= 2), None)
        return weight if isinstance(weight, np.ndarray) else None

    def _guess_shape(self, model: Any) -> tuple[int, ...] | None:
        weight = self._first_weight(model)
        if weight is None:
            return None
        if weight.ndim == 4:
            return IMAGE_SHAPE
        if weight.ndim == 2 and weight.shape[0] == FLAT_SHAPE[0]:
            return FLAT_SHAPE
        return None

    def _guess_dtype(self, model: Any) -> np.dtype:
        weight = self._first_weight(model)
        if weight is not None and np.issubdtype(weight.dtype, np.floating):
            return weight.dtype
        return np.dtype(np.float32)

    def _run(self, images: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        x = images.reshape((images.shape[0], *shape)).astype(self.dtype, copy=False)
        scores = np.asarray(self.model.predict(x), dtype=np.float64)
        if scores.ndim == 1 and images.shape[0] == 1:
            scores = scores[None, :]
        if scores.shape != (images.shape[0], 10):
            raise ValueError(
                f"model.predict returned shape {scores.shape} for input {x.shape}; "
                f"expected ({images.shape[0]}, 10): one score per digit"
            )
        if not np.all(np.isfinite(scores)):
            raise ValueError("model.predict returned NaN or infinite scores")
        return scores

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities for ``images (N, 28, 28)`` -> ``(N, 10)``.

        Scores that are already probabilities (non-negative, rows sum to 1) are
        used as they are; anything else is treated as logits and softmaxed.
        """
        images = np.asarray(images)
        if images.ndim == 2:
            images = images[None]
        if images.shape[1:] != (FIELD_SIZE, FIELD_SIZE):
            raise ValueError(f"images must be (N, 28, 28); got {images.shape}")
        if self.input_shape is not None:
            scores = self._run(images, self.input_shape)
        else:
            errors = []
            for shape in (IMAGE_SHAPE, FLAT_SHAPE):
                try:
                    scores = self._run(images, shape)
                except Exception as exc:
                    errors.append(f"{shape}: {type(exc).__name__}: {exc}")
                    continue
                self.input_shape = shape
                break
            else:
                raise ValueError(
                    "model.predict accepted neither (N, 1, 28, 28) nor (N, 784) input; "
                    "pass input_shape=... explicitly. Errors: " + "; ".join(errors)
                )
        if _looks_like_probabilities(scores):
            return scores / scores.sum(axis=-1, keepdims=True)
        return _softmax(scores)


def run_preprocess(preprocess: Preprocess | bool, drawing: np.ndarray) -> np.ndarray:
    """The ``(28, 28)`` float32 image ``preprocess`` makes of ``drawing``.

    ``preprocess``: a function (e.g. the student's own pipeline of chapter 6), ``True`` for
    :func:`~course_lib.widgets.preprocess_drawing`, or ``False`` when ``drawing`` already is
    the ``(28, 28)`` image. A drawing without ink raises :class:`EmptyDrawingError` before any
    function runs; what a function raises, or a result that is not ``(28, 28)`` finite
    numbers, raises :class:`PreprocessingError` saying so.
    """
    if preprocess is False:
        image = np.asarray(drawing, dtype=np.float32)
    elif preprocess is True:
        image = preprocess_drawing(drawing)
    else:
        if not callable(preprocess):
            raise TypeError(f"preprocess must be a function or True/False, not {preprocess!r}")
        if ink_bounding_box(to_ink(drawing)) is None:
            raise EmptyDrawingError("The canvas is empty: draw a digit first.")
        name = getattr(preprocess, "__name__", "preprocess")
        try:
            out = preprocess(np.array(drawing, copy=True))
        except Exception as exc:
            raise PreprocessingError(f"{name} raised {type(exc).__name__}: {exc}") from exc
        try:
            image = np.asarray(out, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise PreprocessingError(f"{name} returned {type(out).__name__}, not an array") from exc
        if image.shape != (FIELD_SIZE, FIELD_SIZE):
            raise PreprocessingError(
                f"{name} returned shape {image.shape}; expected (28, 28), the image the "
                "network sees"
            )
        if not np.all(np.isfinite(image)):
            raise PreprocessingError(f"{name} returned NaN or infinite values")
    if image.shape != (FIELD_SIZE, FIELD_SIZE):
        raise ValueError(f"a preprocessed image must be (28, 28); got {image.shape}")
    return image


def predict_digit(
    model: Any,
    drawing: np.ndarray,
    *,
    input_shape: tuple[int, ...] | None = None,
    preprocess: Preprocess | bool = True,
) -> DigitPrediction:
    """Preprocess ``drawing`` like MNIST and classify it.

    Args:
        model: anything with ``predict(x)`` (see :class:`ModelAdapter`), or a
            :class:`ModelAdapter`.
        drawing: ``(H, W)`` grey / ``(H, W, 4)`` RGBA drawing, or with
            ``preprocess=False`` an already preprocessed ``(28, 28)`` image.
        input_shape: see :class:`ModelAdapter`.
        preprocess: ``True``: :func:`~course_lib.widgets.preprocess_drawing`; a function
            ``drawing -> (28, 28)`` (e.g. your own); ``False``: none (see :func:`run_preprocess`).

    Returns:
        :class:`DigitPrediction`.

    Raises:
        EmptyDrawingError: the drawing has no ink.
        PreprocessingError: a preprocessing function failed or returned a wrong shape.
    """
    adapter = model if isinstance(model, ModelAdapter) else ModelAdapter(model, input_shape)
    image = run_preprocess(preprocess, drawing)
    probs = adapter.probabilities(image[None])[0]
    return DigitPrediction(digit=int(np.argmax(probs)), probabilities=probs, image=image)
