"""DigitPad kernel side: messages from the canvas, models of every kind, results shown.

The browser itself is exercised in tests/test_browser_digitpad.py; here the
widget receives exactly the message the front end sends (the canvas alpha as a
binary buffer) and its synced state is checked.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("anywidget", reason="DigitPad needs the course extra (anywidget)")

from course_lib.layers import Affine, Convolution, Relu
from course_lib.models import Sequential
from course_lib.widgets import (
    DigitPad,
    ModelAdapter,
    PreprocessingError,
    predict_digit,
    preprocess_drawing,
)
from course_lib.widgets.synthetic import stroke_line

SIZE = 280


def vertical_stroke() -> np.ndarray:
    return (stroke_line(np.zeros((SIZE, SIZE)), [[140, 40], [140, 240]], 20) * 255).astype(np.uint8)


def horizontal_stroke() -> np.ndarray:
    return (stroke_line(np.zeros((SIZE, SIZE)), [[40, 140], [240, 140]], 20) * 255).astype(np.uint8)


class TemplateNet:
    """A student's fully connected network: one template per class (flat input, logits)."""

    def __init__(self) -> None:
        W = np.zeros((784, 10), dtype=np.float32)
        W[:, 1] = preprocess_drawing(vertical_stroke()).ravel()  # '1': a vertical bar
        W[:, 0] = 0.8 * preprocess_drawing(horizontal_stroke()).ravel()  # class 0: a dash
        self.params = {"W1": W, "b1": np.zeros(10, dtype=np.float32)}
        self.calls: list[tuple[tuple[int, ...], np.dtype]] = []

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.calls.append((x.shape, x.dtype))
        return 4.0 * (x @ self.params["W1"] + self.params["b1"])


def message_for(image: np.ndarray, seq: int = 1) -> tuple[dict, list]:
    """What the browser sends at the end of a stroke."""
    h, w = image.shape
    content = {"type": "image", "seq": seq, "final": True, "width": w, "height": h}
    return content, [memoryview(image.astype(np.uint8).tobytes())]


def test_message_from_the_canvas_is_classified_and_shown():
    net = TemplateNet()
    pad = DigitPad(net)
    content, buffers = message_for(vertical_stroke(), seq=5)
    pad._on_message(pad.canvas, content, buffers)
    assert pad.prediction == 1
    assert net.calls[-1] == ((1, 784), np.dtype(np.float32))
    state = pad.canvas
    assert state.prediction == 1
    assert state.answered_seq == 5
    assert len(state.probabilities) == 10
    assert sum(state.probabilities) == pytest.approx(1.0)
    assert np.argmax(state.probabilities) == 1
    assert len(state.preview) == 28 * 28
    preview = np.frombuffer(state.preview, dtype=np.uint8).reshape(28, 28)
    np.testing.assert_allclose(preview / 255.0, pad.image, atol=1 / 255)
    assert state.message.startswith("1 (")
    assert pad.last_latency_ms is not None and pad.last_latency_ms > 0
    np.testing.assert_array_equal(pad.drawing, vertical_stroke())

    before = state.result_seq
    pad._on_message(pad.canvas, *message_for(horizontal_stroke(), seq=6))
    assert pad.prediction == 0
    assert state.result_seq == before + 1


def test_empty_canvas_gives_no_prediction_and_a_friendly_message():
    pad = DigitPad(TemplateNet())
    pad._on_message(pad.canvas, *message_for(np.zeros((SIZE, SIZE), dtype=np.uint8)))
    assert pad.prediction is None
    assert pad.probabilities is None
    assert pad.canvas.prediction is None
    assert pad.canvas.probabilities == []
    assert pad.canvas.preview == b""
    assert "empty" in pad.canvas.message and "draw a digit" in pad.canvas.message


def test_clear_resets_the_result():
    pad = DigitPad(TemplateNet())
    pad.classify(vertical_stroke())
    assert pad.prediction == 1
    pad.clear_button.click()
    assert pad.prediction is None and pad.drawing is None
    assert pad.canvas.prediction is None
    assert "empty" in pad.canvas.message


def test_malformed_message_is_reported_not_raised():
    pad = DigitPad(TemplateNet())
    pad._on_message(pad.canvas, {"type": "image", "width": 10, "height": 10}, [b"\x00" * 7])
    assert "malformed" in pad.canvas.message
    pad._on_message(pad.canvas, {"type": "unknown"}, [])  # ignored
    assert "malformed" in pad.canvas.message


def test_convolutional_course_lib_model_gets_image_input():
    rng = np.random.default_rng(0)
    net = Sequential(
        [
            Convolution(0.1 * rng.standard_normal((2, 1, 3, 3)), np.zeros(2), pad=1),
            Relu(),
            Affine(0.01 * rng.standard_normal((2 * 28 * 28, 10)), np.zeros(10)),
        ]
    )
    adapter = ModelAdapter(net)
    assert adapter.input_shape == (1, 28, 28)
    assert adapter.dtype == np.float64  # the model's own dtype
    result = predict_digit(net, vertical_stroke())
    expected = net.predict(result.image.reshape(1, 1, 28, 28).astype(np.float64))[0]
    e = np.exp(expected - expected.max())
    np.testing.assert_allclose(result.probabilities, e / e.sum(), rtol=1e-6)
    assert result.digit == int(np.argmax(expected))


def test_model_without_params_is_probed_for_its_input_layout():
    class FlatOnly:
        def predict(self, x):
            if x.ndim != 2:
                raise ValueError("I take (N, 784)")
            return np.tile(np.arange(10.0), (x.shape[0], 1))

    adapter = ModelAdapter(FlatOnly())
    assert adapter.input_shape is None
    probs = adapter.probabilities(np.zeros((1, 28, 28)))
    assert adapter.input_shape == (784,)
    assert probs.argmax() == 9


def test_probabilities_are_used_as_they_are():
    class Calibrated:
        def predict(self, x):
            p = np.full((x.shape[0], 10), 0.05)
            p[:, 3] = 0.55
            return p

    result = predict_digit(Calibrated(), vertical_stroke(), input_shape=(784,))
    assert result.digit == 3
    assert result.probabilities[3] == pytest.approx(0.55)
    assert result.confidence == pytest.approx(0.55)


def test_a_failing_student_model_is_reported_in_the_widget():
    class Broken:
        def predict(self, x):
            raise RuntimeError("forgot to implement the forward pass")

    pad = DigitPad(Broken(), input_shape=(784,))
    assert pad.classify(vertical_stroke()) is None
    assert "The model failed: RuntimeError: forgot to implement" in pad.canvas.message
    assert pad.prediction is None


def test_wrong_output_shape_is_explained():
    class FiveClasses:
        def predict(self, x):
            return np.zeros((x.shape[0], 5))

    with pytest.raises(ValueError, match=r"expected \(1, 10\)"):
        predict_digit(FiveClasses(), vertical_stroke(), input_shape=(784,))
    pad = DigitPad(FiveClasses(), input_shape=(784,))
    pad.classify(vertical_stroke())
    assert "one score per digit" in pad.canvas.message


def test_switching_the_model_reclassifies_the_drawing():
    class AlwaysSeven:
        def predict(self, x):
            out = np.zeros((x.shape[0], 10))
            out[:, 7] = 5.0
            return out

    pad = DigitPad(TemplateNet())
    pad.classify(vertical_stroke())
    assert pad.prediction == 1
    pad.model = AlwaysSeven()
    assert pad.prediction == 7
    assert pad.canvas.prediction == 7


def test_controls_are_linked_to_the_canvas():
    pad = DigitPad(TemplateNet(), stroke_width=30, show_preview=False)
    assert pad.canvas.stroke_width == 30
    pad.stroke_slider.value = 12
    assert pad.canvas.stroke_width == 12
    assert pad.canvas.show_preview is False
    pad.preview_checkbox.value = True
    assert pad.canvas.show_preview is True
    assert "export default" in pad.canvas._esm


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 20}, "size"),
        ({"stroke_width": 0}, "stroke_width"),
        ({"throttle_ms": -1}, "throttle_ms"),
        ({"input_shape": (28, 29)}, "input_shape"),
        ({"blas_threads": 0}, "blas_threads"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DigitPad(TemplateNet(), **kwargs)


def test_one_drawing_is_classified_with_one_blas_thread():
    threadpoolctl = pytest.importorskip("threadpoolctl")

    class Spy(TemplateNet):
        def predict(self, x):
            self.blas = [i["num_threads"] for i in threadpoolctl.threadpool_info()
                         if i["user_api"] == "blas"]  # fmt: skip
            return super().predict(x)

    net = Spy()
    pad = DigitPad(net)
    pad.classify(vertical_stroke())
    assert net.blas and set(net.blas) == {1}
    limited = pad.probabilities
    pad.blas_threads = None  # NumPy's own setting: same answer
    pad.classify(vertical_stroke())
    np.testing.assert_allclose(pad.probabilities, limited, rtol=1e-6)


def test_object_without_predict_is_rejected():
    with pytest.raises(TypeError, match="predict"):
        DigitPad(object())


def test_default_model_is_the_pretrained_cnn_and_reads_a_drawn_seven():
    pytest.importorskip("course_lib.pretrained")
    pad = DigitPad()
    # the same strokes the browser test draws
    seven = stroke_line(
        np.zeros((SIZE, SIZE)),
        [(70, 62), (120, 60), (210, 58), (180, 120), (150, 180), (125, 240)],
        22,
    )
    rgba = np.zeros((SIZE, SIZE, 4), dtype=np.uint8)
    rgba[..., 3] = np.round(seven * 255).astype(np.uint8)
    result = pad.classify(rgba)
    assert result is not None and result.digit == 7, pad.canvas.message


# --- the student's own preprocessing: DigitPad(model, preprocess=fn) ---------------------


class StudentPipeline:
    """A student's preprocessing function: course_lib's steps, transposed (a classic slip)."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, ...], np.dtype]] = []

    def __call__(self, drawing: np.ndarray) -> np.ndarray:
        self.calls.append((drawing.shape, drawing.dtype))
        return preprocess_drawing(drawing).T


def test_the_students_preprocessing_makes_the_image_the_model_sees():
    pipeline = StudentPipeline()
    pad = DigitPad(TemplateNet(), preprocess=pipeline)
    pad._on_message(pad.canvas, *message_for(vertical_stroke(), seq=3))
    assert pipeline.calls == [((SIZE, SIZE), np.dtype(np.uint8))]  # the canvas ink, as sent
    # the transposed vertical bar is horizontal: the model sees the student's image
    np.testing.assert_allclose(pad.image, preprocess_drawing(vertical_stroke()).T)
    assert pad.prediction == 0
    preview = np.frombuffer(pad.canvas.preview, dtype=np.uint8).reshape(28, 28)
    np.testing.assert_allclose(preview / 255.0, pad.image, atol=1 / 255)
    assert pad.canvas.answered_seq == 3
    # the same drawing with course_lib's preprocessing
    assert DigitPad(TemplateNet()).classify(vertical_stroke()).digit == 1
    result = predict_digit(TemplateNet(), vertical_stroke(), preprocess=StudentPipeline())
    assert result.digit == 0


def test_switching_the_preprocessing_reclassifies_the_drawing():
    pad = DigitPad(TemplateNet())
    pad.classify(vertical_stroke())
    assert pad.prediction == 1 and pad.preprocess is None
    pad.preprocess = StudentPipeline()
    assert pad.prediction == 0
    pad.preprocess = None
    assert pad.prediction == 1


def test_empty_canvas_never_reaches_the_students_preprocessing():
    pipeline = StudentPipeline()
    pad = DigitPad(TemplateNet(), preprocess=pipeline)
    pad._on_message(pad.canvas, *message_for(np.zeros((SIZE, SIZE), dtype=np.uint8)))
    assert pad.prediction is None
    assert pad.canvas.message.startswith("The canvas is empty")
    assert pipeline.calls == []


def _raising(drawing):
    return np.zeros(3)[5]  # a slip in the student's indexing


def _wrong_shape(drawing):
    return preprocess_drawing(drawing).ravel()


def _nan(drawing):
    return np.full((28, 28), np.nan)


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        (
            _raising,
            "The preprocessing failed: _raising raised IndexError: index 5 is out of bounds",
        ),
        (
            _wrong_shape,
            "The preprocessing failed: _wrong_shape returned shape (784,); expected (28, 28)",
        ),
        (_nan, "The preprocessing failed: _nan returned NaN or infinite values"),
    ],
    ids=["raises", "wrong-shape", "nan"],
)
def test_a_failing_preprocessing_is_reported_in_the_widget(function, expected):
    pad = DigitPad(TemplateNet(), preprocess=function)
    assert pad.classify(vertical_stroke()) is None
    assert pad.canvas.message.startswith(expected), pad.canvas.message
    assert pad.prediction is None and pad.canvas.prediction is None
    with pytest.raises(PreprocessingError, match=function.__name__):
        predict_digit(TemplateNet(), vertical_stroke(), preprocess=function)


def test_preprocess_must_be_a_function():
    with pytest.raises(TypeError, match="preprocess must be a function"):
        DigitPad(TemplateNet(), preprocess="mine")
    pad = DigitPad(TemplateNet())
    with pytest.raises(TypeError, match="preprocess must be a function"):
        pad.preprocess = 3
