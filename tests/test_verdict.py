"""The verdict process's session against a real kernel (no nbgrader): proxies, the reference
watch and its findings, the grader's own reaches, a test that times out.

The kernel starts the way the grader starts it (the agent's ``BOOT`` line first); test cells
run in this process through :class:`course_lib.grading.verdict.VerdictSession`, while the
kernel runs the session's ``serve`` line, as ``IsolatedExecute`` has it run (:func:`run_test`).
"""

from __future__ import annotations

import pytest
from jupyter_client.manager import start_new_kernel

from course_lib.grading.agent import BOOT
from course_lib.grading.verdict import VerdictSession

pytestmark = pytest.mark.timeout(300)

OWN_RELU = """
import numpy as np
import course_lib.layers

class Relu:
    def forward(self, x):
        self.mask = x <= 0
        return np.where(self.mask, 0, x)

    def backward(self, dout):
        return np.where(self.mask, 0, dout)
"""

TEST = """
import numpy as np
from course_lib.checks import check_close
x = np.array([-1.0, 2.0])
layer = Relu()
check_close(layer.forward(x), np.array([0.0, 2.0]), "Relu().forward")
check_close(layer.backward(np.ones(2)), np.array([0.0, 1.0]), "Relu().backward")
"""


@pytest.fixture(scope="module")
def kernel():
    km, kc = start_new_kernel(extra_arguments=[f"--IPKernelApp.exec_lines={BOOT}"])
    run_in_kernel(kc, "import numpy as np\nimport course_lib.layers")
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run_in_kernel(kc, code: str) -> None:
    reply = kc.execute_interactive(code, timeout=60)
    assert reply["content"]["status"] == "ok", reply["content"]


@pytest.fixture()
def session(kernel):
    km, kc = kernel
    cells = [OWN_RELU, "", "RELU = course_lib.layers.Relu"]
    session = VerdictSession(
        ["import numpy as np"],
        ["Relu"],
        exercises={"Relu": ["relu-tests"]},
        allow=[],
        cells=cells,
    )
    yield session
    session.close()


def run_test(kernel, session, source: str, timeout: float, grade_id: str | None = None) -> dict:
    """One test cell as ``IsolatedExecute`` runs it: the kernel serves the session while the
    test runs, is interrupted when the test timed out, and must be idle again within 20 s."""
    km, kc = kernel
    msg_id = kc.execute(session.serve_code(0, grade_id), silent=True)
    result = session.run(source, timeout)
    if result["timed_out"]:
        km.interrupt_kernel()
    while kc.get_shell_msg(timeout=20)["parent_header"].get("msg_id") != msg_id:
        pass
    return result


def enames(result) -> list[str]:
    return [o.get("ename") for o in result["outputs"] if o["output_type"] == "error"]


def test_own_code_passes_without_findings(kernel, session):
    run_in_kernel(kernel[1], OWN_RELU)
    result = run_test(kernel, session, TEST, 60, "relu-tests")
    assert enames(result) == [] and result["kernel_ok"], result


def test_a_test_of_another_exercise_does_not_watch_this_reference(kernel, session):
    run_in_kernel(kernel[1], "Relu = course_lib.layers.Relu")
    result = run_test(
        kernel, session, TEST, 60, "some-other-tests"
    )  # e.g. a network using the fallback
    assert enames(result) == [], result


def test_the_reference_run_through_a_bound_method_is_named(kernel, session):
    run_in_kernel(
        kernel[1],
        "_fwd = course_lib.layers.Relu().forward\n"
        "class Relu:\n"
        "    def forward(self, x):\n"
        "        self._r = _fwd.__self__\n"
        "        return _fwd(x)\n"
        "    def backward(self, dout):\n"
        "        return self._r.backward(dout)\n",
    )
    result = run_test(kernel, session, TEST, 60, "relu-tests")
    assert "ReferenceUsed" in enames(result), result
    message = next(o for o in result["outputs"] if o.get("ename") == "ReferenceUsed")["evalue"]
    assert "course_lib.layers.activations.Relu.forward" in message


def test_removing_the_watch_is_reaching_for_the_grader(kernel, session):
    run_in_kernel(
        kernel[1],
        OWN_RELU
        + "\n_own = Relu.forward\n"
        + "def _forward(self, x):\n"
        + "    __import__('sys').setprofile(None)\n"
        + "    return _own(self, x)\n"
        + "Relu.forward = _forward\n",
    )
    result = run_test(kernel, session, TEST, 60, "relu-tests")
    assert "GraderAccess" in enames(result), result


def test_a_test_that_times_out_leaves_the_kernel_usable(kernel, session):
    run_in_kernel(
        kernel[1], OWN_RELU + "\nRelu.forward = lambda self, x: [0 for _ in iter(int, 1)]"
    )
    result = run_test(kernel, session, TEST, 3, "relu-tests")
    assert enames(result) == ["CellTimeoutError"], result
    run_in_kernel(kernel[1], OWN_RELU)
    result = run_test(kernel, session, TEST, 60, "relu-tests")
    assert enames(result) == [], result


GRADIENT_CHECKS = """
import numpy as np
import course_lib.gradcheck

def gradient_check(network, x, t, h=1e-5):
    grads = network.gradient(x, t)
    worst = 0.0
    for key, param in network.params.items():
        numerical = course_lib.gradcheck.numerical_gradient(lambda _: network.loss(x, t), param, h)
        error = np.abs(grads[key] - numerical) / np.maximum(np.abs(grads[key]) + np.abs(numerical), 1e-8)
        worst = max(worst, float(error.max()))
    return worst

def sloppy_check(network, x, t, h=1e-5):
    for key, param in network.params.items():
        for i in np.ndindex(param.shape):
            param[i] += h  # never put back
            network.loss(x, t)
    return 0.0
"""

PARAMS_TEST = """
import numpy as np
import course_lib.models
x, t = np.random.default_rng(0).standard_normal((6, 5)), np.arange(6) % 4
good = course_lib.models.TwoLayerNet(5, 4, 4, weight_init_std=0.5, seed=1, dtype=np.float64)
before = {key: value.copy() for key, value in good.params.items()}
worst = CHECK(good, x, t)
for key, value in before.items():
    moved = np.argwhere(good.params[key] != value)
    assert not len(moved), f"network.params[{key!r}]{moved[0].tolist()}: changed"
assert worst < 1e-6, worst
"""


def test_in_place_changes_the_kernel_makes_to_a_tests_arrays_come_back(kernel, session):
    """ch02's gradient_check test: the student's function moves the entries of the test
    network's params (read in the kernel from the verdict's object) and puts them back."""
    run_in_kernel(kernel[1], GRADIENT_CHECKS)
    result = run_test(kernel, session, PARAMS_TEST.replace("CHECK", "gradient_check"), 60)
    assert enames(result) == [], result
    result = run_test(kernel, session, PARAMS_TEST.replace("CHECK", "sloppy_check"), 60)
    error = next(o for o in result["outputs"] if o["output_type"] == "error")
    assert error["ename"] == "AssertionError", result
    assert "network.params['W1'][0, 0]: changed" in error["evalue"], error


def test_a_students_error_shows_their_code_and_none_of_the_graders(kernel, session):
    run_in_kernel(
        kernel[1],
        OWN_RELU + "\n    def forward(self, x):\n        raise ValueError('my own mistake')\n",
    )
    result = run_test(kernel, session, TEST, 60, "relu-tests")
    error = next(o for o in result["outputs"] if o["output_type"] == "error")
    text = "".join(error["traceback"])
    assert error["ename"] == "ValueError" and "raise ValueError('my own mistake')" in text, text
    for internal in ("course_lib/grading/", "contextlib.py", "codec.encode", "lambda o, a, k"):
        assert internal not in text, text
