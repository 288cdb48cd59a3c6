"""End to end in a real browser: the student's first hour, and the instructor's view.

Both views are started the way users start them (``course-lib lab`` and
``course-lib lab --instructor``, what ``./course.sh start`` / ``./course.sh instructor`` run) in a
copy of the course with an empty HOME; headless Debian Chromium driven by Playwright.

- Student: the course home opens first and shows no instructor tools; the student opens
  chapter 2 from it, writes a wrong ``Relu.backward``, runs the test cell and reads the
  message, fixes the code, runs the test again, saves, and validates with ``course-lib
  validate``.
- Instructor: the Nbgrader menu is there and the formgrader lists the course's assignments;
  its Generate and Autograde buttons' API (what the buttons call, inside the multi-threaded
  Jupyter server) grade a submitted chapter-2 solution with full marks.

Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
from grading_support import find_data_dir, plant
from planted_errors import PLANTED

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHAPTER = "ch02_backpropagation"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
    pytest.skip("Chromium is not installed (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def relu_answers() -> tuple[str, str]:
    """(a correct Relu, the same with the planted sign error in backward), as a student types."""
    solution = nbformat.read(str(REPO / "solutions" / CHAPTER / f"{CHAPTER}.ipynb"), 4)
    wrong = next(p for p in PLANTED[CHAPTER] if p.name == "relu-backward-sign-error")
    planted = plant(solution, wrong)

    def answer(nb) -> str:
        cell = next(
            c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == wrong.cell
        )
        markers = ("### BEGIN SOLUTION", "### END SOLUTION")
        return "\n".join(l for l in cell.source.splitlines() if l.strip() not in markers)

    return answer(solution), answer(planted)


class CourseLab:
    """``course-lib lab [--instructor]`` in a copy of the course, with an empty HOME."""

    def __init__(self, course: Path, home: Path, instructor: bool) -> None:
        self.course, self.port, self.token = course, free_port(), secrets.token_hex(8)
        self.log_path = course.parent / f"lab-{'instructor' if instructor else 'student'}.log"
        self.env = {
            "HOME": str(home),
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "MPLBACKEND": "Agg",
        }
        data = find_data_dir()
        if data is not None:
            self.env["COURSE_LIB_DATA"] = str(data)
        self.cmd = [sys.executable, "-m", "course_lib.cli", "lab",
                    *(["--instructor"] if instructor else []),
                    "--no-browser", f"--port={self.port}", "--ServerApp.ip=127.0.0.1",
                    f"--IdentityProvider.token={self.token}",
                    "--LabApp.expose_app_in_browser=True"]  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> CourseLab:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.cmd, cwd=self.course, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=3):
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer:\n{self.log()}")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A copy of the course as a student clones it (no workspace yet), and an empty HOME."""
    base = tmp_path_factory.mktemp("course-views")
    course = base / "course"
    course.mkdir()
    for name in ("chapters", "solutions", "graders", "jupyter"):
        shutil.copytree(REPO / name, course / name, ignore=shutil.ignore_patterns("gradebook.db"))
    (base / "home").mkdir()
    return course


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        yield context
        context.close()


def wait_for_app(page) -> None:
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.commands"
        " && window.jupyterapp.commands.hasCommand('notebook:run-cell')",
        timeout=120_000,
    )


def wait_for_notebook(page, suffix: str) -> None:
    page.wait_for_function(
        """(suffix) => {
            const w = window.jupyterapp.shell.currentWidget;
            const ctx = w && w.sessionContext;
            return !!(w && w.context && w.context.path.endsWith(suffix) && ctx && ctx.session
                      && ctx.session.kernel && ctx.session.kernel.connectionStatus === 'connected'
                      && w.content && w.content.widgets.length > 0);
        }""",
        arg=suffix,
        timeout=120_000,
    )


CELL_INDEX = """(gid) => window.jupyterapp.shell.currentWidget.content.widgets.findIndex(
    (c) => (c.model.getMetadata('nbgrader') || {}).grade_id === gid)"""


def cell_index(page, grade_id: str) -> int:
    index = page.evaluate(CELL_INDEX, grade_id)
    assert index >= 0, f"no cell {grade_id} in the notebook"
    return index


def set_source(page, index: int, source: str) -> None:
    page.evaluate(
        """([i, src]) => window.jupyterapp.shell.currentWidget.content.widgets[i]
            .model.sharedModel.setSource(src)""",
        [index, source],
    )


def run_cell(page, index: int) -> None:
    page.evaluate(
        """async (i) => {
            const panel = window.jupyterapp.shell.currentWidget;
            panel.content.activeCellIndex = i;
            await window.jupyterapp.commands.execute('notebook:run-cell');
        }""",
        index,
    )


def output_text(page, index: int, pattern: str, timeout_ms: int = 180_000) -> str:
    """The text of cell ``index``'s output once it matches ``pattern`` (a regex)."""
    page.wait_for_function(
        """([i, pattern]) => {
            const cell = window.jupyterapp.shell.currentWidget.content.widgets[i];
            const out = cell.node.querySelector('.jp-OutputArea');
            return !!out && new RegExp(pattern).test(out.innerText);
        }""",
        arg=[index, pattern],
        timeout=timeout_ms,
    )
    page.evaluate(  # the end of the output (the message) in view for the screenshot
        """(i) => window.jupyterapp.shell.currentWidget.content.widgets[i]
            .node.querySelector('.jp-OutputArea').scrollIntoView({block: 'end'})""",
        index,
    )
    return page.evaluate(
        """(i) => window.jupyterapp.shell.currentWidget.content.widgets[i]
            .node.querySelector('.jp-OutputArea').innerText""",
        index,
    )


def test_student_first_hour(course, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    correct, wrong = relu_answers()
    with CourseLab(course, course.parent / "home", instructor=False) as lab:
        page = browser.new_page()
        page.goto(f"{lab.url}/?token={lab.token}", timeout=120_000)
        wait_for_app(page)
        # the course home opens first, with the chapter map and the progress
        home = page.locator(".jp-RenderedMarkdown h1", has_text="Start here").first
        home.wait_for(timeout=120_000)
        assert "START_HERE.ipynb" in page.url
        page.locator(".jp-RenderedMarkdown h2", has_text="Your progress").first.wait_for()
        page.screenshot(path=str(ARTIFACTS / "course-student-home.png"))
        # no instructor tools, no news pop-up
        commands = page.evaluate(
            "() => window.jupyterapp.commands.listCommands().filter(c => c.startsWith('nbgrader'))"
        )
        assert commands == [], commands
        assert page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").count() == 0
        assert page.get_by_text("Would you like to receive official Jupyter news").count() == 0

        # chapter 2, opened from the course home
        page.locator(".jp-RenderedMarkdown a", has_text="Backpropagation").first.click()
        wait_for_notebook(page, f"{CHAPTER}.ipynb")
        setup = 1  # the chapter's setup cell (imports, quick mode)
        relu = cell_index(page, f"{CHAPTER}-relu")
        forward = cell_index(page, f"{CHAPTER}-relu-forward-tests")
        backward = cell_index(page, f"{CHAPTER}-relu-backward-tests")

        set_source(page, relu, wrong)
        for index in (setup, relu, forward, backward):
            run_cell(page, index)
        message = output_text(page, backward, "Error")
        page.screenshot(path=str(ARTIFACTS / "course-student-wrong-relu.png"))
        assert "Relu backward[" in message and "values differ" in message, message
        assert "Visible tests passed" in output_text(page, forward, "passed")

        set_source(page, relu, correct)
        for index in (relu, forward, backward):
            run_cell(page, index)
        assert "Visible tests passed" in output_text(page, backward, "Visible tests passed")
        page.screenshot(path=str(ARTIFACTS / "course-student-fixed-relu.png"))
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        saved = course / "workspace" / CHAPTER / f"{CHAPTER}.ipynb"
        deadline = time.monotonic() + 60
        while "np.where(self.mask, 0, dout)" not in saved.read_text():
            assert time.monotonic() < deadline, "the notebook was not saved"
            time.sleep(0.5)

    # validate, as the student guide says (the other exercises are not done yet)
    out = subprocess.run(
        [sys.executable, "-m", "course_lib.cli", "validate", "ch02"],
        cwd=course,
        env={**os.environ, **lab.env, "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=900,
    )
    (ARTIFACTS / "course-student-validate.txt").write_text(out.stdout + out.stderr)
    assert out.returncode == 1, out.stdout + out.stderr
    assert not re.search(r"^FAIL relu-", out.stdout, re.MULTILINE), out.stdout
    assert "FAIL sigmoid-forward (1 point, not attempted)" in out.stdout, out.stdout
    last = out.stdout.strip().splitlines()[-1]
    assert re.fullmatch(rf"validate: \d+ of \d+ checks fail in {CHAPTER}", last), last


def test_instructor_sees_the_formgrader_with_the_assignments(course, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    with CourseLab(course, course.parent / "home", instructor=True) as lab:
        page = browser.new_page()
        # ?reset: not the layout the student test left in the shared home (its notebooks)
        page.goto(f"{lab.url}/lab?reset&token={lab.token}", timeout=120_000)
        wait_for_app(page)
        page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").first.wait_for(timeout=60_000)
        page.evaluate("() => window.jupyterapp.commands.execute('nbgrader:open-formgrader')")
        frame = page.frame_locator('iframe[src*="formgrader"]').first
        for assignment in ("ch01_differentiation", CHAPTER, "ch06_draw_a_digit"):
            # the first gradebook access creates it (alembic): minutes on a busy machine
            frame.get_by_text(assignment, exact=True).first.wait_for(timeout=400_000)
        page.screenshot(path=str(ARTIFACTS / "course-instructor-formgrader.png"))
        assert "Error" not in frame.locator("h1").first.inner_text()


def formgrader_post(lab: CourseLab, path: str) -> dict:
    """POST to the formgrader's API as its buttons do (token authentication)."""
    request = urllib.request.Request(
        f"{lab.url}/formgrader/api/{path}",
        data=b"{}",
        method="POST",
        headers={"Authorization": f"token {lab.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def test_formgrader_autograde_button_grades_a_submission(course):
    """The Autograde button runs ``nbgrader autograde`` inside the Jupyter server (threads and
    all): the isolated execution and the fairness policy of ``graders/nbgrader_config.py``
    grade the instructor's chapter-2 solution with every autograded point."""
    from nbgrader.api import Gradebook

    submitted = course / "graders" / "submitted" / "alice" / CHAPTER
    submitted.mkdir(parents=True)
    shutil.copy(course / "solutions" / CHAPTER / f"{CHAPTER}.ipynb", submitted)
    with CourseLab(course, course.parent / "home", instructor=True) as lab:
        generated = formgrader_post(lab, f"assignment/{CHAPTER}/assign")  # "Generate"
        assert generated["success"], generated
        graded = formgrader_post(lab, f"submission/{CHAPTER}/alice/autograde")
        assert graded["success"], graded.get("error", "") + graded.get("log", "")
    with Gradebook(f"sqlite:///{course / 'graders' / 'gradebook.db'}") as gb:
        submission = gb.find_submission(CHAPTER, "alice")
        assert submission.max_code_score > 0
        assert submission.code_score == submission.max_code_score, lab.log()
        assert not submission.needs_manual_grade or submission.max_written_score > 0
