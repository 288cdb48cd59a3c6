"""End to end: draw digits with the mouse in a real browser and read the widget's prediction.

Starts a real Jupyter server (JupyterLab 4 and Notebook 7 front ends) on
127.0.0.1 with a random port, a token and isolated Jupyter/IPython
directories; the kernel is this interpreter (the project's venv). Headless
Debian Chromium, driven by Playwright, opens a notebook with a DigitPad using
the shipped pretrained model, draws digits with mouse strokes, and the test
asserts the predicted digit the page shows. Screenshots and the measured
browser-side latency (end of stroke -> updated prediction; reported, not
asserted) go to ``test-artifacts/``.

The finale of chapter 6 (``test_finale_with_the_solution_notebooks_own_code``) runs a
DigitPad whose network is built from the *solution notebooks'* own layers (Convolution and
Pooling of chapter 4, Affine and Relu of chapter 2, loaded through ``course_lib.mine`` from a
workspace made of the solution notebooks, with the pretrained weights) and whose preprocessing
is chapter 6's own ``preprocess_digit``; it draws a 7 and a 4 and reads the predictions.

Needs: Debian ``chromium`` (``apt-get install -y chromium``) and the Python
package ``playwright`` (no browser download: Playwright drives /usr/bin/chromium).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def _chromium() -> str | None:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if Path(path).is_file() and os.access(path, os.X_OK) else None


CHROMIUM = _chromium()
if CHROMIUM is None:
    pytest.skip(
        "Chromium is not installed (Debian: `apt-get install -y chromium`); "
        "the browser end-to-end test needs /usr/bin/chromium",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the Python package playwright is not installed"
)


# ----------------------------------------------------------------------------- the server
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NOTEBOOK_CELLS = [
    "import sys\nprint('KERNEL-PREFIX=' + sys.prefix)",
    "from course_lib.widgets import DigitPad\n\npad = DigitPad(stroke_width=22)\npad",
]


#: the finale: the solution notebooks' own layers and preprocessing, through course_lib.mine
FINALE_CELLS = [
    "import sys\nprint('KERNEL-PREFIX=' + sys.prefix)",
    """import json

import course_lib.mine
import course_lib.widgets as cw

preprocess_digit = course_lib.mine.load("preprocess_digit")  # chapter 6's own
net, about = cw.my_network()  # chapters 2 and 4's own layers
kinds = ["Convolution", "Pooling", "Affine", "Relu", "preprocess_digit"]
report = {
    "origins": {k: course_lib.mine.origin(k).student for k in kinds},
    "network": about,
    "layer_modules": sorted({type(layer).__module__ for layer in net.layers.values()}),
    "layer_files": sorted({type(layer).forward.__code__.co_filename for layer in net.layers.values()}),
    "preprocess_file": preprocess_digit.__code__.co_filename,
}
print("FINALE=" + json.dumps(report))""",
    "pad = cw.DigitPad(net, preprocess=preprocess_digit, stroke_width=22)\npad",
]
#: chapters whose solution notebooks make the finale's workspace
FINALE_CHAPTERS = ("ch02_backpropagation", "ch04_convolutional_networks", "ch06_draw_a_digit")


def _write_notebook(path: Path, cells: list[str] = NOTEBOOK_CELLS) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, str(path))


class JupyterServer:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.token = secrets.token_hex(16)
        self.port = _free_port()
        self.root = base / "notebooks"
        self.root.mkdir()
        _write_notebook(self.root / "draw.ipynb")
        _write_notebook(self.root / "finale.ipynb", FINALE_CELLS)
        # a student's workspace made of the solution notebooks (course-lib lab's layout)
        self.workspace = base / "workspace"
        for chapter in FINALE_CHAPTERS:
            (self.workspace / chapter).mkdir(parents=True)
            name = f"{chapter}.ipynb"
            shutil.copy(ROOT / "solutions" / chapter / name, self.workspace / chapter / name)
        dirs = {
            name: base / name.lower()
            for name in (
                "JUPYTER_CONFIG_DIR",
                "JUPYTER_DATA_DIR",
                "JUPYTER_RUNTIME_DIR",
                "IPYTHONDIR",
            )
        }
        for d in dirs.values():
            d.mkdir()
        # The kernel is this interpreter, whatever else is on the machine.
        kernel_dir = dirs["JUPYTER_DATA_DIR"] / "kernels" / "python3"
        kernel_dir.mkdir(parents=True)
        (kernel_dir / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": "Python 3 (course venv)",
                    "language": "python",
                }
            )
        )
        # Let the test run notebook commands (window.jupyterapp); no news pop-ups.
        config_dir = dirs["JUPYTER_CONFIG_DIR"]
        (config_dir / "jupyter_server_config.json").write_text(
            json.dumps(
                {
                    "LabApp": {"expose_app_in_browser": True},
                    "JupyterNotebookApp": {"expose_app_in_browser": True},
                }
            )
        )
        (config_dir / "labconfig").mkdir()
        (config_dir / "labconfig" / "page_config.json").write_text(
            json.dumps(
                {
                    "disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True},
                }
            )
        )
        self.env = {
            **os.environ,
            **{k: str(v) for k, v in dirs.items()},
            "JUPYTER_PLATFORM_DIRS": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(ROOT),
            "COURSE_LIB_WORKSPACE": str(self.workspace),
            "COURSE_QUICK": "1",
        }
        for var in ("JUPYTER_PATH", "NBGRADER_EXECUTION", "COURSE_LIB_MINE"):
            self.env.pop(var, None)
        self.log_path = base / "jupyter.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        cmd = [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}", "--ServerApp.allow_remote_access=False",
        ]  # fmt: skip
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")  # CI runs as root
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            cmd, env=self.env, cwd=self.root, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        status = f"{self.url}/api/status?token={self.token}"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter server exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(status, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        raise RuntimeError(f"jupyter server did not answer within {timeout:.0f} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = JupyterServer(tmp_path_factory.mktemp("jupyter"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 1000},
        )
        yield context
        context.close()


# ----------------------------------------------------------------------------- drawing
# Strokes in canvas pixels (the canvas is 280x280), as a person would draw them.
SEVEN = [[(70, 62), (120, 60), (210, 58), (180, 120), (150, 180), (125, 240)]]
FOUR = [
    [(165, 40), (120, 105), (70, 170), (140, 170), (220, 168)],
    [(175, 85), (174, 160), (172, 250)],
]


def _draw(page, canvas, strokes) -> None:
    box = canvas.bounding_box()
    assert box is not None, "the canvas is not on the page"
    sx, sy = box["width"] / 280.0, box["height"] / 280.0
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * sx, box["y"] + y * sy)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * sx, box["y"] + y * sy, steps=8)
        page.mouse.up()


def _wait_for_final_result(page, root, timeout_ms: int = 30_000) -> None:
    # The kernel answered the last image the page sent (the end of the last stroke).
    page.wait_for_function(
        "(el) => el.dataset.seqSent && el.dataset.seqShown === el.dataset.seqSent",
        arg=root.element_handle(),
        timeout=timeout_ms,
    )


def _run_all_cells(page, path: str | None = None) -> None:
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.commands"
        " && window.jupyterapp.commands.hasCommand('notebook:run-all-cells')",
        timeout=90_000,
    )
    # Wait until the notebook (``path``, if given: JupyterLab may restore other tabs first) is
    # the current widget and its kernel is connected, then run everything.
    page.wait_for_function(
        """(path) => {
            const w = window.jupyterapp.shell.currentWidget;
            const ctx = w && w.sessionContext;
            return !!(ctx && ctx.session && ctx.session.kernel
                      && ctx.session.kernel.connectionStatus === 'connected'
                      && (!path || (w.context && w.context.path === path)));
        }""",
        arg=path,
        timeout=90_000,
    )
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")


FRONTENDS = {
    "jupyterlab": "/lab/tree/draw.ipynb",
    "notebook7": "/notebooks/draw.ipynb",
}


@pytest.mark.parametrize("frontend", list(FRONTENDS))
def test_draw_digits_and_read_the_prediction(server, browser_context, frontend):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if msg.type == "error" else None,
    )
    report: dict = {"frontend": frontend, "latency_ms": {}}
    try:
        page.goto(f"{server.url}{FRONTENDS[frontend]}?token={server.token}", timeout=90_000)
        _run_all_cells(page)

        # The kernel is this project's interpreter.
        prefix = page.locator(".jp-OutputArea-output", has_text="KERNEL-PREFIX=").first
        prefix.wait_for(timeout=90_000)
        assert prefix.inner_text().strip().endswith(sys.prefix), prefix.inner_text()

        root = page.locator(".digitpad[data-ready='1']").first
        root.wait_for(timeout=90_000)
        canvas = page.locator(".digitpad-canvas").first
        canvas.scroll_into_view_if_needed()
        prediction = page.locator(".digitpad-prediction").first
        message = page.locator(".digitpad-message").first
        assert "empty" in message.inner_text()

        for digit, strokes in ((7, SEVEN), (4, FOUR)):
            _draw(page, canvas, strokes)
            _wait_for_final_result(page, root)
            shown = prediction.inner_text().strip()
            page.screenshot(path=str(ARTIFACTS / f"digitpad-{frontend}-{digit}.png"))
            latency = root.get_attribute("data-latency-ms")
            report["latency_ms"][str(digit)] = float(latency) if latency else None
            assert shown == str(digit), (
                f"drew a {digit}, the widget shows {shown!r} ({message.inner_text()!r})"
            )
            bars = page.locator(".digitpad-row.digitpad-top")
            assert bars.count() == 1
            assert bars.first.get_attribute("data-digit") == str(digit)

            page.locator(".digitpad-widget").first.get_by_role("button", name="Clear").click()
            page.wait_for_function(
                "(el) => el.dataset.prediction === ''", arg=root.element_handle(), timeout=30_000
            )
            assert prediction.inner_text().strip() == "\u2013"
            assert "empty" in message.inner_text()
            # the canvas is blank again
            ink = page.evaluate(
                """(c) => {
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    let s = 0;
                    for (let i = 3; i < d.length; i += 4) s += d[i];
                    return s;
                }""",
                canvas.element_handle(),
            )
            assert ink == 0
        widget_errors = [e for e in errors if "digitpad" in e.lower() or "anywidget" in e.lower()]
        report["console_errors"] = errors[:20]
        assert not widget_errors, widget_errors
    except Exception:
        page.screenshot(path=str(ARTIFACTS / f"digitpad-{frontend}-failure.png"))
        report["server_log"] = server.log()
        report["console_errors"] = errors[:50]
        raise
    finally:
        (ARTIFACTS / f"digitpad-{frontend}.json").write_text(json.dumps(report, indent=2))
        print(f"\n{frontend}: end of stroke -> prediction shown (ms): {report['latency_ms']}")
        page.close()


@pytest.mark.timeout(900)
def test_finale_with_the_solution_notebooks_own_code(server, browser_context):
    """Draw into a network and a pipeline that are all the solution notebooks' own code."""
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    report: dict = {"frontend": "jupyterlab", "shown": {}}
    try:
        # a JupyterLab workspace of its own: only this notebook open
        url = f"{server.url}/lab/workspaces/finale/tree/finale.ipynb?token={server.token}"
        page.goto(url, timeout=90_000)
        _run_all_cells(page, "finale.ipynb")
        out = page.locator(".jp-OutputArea-output", has_text="FINALE=").first
        out.wait_for(timeout=600_000)  # loads three notebooks' setup, answers and checks
        text = out.inner_text()
        finale = json.loads(text[text.index("FINALE=") + len("FINALE=") :].strip().splitlines()[0])
        report["finale"] = finale
        assert all(finale["origins"].values()), f"not all from the solution notebooks: {finale}"
        assert finale["layer_modules"] == ["__main__"], finale
        chapters = {Path(f.split(" [cell")[0]).parent.name for f in finale["layer_files"]}
        assert chapters == {"ch02_backpropagation", "ch04_convolutional_networks"}, finale
        assert str(server.workspace / "ch06_draw_a_digit") in finale["preprocess_file"], finale

        root = page.locator(".digitpad[data-ready='1']").first
        root.wait_for(timeout=90_000)
        canvas = page.locator(".digitpad-canvas").first
        canvas.scroll_into_view_if_needed()
        prediction = page.locator(".digitpad-prediction").first
        message = page.locator(".digitpad-message").first
        for digit, strokes in ((7, SEVEN), (4, FOUR)):
            _draw(page, canvas, strokes)
            _wait_for_final_result(page, root, timeout_ms=60_000)
            shown = prediction.inner_text().strip()
            report["shown"][str(digit)] = shown
            page.screenshot(path=str(ARTIFACTS / f"digitpad-finale-{digit}.png"))
            assert shown == str(digit), (
                f"drew a {digit}, the finale shows {shown!r} ({message.inner_text()!r})"
            )
            page.locator(".digitpad-widget").first.get_by_role("button", name="Clear").click()
            page.wait_for_function(
                "(el) => el.dataset.prediction === ''", arg=root.element_handle(), timeout=30_000
            )
        report["console_errors"] = errors[:20]
        assert not [e for e in errors if "digitpad" in e.lower() or "anywidget" in e.lower()]
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "digitpad-finale-failure.png"))
        report["server_log"] = server.log()
        report["console_errors"] = errors[:50]
        raise
    finally:
        (ARTIFACTS / "digitpad-finale.json").write_text(json.dumps(report, indent=2))
        page.close()
