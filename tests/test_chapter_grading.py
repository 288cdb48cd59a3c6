"""Autograding the chapters with the real nbgrader: full marks, zero, planted errors, feedback.

For every chapter found in solutions/ (new chapters are picked up automatically), one
temporary course is built and graded with ONE `nbgrader autograde` call (quick mode, by the chapters' default under nbgrader) over
several students:

- ``solution``: the instructor's source notebook, unchanged -> full marks, no cell fails;
- ``released``: the generated student version, unchanged -> zero on every exercise, and the
  grader still finishes;
- ``planted-<name>``: the source notebook with ONE wrong answer planted (a sign error in a
  backward, a missing transpose, a sum over the wrong axis, an update rule off by a factor,
  ...) -> exactly the test cells of that exercise score zero, every other one keeps its points.

The planted-error submissions leave out the chapter's demonstration cells that no graded cell
depends on (figures, training runs; see ``prune_demonstrations``), as a student may delete any
unlocked cell: the graded cells see the same definitions, and each submission costs seconds.
Then `nbgrader generate_feedback` must produce HTML that names the failing test cell and
shows the assertion message of the check that failed. Scores are read from the gradebook
through ``nbgrader.api.Gradebook``.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
from grading_support import (
    REPO_ROOT,
    SYNTHETIC_ID,
    SYNTHETIC_PLANTS,
    CourseDir,
    Plant,
    cell_error,
    chapter_ids,
    graded_cell_points,
    html_text,
    nbgrader_meta,
    plant,
    prune_demonstrations,
    read_notebook,
    squash,
    synthetic_notebook,
)
from planted_errors import PLANTED

CHAPTERS = chapter_ids()


# Planted errors that currently cost MORE than their own exercise, because of how the chapter's
# tests are written (reported to the chapter authors). Strict: once a notebook is fixed, the
# test passes, pytest reports XPASS(strict) as a failure, and the entry must be removed here.
DEPENDENT_TESTS = (
    "also fails {}: that test runs the student's own {} (the dependency is not isolated)"
)
KNOWN_OVERLAPS: dict[str, str] = {}

PLANT_CASES = [
    pytest.param(
        chapter,
        wrong,
        id=f"{chapter}:{wrong.name}",
        marks=[pytest.mark.xfail(strict=True, reason=KNOWN_OVERLAPS[wrong.name])]
        if wrong.name in KNOWN_OVERLAPS
        else [],
    )
    for chapter in CHAPTERS
    for wrong in PLANTED.get(chapter, ())
]


def planted_student(wrong: Plant) -> str:
    return f"planted-{wrong.name}"


# --------------------------------------------------------------------------------------------
# Grading one assignment (once per test session)
# --------------------------------------------------------------------------------------------


@dataclass
class Graded:
    """One assignment autograded for the solution, the released version and planted errors."""

    course: CourseDir
    assignment: str
    points: dict[str, float]  # test cell grade_id -> points, from the source notebook
    plants: tuple[Plant, ...]
    seconds: dict[str, float] = field(default_factory=dict)  # wall, and CPU ("_cpu")
    failure: BaseException | None = None

    def require(self) -> Graded:
        if self.failure is not None:
            pytest.fail(f"grading {self.assignment} failed: {self.failure}", pytrace=False)
        return self

    def scores(self, student: str) -> dict[str, float]:
        cells = self.course.cell_scores(self.assignment, student)
        return {gid: cells[gid].score for gid in self.points}


def grade_assignment(course: CourseDir, assignment: str, plants: tuple[Plant, ...]) -> Graded:
    source = course.source_notebook(assignment)
    graded = Graded(course, assignment, graded_cell_points(source), plants)
    try:
        graded.seconds["generate_assignment_cpu"] = course.generate_assignment(
            assignment
        ).cpu_seconds
        course.submit("solution", assignment, source)
        course.submit("released", assignment, course.released_notebook(assignment))
        light = prune_demonstrations(source)
        for wrong in plants:
            course.submit(planted_student(wrong), assignment, plant(light, wrong))
        start = time.perf_counter()
        proc = course.autograde(assignment)  # every student in one nbgrader call
        graded.seconds["autograde"] = time.perf_counter() - start
        graded.seconds["autograde_cpu"] = proc.cpu_seconds
        graded.seconds["generate_feedback_cpu"] = course.generate_feedback(assignment).cpu_seconds
    except Exception as exc:  # reported by every test that needs the result
        graded.failure = exc
    return graded


def grading_jobs() -> int:
    """Chapters graded at once: COURSE_LIB_TEST_JOBS, default min(2, cores)."""
    return max(1, int(os.environ.get("COURSE_LIB_TEST_JOBS", min(2, os.cpu_count() or 1))))


@pytest.fixture(scope="module")
def graded_chapter(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, data_dir: Path
):
    """graded_chapter(id) -> Graded. On first use, grades every chapter the selected tests
    need, ``grading_jobs()`` chapters at a time (each in one nbgrader autograde call)."""
    wanted = sorted(
        {
            item.callspec.params["chapter"]
            for item in request.session.items
            if "graded_chapter" in getattr(item, "fixturenames", ())
            and "chapter" in getattr(getattr(item, "callspec", None), "params", {})
        },
        # the biggest notebooks first, so that two workers finish at about the same time
        key=lambda c: -(REPO_ROOT / "solutions" / c / f"{c}.ipynb").stat().st_size,
    )
    futures: dict[str, concurrent.futures.Future[Graded]] = {}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=grading_jobs())

    def grade(chapter: str) -> Graded:
        course = CourseDir.create(tmp_path_factory.mktemp(chapter), from_repo=[chapter])
        graded = grade_assignment(course, chapter, PLANTED.get(chapter, ()))
        seconds = {k: round(v, 1) for k, v in graded.seconds.items()}
        print(f"\n{chapter}: seconds {seconds}", flush=True)
        return graded

    def get(chapter: str) -> Graded:
        if not futures:
            for name in [*wanted, *(c for c in [chapter] if c not in wanted)]:
                futures[name] = pool.submit(grade, name)
        if chapter not in futures:
            futures[chapter] = pool.submit(grade, chapter)
        return futures[chapter].result().require()

    yield get
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def graded_synthetic(tmp_path_factory: pytest.TempPathFactory) -> Graded:
    course = CourseDir.create(
        tmp_path_factory.mktemp("synthetic"), notebooks={SYNTHETIC_ID: synthetic_notebook()}
    )
    return grade_assignment(course, SYNTHETIC_ID, SYNTHETIC_PLANTS).require()


# --------------------------------------------------------------------------------------------
# Assertions shared by the synthetic assignment and the chapters
# --------------------------------------------------------------------------------------------


def assert_full_marks(graded: Graded) -> None:
    scores = graded.scores("solution")
    lost = {
        gid: f"{s} / {graded.points[gid]}" for gid, s in scores.items() if s != graded.points[gid]
    }
    errors = {
        gid: cell_error(graded.course.autograded_notebook(graded.assignment, "solution"), gid)
        for gid in lost
    }
    assert not lost, f"the solution of {graded.assignment} loses points: {lost}\n{errors}"
    assert sum(scores.values()) == sum(graded.points.values()) > 0


def assert_released_scores_zero(graded: Graded) -> None:
    assert "released" in graded.course.students(graded.assignment)
    scores = graded.scores("released")
    assert scores.keys() == graded.points.keys()
    earned = {gid: s for gid, s in scores.items() if s != 0}
    assert not earned, f"the unmodified student version of {graded.assignment} earns {earned}"
    # the grader recorded a graded notebook, with the stub's error in each test cell
    nb = graded.course.autograded_notebook(graded.assignment, "released")
    for gid in graded.points:
        error = cell_error(nb, gid)
        assert error is not None, f"{gid}: no error recorded although it scored 0"


def assert_planted_loses_exactly(graded: Graded, wrong: Plant) -> None:
    unknown = set(wrong.loses) - graded.points.keys()
    assert not unknown, f"{wrong.name}: no test cells {unknown} in {graded.assignment}"
    scores = graded.scores(planted_student(wrong))
    expected = {gid: (0.0 if gid in wrong.loses else pts) for gid, pts in graded.points.items()}
    wrong_cells = {
        gid: f"scored {scores[gid]}, expected {expected[gid]}"
        for gid in graded.points
        if scores[gid] != expected[gid]
    }
    nb = graded.course.autograded_notebook(graded.assignment, planted_student(wrong))
    details = {gid: cell_error(nb, gid) for gid in wrong_cells}
    assert not wrong_cells, (
        f"planting {wrong.name!r} ({wrong.old!r} -> {wrong.new!r}) should cost exactly "
        f"{list(wrong.loses)}; instead: {wrong_cells}\nerrors: {details}"
    )


def assert_feedback_names_failures(graded: Graded) -> None:
    """Each planted student's feedback names every failed test cell with its 0 score and shows
    the error of that cell; at least one failure per assignment is a check's AssertionError,
    whose message must appear verbatim."""
    course, assignment = graded.course, graded.assignment
    solution_html = course.feedback_path(assignment, "solution").read_text(encoding="utf-8")
    total = sum(graded.points.values())
    # written answers (markdown answer cells with points) count in the maximum, and score 0
    # until the instructor grades them
    written = sum(
        float(meta.get("points", 0))
        for meta in map(nbgrader_meta, course.source_notebook(assignment).cells)
        if meta.get("grade") and meta.get("solution")
    )
    assert f"(Score: {total:.1f} / {total + written:.1f})" in html_text(solution_html)
    checked_messages = []
    for wrong in graded.plants:
        student = planted_student(wrong)
        markup = course.feedback_path(assignment, student).read_text(encoding="utf-8")
        text = html_text(markup)
        # plain `nbgrader generate_feedback` with the course's config: no hidden test source
        assert "BEGIN HIDDEN TESTS" not in text and "END HIDDEN TESTS" not in text, (
            f"feedback of {student} shows hidden tests"
        )
        nb = course.autograded_notebook(assignment, student)
        for gid in wrong.loses:
            points = graded.points[gid]
            assert f'<a name="{gid}">' in markup, f"feedback of {student} has no anchor {gid}"
            assert f"Grade cell: {gid} Score: 0.0 / {points:.1f}" in text, (
                f"feedback of {student} does not name {gid} as failed (0 / {points})"
            )
            error = cell_error(nb, gid)
            assert error is not None, f"{student}: {gid} scored 0 without an error"
            assert error["evalue"].strip(), f"{student}: {gid} fails with an empty message"
            message = squash(error["evalue"])
            assert error["ename"] in text and message in text, (
                f"feedback of {student} does not show the error of {gid}: "
                f"{error['ename']}: {message!r}"
            )
            if error["ename"] == "AssertionError":
                checked_messages.append(message)
    assert checked_messages, (
        f"no planted error in {assignment} is reported by a check (AssertionError with a "
        "message); every failure was a crash of the student's code"
    )


# --------------------------------------------------------------------------------------------
# The pipeline on a synthetic assignment (independent of the chapters' contents)
# --------------------------------------------------------------------------------------------


@pytest.mark.grading
@pytest.mark.timeout(900)
def test_synthetic_assignment_full_zero_planted_feedback(graded_synthetic: Graded) -> None:
    assert graded_synthetic.points == {
        "synthetic-double-tests": 1,
        "synthetic-column_sums-tests": 2,
    }
    assert_full_marks(graded_synthetic)
    assert_released_scores_zero(graded_synthetic)
    for wrong in SYNTHETIC_PLANTS:
        assert_planted_loses_exactly(graded_synthetic, wrong)
    assert_feedback_names_failures(graded_synthetic)
    # the hidden tests ran, although the student version does not contain them
    nb = graded_synthetic.course.autograded_notebook(SYNTHETIC_ID, "released")
    tests = [c.source for c in nb.cells if nbgrader_meta(c).get("grade_id", "").endswith("-tests")]
    assert all("BEGIN HIDDEN TESTS" in src for src in tests)


@pytest.mark.grading
@pytest.mark.timeout(900)
def test_formgrader_serves_the_graded_course(graded_synthetic: Graded, tmp_path: Path) -> None:
    """The instructor guide's formgrader set-up: a Jupyter server at the course root with
    graders/ on JUPYTER_CONFIG_PATH sees the assignment, its folders and every submission."""
    course = graded_synthetic.course
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = secrets.token_hex(16)
    env = course.env({"JUPYTER_CONFIG_PATH": str(course.graders)})
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "server", "--no-browser", "--allow-root",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={course.root}"],
        cwd=course.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def get(path: str) -> object:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"token {token}"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                get("/api/status")
                break
            except OSError:
                assert server.poll() is None, f"jupyter server exited:\n{server.stderr.read()}"
                assert time.monotonic() < deadline, "jupyter server did not start in 300 s"
                time.sleep(1)
        (assignment,) = get("/formgrader/api/assignments")
        assert assignment["name"] == SYNTHETIC_ID
        assert assignment["source_path"] == f"solutions/{SYNTHETIC_ID}"
        assert assignment["release_path"] == f"chapters/{SYNTHETIC_ID}"
        assert assignment["max_score"] == 3.0
        scores = {
            s["student"]: (s["score"], s["autograded"])
            for s in get(f"/formgrader/api/submissions/{SYNTHETIC_ID}")
        }
        assert scores == {
            "solution": (3.0, True),
            "released": (0.0, True),
            "planted-double-off-by-factor": (2.0, True),
            "planted-column_sums-wrong-axis": (1.0, True),
        }
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_pruning_keeps_what_graded_cells_need() -> None:
    nb = synthetic_notebook()
    nb.cells[2:2] = [
        nbformat.v4.new_code_cell("%matplotlib inline\nimport matplotlib.pyplot as plt"),
        nbformat.v4.new_code_cell("scale = 2\nlabels = ['a']"),  # scale: used by an answer
        nbformat.v4.new_code_cell("for i in range(10**9):\n    pass  # a long demo"),
        nbformat.v4.new_code_cell("labels.append('b')"),  # mutates labels: kept if labels is
        nbformat.v4.new_code_cell("np.set_printoptions(precision=3) +"),  # unparsable: kept
    ]
    answer = nb.cells[8]
    assert nbgrader_meta(answer)["grade_id"] == "synthetic-double"
    answer.source = answer.source.replace("return 2 * x", "return scale * x")
    pruned = prune_demonstrations(nb)
    kept = [c.source for c in pruned.cells]
    assert "scale = 2\nlabels = ['a']" in kept
    assert "np.set_printoptions(precision=3) +" in kept
    assert not any("10**9" in s or "matplotlib" in s or "append" in s for s in kept)
    assert kept[1].startswith("import os")  # defines np, which the tests use
    assert not any(s.startswith(("# double = ", "# column_sums = ")) for s in kept)  # fallbacks
    assert [c.cell_type for c in pruned.cells].count("markdown") == 3
    assert len(nb.cells) == 15, "the input must not be modified"


# --------------------------------------------------------------------------------------------
# Every chapter
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_chapter_has_planted_errors(chapter: str) -> None:
    """New chapters need planted errors here; each must still apply to the notebook."""
    plants = PLANTED.get(chapter, ())
    assert plants, f"add planted wrong answers for {chapter} to PLANTED in {__file__}"
    source = read_notebook(REPO_ROOT / "solutions" / chapter / f"{chapter}.ipynb")
    points = graded_cell_points(source)
    light = prune_demonstrations(source)
    for wrong in plants:
        plant(light, wrong)  # raises with a clear message when the text is gone
        assert set(wrong.loses) <= points.keys(), f"{wrong.name}: unknown test cells"


@pytest.mark.grading
@pytest.mark.timeout(2400)
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_solution_gets_full_marks(chapter: str, graded_chapter) -> None:
    assert_full_marks(graded_chapter(chapter))


@pytest.mark.grading
@pytest.mark.timeout(2400)
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_solution_runs_clean_under_the_grader(chapter: str, graded_chapter) -> None:
    graded = graded_chapter(chapter)
    nb = graded.course.autograded_notebook(chapter, "solution")
    failing = [
        (i, output.get("ename"), output.get("evalue"))
        for i, cell in enumerate(nb.cells)
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not failing, f"cells of the {chapter} solution fail when autograded: {failing}"
    # plain `nbgrader autograde`, no COURSE_QUICK: the chapter switched to quick mode itself
    setup = next(c for c in nb.cells if c.cell_type == "code" and "QUICK =" in c.source)
    printed = "".join(o.get("text", "") for o in setup.get("outputs", []))
    assert printed.startswith("quick mode"), f"{chapter} autograded in full mode: {printed!r}"


@pytest.mark.grading
@pytest.mark.timeout(2400)
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_released_chapter_scores_zero(chapter: str, graded_chapter) -> None:
    assert_released_scores_zero(graded_chapter(chapter))


@pytest.mark.grading
@pytest.mark.timeout(2400)
@pytest.mark.parametrize(("chapter", "wrong"), PLANT_CASES)
def test_planted_error_loses_exactly_its_exercise(
    chapter: str, wrong: Plant, graded_chapter
) -> None:
    assert_planted_loses_exactly(graded_chapter(chapter), wrong)


@pytest.mark.grading
@pytest.mark.timeout(2400)
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_feedback_names_the_failing_check(chapter: str, graded_chapter) -> None:
    assert_feedback_names_failures(graded_chapter(chapter))
