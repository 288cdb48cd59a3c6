"""``course-lib grade`` as the instructor uses it: one real batch over every chapter.

The students submit the released (student) version of every chapter, which fails every test,
plus one unreadable notebook. ONE run of the real command grades them all (``-j 2``); then
a regrade of one student and one assignment (``--student`` and ``-a``) with its feedback
folder made impossible to write. The tests check:

- feedback that teaches without giving the tests away: for every chapter, each test cell's
  name and points and the failure message are shown, and no line of the hidden tests (nor
  their markers) appears anywhere in the HTML;
- progress (done / total and an ETA) on every finished submission;
- exit codes: 1 when a submission could not be graded normally, 3 when only the feedback
  step failed (and which student it failed for is printed), 0 otherwise;
- no library warnings (SQLAlchemy's, deprecations) on the instructor's terminal;
- a regrade touches only that student's grades.
"""

from __future__ import annotations

import html
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from grading_support import (
    CourseDir,
    chapter_ids,
    find_data_dir,
    html_text,
    nbgrader_meta,
    read_notebook,
    squash,
)

from course_lib.grading.course import load_course, nbgrader_environment
from course_lib.release import generate_assignments

CHAPTERS = chapter_ids()
TWO = "ch02_backpropagation"

pytestmark = [pytest.mark.grading, pytest.mark.slow]


def grade(course: CourseDir, *args: str) -> subprocess.CompletedProcess[str]:
    env = nbgrader_environment()
    env.pop("COURSE_LIB_GRADEBOOK_URL", None)
    env.pop("PYTHONWARNINGS", None)
    data = find_data_dir()
    if data is not None:
        env["COURSE_LIB_DATA"] = str(data)
    cmd = [
        sys.executable,
        "-m",
        "course_lib.cli",
        "grade",
        *args,
        "--course-root",
        str(course.root),
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=2400, check=False)


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("cli")
    course = CourseDir.create(tmp / "course", from_repo=CHAPTERS)
    released = tmp / "released"
    generate_assignments(load_course(course.root), CHAPTERS, released)
    subs, out = tmp / "submitted", tmp / "out"
    for chapter in CHAPTERS:
        folder = subs / "released" / chapter
        folder.mkdir(parents=True)
        (folder / f"{chapter}.ipynb").write_bytes(
            (released / chapter / f"{chapter}.ipynb").read_bytes()
        )
    (subs / "broken" / TWO).mkdir(parents=True)
    (subs / "broken" / TWO / f"{TWO}.ipynb").write_text('{"cells": [', encoding="utf-8")
    first = grade(course, str(subs), "-o", str(out), "-j", "2")
    summary = json.loads((out / "summary.json").read_text())
    feedback = {
        chapter: path.read_text(encoding="utf-8")
        for chapter in CHAPTERS
        if (path := out / "feedback" / "released" / chapter / f"{chapter}.html").is_file()
    }
    other = out / "feedback" / "released" / CHAPTERS[0] / f"{CHAPTERS[0]}.html"
    other_mtime = other.stat().st_mtime_ns if other.exists() else None
    # the regrade: one student, one assignment, a feedback folder that cannot be created
    blocked = out / "feedback" / "released" / TWO
    if blocked.is_dir():
        for path in blocked.iterdir():
            path.unlink()
        blocked.rmdir()
    blocked.write_text("not a folder")
    again = grade(course, str(subs), "-o", str(out), "-j", "2", "--student", "released", "-a", TWO)
    return {
        "course": course,
        "released": released,
        "out": out,
        "first": first,
        "summary": summary,
        "feedback": feedback,
        "again": again,
        "regrade_summary": json.loads((out / "summary.json").read_text()),
        "other_mtime": other_mtime,
        "other": other,
    }


def page_code(markup: str) -> str:
    """The page's text with tags removed without a gap (the highlighter wraps every token of
    the code in a tag), whitespace collapsed: code reads as it was written."""
    markup = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", markup)
    return squash(html.unescape(re.sub(r"<[^>]+>", "", markup)))


def hidden_snippets(chapter: str, course: CourseDir, released: Path) -> set[str]:
    """What would show that hidden test code leaked: every two consecutive lines of a hidden
    test block (as the feedback page's text shows code: whitespace collapsed), or the line of a
    one-line block, that the student version does not contain. Single lines of longer blocks
    are not used: one may legitimately appear as a failure message or in the student's code."""
    source = read_notebook(course.root / "solutions" / chapter / f"{chapter}.ipynb")
    student = read_notebook(released / chapter / f"{chapter}.ipynb")
    shown = squash(" ".join(cell.source for cell in student.cells))
    blocks: list[list[str]] = []
    for cell in source.cells:
        inside = False
        for line in cell.source.splitlines():
            if "BEGIN HIDDEN TESTS" in line:
                inside = True
                blocks.append([])
            elif "END HIDDEN TESTS" in line:
                inside = False
            elif inside and line.strip() and not line.strip().startswith("#"):
                blocks[-1].append(line.strip())
    snippets = set()
    for block in blocks:
        pieces = [" ".join(pair) for pair in itertools.pairwise(block)] if len(block) > 1 else block
        snippets |= {squash(p) for p in pieces if len(p) > 8 and squash(p) not in shown}
    return snippets


@pytest.mark.timeout(2400)
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_feedback_shows_failures_never_hidden_tests(graded: dict, chapter: str) -> None:
    course = graded["course"]
    assert chapter in graded["feedback"], graded["first"].stdout[-3000:]
    markup = graded["feedback"][chapter]
    text = html_text(markup)
    code = page_code(markup)
    assert "HIDDEN TESTS" not in markup
    hidden = hidden_snippets(chapter, course, graded["released"])
    assert hidden, f"{chapter} has no hidden tests to look for"
    leaked = sorted(snippet for snippet in hidden if snippet in code)
    assert not leaked, f"{chapter}: hidden test code in the feedback: {leaked[:5]}"
    source = read_notebook(course.root / "solutions" / chapter / f"{chapter}.ipynb")
    tests = [
        nbgrader_meta(c)
        for c in source.cells
        if nbgrader_meta(c).get("grade") and not nbgrader_meta(c).get("solution")
    ]
    assert tests
    for meta in tests:
        assert f'<a name="{meta["grade_id"]}">' in markup, meta["grade_id"]
        assert f"Score: 0.0 / {float(meta['points'])}" in text, meta["grade_id"]
    # the failure message: the stub's error, raised in the student's code
    assert "NotImplementedError" in text


def test_first_run_progress_exit_code_and_no_warnings(graded: dict) -> None:
    first = graded["first"]
    n = len(CHAPTERS) + 1
    assert first.returncode == 1, first.stdout[-3000:] + first.stderr[-3000:]
    progress = re.findall(rf"^\[\s*(\d+)/{n}\] .*(ETA \d+:\d\d|done)", first.stdout, re.M)
    assert [int(done) for done, _ in progress] == list(range(1, n + 1)), first.stdout[-3000:]
    assert "could not be graded normally" in first.stdout
    for stream in (first.stdout, first.stderr):
        assert "Warning" not in stream, stream[-3000:]
    broken = graded["summary"]["students"]["broken"][TWO]
    assert broken["status"] == "failed" and broken["score"] == 0
    assert any("not a valid notebook" in p for p in broken["problems"])


def test_regrade_one_student_reports_the_feedback_failure(graded: dict) -> None:
    again = graded["again"]
    assert again.returncode == 3, again.stdout[-3000:] + again.stderr[-3000:]
    assert re.search(rf"feedback step: released: no feedback for {TWO}", again.stdout)
    assert "[1/1] released" in again.stdout
    for stream in (again.stdout, again.stderr):
        assert "Warning" not in stream, stream[-3000:]
    assert list(graded["regrade_summary"]["students"]) == ["released"]
    # the other students' grades and feedback stay as they were
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{graded['out'] / 'gradebook.db'}", "course_lib") as gb:
        assert sorted(s.id for s in gb.students) == ["broken", "released"]
        assert len(gb.find_student("released").submissions) == len(CHAPTERS)
    other = graded["other"]
    assert other.stat().st_mtime_ns == graded["other_mtime"]


def test_unknown_student_or_assignment_is_a_usage_error(tmp_path: Path) -> None:
    course = CourseDir.create(tmp_path / "course", from_repo=[TWO])
    (tmp_path / "subs" / "ana" / TWO).mkdir(parents=True)
    result = grade(course, str(tmp_path / "subs"), "--student", "bo")
    assert result.returncode == 2 and "no submissions of bo" in result.stdout
    result = grade(course, str(tmp_path / "subs"), "-a", "ch99_nothing")
    assert result.returncode == 2 and "unknown assignment" in result.stdout
