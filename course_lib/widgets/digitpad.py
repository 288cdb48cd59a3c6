"""``DigitPad``: draw a digit in the notebook and watch a network classify it.

The browser side (``digitpad.js``, an anywidget module) only draws and shows
results; the kernel preprocesses the canvas like MNIST
(:func:`~course_lib.widgets.preprocess_drawing`, or the student's own function given as
``preprocess=``) and runs ``model.predict``.
While a stroke is drawn the browser sends the canvas at most every
``throttle_ms`` milliseconds; when the stroke ends it always sends it, so the
final prediction is always for the whole drawing.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets as widgets
import numpy as np
import traitlets

from course_lib.widgets.classify import (
    DigitPrediction,
    ModelAdapter,
    Preprocess,
    PreprocessingError,
    predict_digit,
)
from course_lib.widgets.preprocess import EmptyDrawingError

__all__ = ["DigitCanvas", "DigitPad"]

_HERE = Path(__file__).parent

_BLAS_CONTROLLER: Any = None


def _blas_threads_limited(threads: int | None) -> contextlib.AbstractContextManager:
    """Limit BLAS to ``threads`` threads for one classification (``None``: leave it alone).

    One drawing means tiny matrix products, for which several BLAS threads only add
    synchronisation; on a busy machine waiting for a second thread can cost a whole
    scheduler time slice (tens of ms). Needs threadpoolctl; without it, a no-op.
    """
    global _BLAS_CONTROLLER
    if threads is None:
        return contextlib.nullcontext()
    if _BLAS_CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - threadpoolctl is in the course extra
            _BLAS_CONTROLLER = False
        else:
            _BLAS_CONTROLLER = ThreadpoolController()
    if _BLAS_CONTROLLER is False:  # pragma: no cover
        return contextlib.nullcontext()
    return _BLAS_CONTROLLER.limit(limits=threads, user_api="blas")


EMPTY_MESSAGE = "The canvas is empty: draw a digit (0\u20139) with the mouse, a pen or a finger."


class DigitCanvas(anywidget.AnyWidget):
    """The drawing surface, bar chart and 28×28 preview (front end of :class:`DigitPad`).

    Synced state: ``stroke_width`` / ``size`` / ``throttle_ms`` / ``show_preview``
    (settings) and ``probabilities`` / ``prediction`` / ``message`` / ``preview``
    / ``result_seq`` (the latest result, set by the kernel).
    """

    _esm = (_HERE / "digitpad.js").read_text(encoding="utf-8")
    _css = (_HERE / "digitpad.css").read_text(encoding="utf-8")

    size = traitlets.Int(280).tag(sync=True)
    stroke_width = traitlets.Int(22).tag(sync=True)
    throttle_ms = traitlets.Int(120).tag(sync=True)
    show_preview = traitlets.Bool(True).tag(sync=True)
    probabilities = traitlets.List(traitlets.Float(), default_value=[]).tag(sync=True)
    prediction = traitlets.Int(None, allow_none=True).tag(sync=True)
    message = traitlets.Unicode(EMPTY_MESSAGE).tag(sync=True)
    preview = traitlets.Bytes(b"").tag(sync=True)
    result_seq = traitlets.Int(0).tag(sync=True)
    answered_seq = traitlets.Int(0).tag(sync=True)

    def clear(self) -> None:
        """Wipe the drawing in every view of this canvas."""
        self.send({"type": "clear"})


class DigitPad(widgets.VBox):
    """Draw a digit; a model classifies it live.

    Args:
        model: anything with ``predict(x)`` taking ``(N, 1, 28, 28)`` or ``(N, 784)``
            images in [0, 1] and returning ``(N, 10)`` scores (logits or
            probabilities): a ``course_lib`` model or your own network. ``None``
            loads the course's pretrained CNN (``course_lib.pretrained.load('mnist-cnn')``).
        input_shape: ``(1, 28, 28)`` or ``(784,)``; ``None`` infers it from the model.
        preprocess: the function that turns the drawing into the ``(28, 28)`` image the
            model sees: ``drawing (H, W) uint8 ink -> (28, 28)`` floats in [0, 1], e.g. your
            own pipeline from chapter 6. ``None``: course_lib's
            :func:`~course_lib.widgets.preprocess_drawing`.
        stroke_width: pen width in canvas pixels (the slider's start value).
        size: side of the square canvas in pixels.
        show_preview: show the 28×28 image the model sees.
        throttle_ms: while drawing, classify at most this often (the end of a
            stroke is always classified).
        blas_threads: BLAS threads while classifying one drawing (1: fastest for one
            small image; ``None``: leave NumPy's setting alone).

    Example:
        >>> pad = DigitPad()                # the course's pretrained CNN
        >>> pad = DigitPad(my_network)      # your network from the chapters
        >>> pad = DigitPad(my_network, preprocess=preprocess_digit)  # and your preprocessing
        >>> pad                             # draw in the output; pad.prediction follows
    """

    def __init__(
        self,
        model: Any = None,
        *,
        input_shape: tuple[int, ...] | None = None,
        preprocess: Preprocess | None = None,
        stroke_width: int = 22,
        size: int = 280,
        show_preview: bool = True,
        throttle_ms: int = 120,
        blas_threads: int | None = 1,
    ) -> None:
        if not 56 <= int(size) <= 1024:
            raise ValueError(f"size must be between 56 and 1024 pixels; got {size}")
        if not 1 <= int(stroke_width) <= 80:
            raise ValueError(f"stroke_width must be between 1 and 80 pixels; got {stroke_width}")
        if int(throttle_ms) < 0:
            raise ValueError(f"throttle_ms must be >= 0; got {throttle_ms}")
        if model is None:
            from course_lib.pretrained import load

            model = load("mnist-cnn")
        if blas_threads is not None and int(blas_threads) < 1:
            raise ValueError(f"blas_threads must be >= 1 or None; got {blas_threads}")
        if preprocess is not None and not callable(preprocess):
            raise TypeError(f"preprocess must be a function, not {preprocess!r}")
        self._preprocess: Preprocess | None = preprocess
        self._input_shape = input_shape
        self.blas_threads = None if blas_threads is None else int(blas_threads)
        self._adapter = ModelAdapter(model, input_shape)
        self._drawing: np.ndarray | None = None
        self._result: DigitPrediction | None = None
        #: Kernel-side time of the last classification (decode + preprocess + predict), in ms.
        self.last_latency_ms: float | None = None

        self.canvas = DigitCanvas(
            size=int(size),
            stroke_width=int(stroke_width),
            show_preview=bool(show_preview),
            throttle_ms=int(throttle_ms),
        )
        self.stroke_slider = widgets.IntSlider(
            value=int(stroke_width),
            min=4,
            max=60,
            step=1,
            description="stroke",
            continuous_update=False,
            layout=widgets.Layout(width="260px"),
        )
        self.clear_button = widgets.Button(
            description="Clear", icon="eraser", tooltip="Wipe the canvas"
        )
        self.preview_checkbox = widgets.Checkbox(
            value=bool(show_preview), description="show the 28\u00d728 input", indent=False
        )
        widgets.link((self.stroke_slider, "value"), (self.canvas, "stroke_width"))
        widgets.link((self.preview_checkbox, "value"), (self.canvas, "show_preview"))
        self.clear_button.on_click(lambda _button: self.clear())
        self.canvas.on_msg(self._on_message)
        controls = widgets.HBox([self.stroke_slider, self.clear_button, self.preview_checkbox])
        super().__init__([self.canvas, controls])
        self.add_class("digitpad-widget")

    # --- public API --------------------------------------------------------
    @property
    def model(self) -> Any:
        """The model being used; assign another one to switch (the drawing is re-classified)."""
        return self._adapter.model

    @model.setter
    def model(self, model: Any) -> None:
        self._adapter = ModelAdapter(model, self._input_shape)
        if self._drawing is not None:
            self.classify(self._drawing)

    @property
    def preprocess(self) -> Preprocess | None:
        """The preprocessing function (``None``: course_lib's); assign another one to switch."""
        return self._preprocess

    @preprocess.setter
    def preprocess(self, preprocess: Preprocess | None) -> None:
        if preprocess is not None and not callable(preprocess):
            raise TypeError(f"preprocess must be a function, not {preprocess!r}")
        self._preprocess = preprocess
        if self._drawing is not None:
            self.classify(self._drawing)

    @property
    def prediction(self) -> int | None:
        """The predicted digit, or ``None`` when nothing is drawn."""
        return None if self._result is None else self._result.digit

    @property
    def probabilities(self) -> np.ndarray | None:
        """``(10,)`` class probabilities of the current drawing, or ``None``."""
        return None if self._result is None else self._result.probabilities.copy()

    @property
    def image(self) -> np.ndarray | None:
        """``(28, 28)`` float32: the preprocessed image the model saw, or ``None``."""
        return None if self._result is None else self._result.image.copy()

    @property
    def drawing(self) -> np.ndarray | None:
        """``(size, size)`` uint8 ink (canvas alpha) of the last drawing received, or ``None``."""
        return None if self._drawing is None else self._drawing.copy()

    def clear(self) -> None:
        """Wipe the canvas and the prediction."""
        self.canvas.clear()
        self._drawing = None
        self._show(None, EMPTY_MESSAGE, seq=0)

    def classify(self, drawing: np.ndarray, *, seq: int | None = None) -> DigitPrediction | None:
        """Classify ``drawing`` and show the result, as if it had been drawn.

        Args:
            drawing: ``(H, W)`` grey (ink bright) or ``(H, W, 4)`` RGBA.
            seq: number of the front end's image this answers (internal; 0: none).

        Returns:
            the :class:`DigitPrediction`, or ``None`` for an empty drawing or a
            model error (the message says which).
        """
        start = time.perf_counter()
        self._drawing = np.array(drawing, copy=True)
        seq = 0 if seq is None else seq
        try:
            with _blas_threads_limited(self.blas_threads):
                result = predict_digit(
                    self._adapter,
                    self._drawing,
                    preprocess=True if self._preprocess is None else self._preprocess,
                )
        except EmptyDrawingError:
            self._show(None, EMPTY_MESSAGE, seq=seq)
            return None
        except PreprocessingError as exc:
            self._show(None, f"The preprocessing failed: {exc}", seq=seq)
            return None
        except Exception as exc:
            self._show(None, f"The model failed: {type(exc).__name__}: {exc}", seq=seq)
            return None
        finally:
            self.last_latency_ms = (time.perf_counter() - start) * 1000.0
        self._show(result, f"{result.digit} ({100 * result.confidence:.1f}% sure)", seq=seq)
        return result

    # --- internals ---------------------------------------------------------
    def _show(self, result: DigitPrediction | None, message: str, *, seq: int) -> None:
        self._result = result
        with self.canvas.hold_sync():
            if result is None:
                self.canvas.probabilities = []
                self.canvas.prediction = None
                self.canvas.preview = b""
            else:
                self.canvas.probabilities = [float(p) for p in result.probabilities]
                self.canvas.prediction = result.digit
                self.canvas.preview = (
                    np.clip(result.image * 255.0 + 0.5, 0, 255).astype(np.uint8).tobytes()
                )
            self.canvas.message = message
            # ``answered_seq`` tells the front end which of its images this answers
            # (0: not one of them); ``result_seq`` always changes, so it re-renders.
            self.canvas.answered_seq = int(seq)
            self.canvas.result_seq = self.canvas.result_seq + 1

    def _on_message(self, _widget: Any, content: dict, buffers: list) -> None:
        if not isinstance(content, dict) or content.get("type") != "image" or not buffers:
            return
        width, height = int(content.get("width", 0)), int(content.get("height", 0))
        data = np.frombuffer(bytes(buffers[0]), dtype=np.uint8)
        if width <= 0 or height <= 0 or data.size != width * height:
            self._show(None, "Received a malformed canvas image.", seq=0)
            return
        self.classify(data.reshape(height, width), seq=int(content.get("seq", 0)))
