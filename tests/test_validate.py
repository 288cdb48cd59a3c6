"""`course-lib validate` / `./course.sh validate`: the truth about a student's notebooks.

- a planted mistake: exit status 1, the failing check's whole message, one summary line;
- a correct workspace: exit status 0;
- agreement with `course-lib grade` on the planted-mistake corpus of chapter 2: every test cell
  passes in validate exactly when it earns its points under the grader.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from grading_support import find_data_dir, plant, prune_demonstrations
from planted_errors import PLANTED

from course_lib.cli.validate import resolve_chapters, validate_notebooks

REPO = Path(__file__).resolve().parent.parent
CHAPTER = "ch02_backpropagation"
RELU = next(p for p in PLANTED[CHAPTER] if p.name == "relu-backward-sign-error")


def gid(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def student_notebook(
    chapter: str, wrong=None, *, prune: bool = True, root: Path = REPO
) -> nbformat.NotebookNode:
    """The released chapter (what a student gets) answered with the instructor's solution,
    optionally with one planted mistake."""
    released = nbformat.read(str(root / "chapters" / chapter / f"{chapter}.ipynb"), 4)
    solution = nbformat.read(str(root / "solutions" / chapter / f"{chapter}.ipynb"), 4)
    answers = {gid(c): c.source for c in solution.cells if gid(c)}
    nb = copy.deepcopy(released)
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution") and gid(cell) in answers:
            cell.source = "\n".join(
                line
                for line in answers[gid(cell)].splitlines()
                if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")
            )
    if wrong is not None:
        nb = plant(nb, wrong)
    return prune_demonstrations(nb) if prune else nb


def env() -> dict[str, str]:
    out = dict(os.environ)
    data = find_data_dir()
    if data is not None:
        out["COURSE_LIB_DATA"] = str(data)
    return out


def test_chapter_names():
    available = ["ch01_differentiation", "ch02_backpropagation"]
    assert resolve_chapters([], available) == available
    assert resolve_chapters(["2", "ch01", "ch02_backpropagation"], available) == [
        "ch02_backpropagation",
        "ch01_differentiation",
    ]
    with pytest.raises(SystemExit, match="no chapter 'ch09'"):
        resolve_chapters(["ch09"], available)


def run_validate(workspace: Path, *chapters: str) -> subprocess.CompletedProcess[str]:
    """`./course.sh validate` as the student guide shows it (a new shell, nothing activated)."""
    return subprocess.run(
        ["./course.sh", "validate", *chapters],
        cwd=REPO,
        env={**env(), "COURSE_LIB_WORKSPACE": str(workspace)},
        capture_output=True,
        text=True,
        timeout=1200,
    )


@pytest.mark.grading
def test_validate_a_planted_mistake_fails_with_the_whole_message(tmp_path):
    path = tmp_path / CHAPTER / f"{CHAPTER}.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(student_notebook(CHAPTER, RELU), str(path))
    out = run_validate(tmp_path, "ch02")
    assert out.returncode == 1, out.stdout + out.stderr
    text = out.stdout
    assert "FAIL relu-backward" in text
    # the whole message, up to its last words (nbgrader validate cut it after 'difference 80; 2')
    assert "Relu backward[" in text and "of 4 values differ)" in text, text
    assert re.fullmatch(rf"validate: 1 of \d+ checks fail in {CHAPTER}", text.splitlines()[-1])
    # recorded for the progress table
    assert (tmp_path / ".course" / "validation.json").is_file()


@pytest.mark.grading
def test_validate_a_correct_workspace_passes(tmp_path):
    chapter = "ch01_differentiation"
    path = tmp_path / chapter / f"{chapter}.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(student_notebook(chapter), str(path))
    out = run_validate(tmp_path, chapter)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1].startswith("validate: all ")


def grader_cell_scores(output: Path, students: list[str]) -> dict[str, dict[str, bool]]:
    """{student: {autograded test cell: earned its points}} from the grader's gradebook."""
    from nbgrader.api import Gradebook

    scores: dict[str, dict[str, bool]] = {}
    with Gradebook(f"sqlite:///{output / 'gradebook.db'}") as gb:
        for student in students:
            sub = gb.find_submission_notebook(CHAPTER, CHAPTER, student)
            scores[student] = {
                g.name: (g.auto_score or 0) >= g.max_score
                for g in sub.grades
                if g.max_score and g.cell.cell_type == "code"  # not written answers
            }
    return scores


def course_copy(tmp_path: Path) -> Path:
    """The course's sources and configuration, released afresh (chapters/ in sync)."""
    root = tmp_path / "course"
    for name in ("graders", "solutions"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("gradebook.db"))
    subprocess.run(
        [sys.executable, "-m", "course_lib.cli", "release", "--assignment", CHAPTER],
        cwd=root, env=env(), check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return root


@pytest.mark.grading
def test_validate_agrees_with_the_grader_on_the_planted_corpus(tmp_path):
    root = course_copy(tmp_path)
    plants = {p.name: p for p in PLANTED[CHAPTER]}
    notebooks = {"correct": student_notebook(CHAPTER, root=root)}
    notebooks |= {name: student_notebook(CHAPTER, p, root=root) for name, p in plants.items()}
    submissions = tmp_path / "submitted"
    files = {}
    for name, nb in notebooks.items():
        path = submissions / name / CHAPTER / f"{CHAPTER}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, str(path))
        files[name] = {CHAPTER: path}

    validated = validate_notebooks(files, root, jobs=2)
    output = tmp_path / "graded"
    graded = subprocess.run(
        [
            sys.executable,
            "-m",
            "course_lib.cli",
            "grade",
            str(submissions),
            "-o",
            str(output),
            "-a",
            CHAPTER,
            "-j",
            "2",
            "--no-feedback",
            "--course-root",
            str(root),
        ],
        cwd=root,
        env=env(),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert graded.returncode in (0, 1), graded.stdout[-3000:] + graded.stderr[-3000:]
    scores = grader_cell_scores(output, list(notebooks))

    disagreements = []
    for name in notebooks:
        (result,) = validated[name]
        assert result.graded, (name, result.problems)
        mine = {c.grade_id: c.status == "passing" for c in result.checks}
        assert set(mine) == set(scores[name]), name
        for cell, passes in sorted(scores[name].items()):
            if mine[cell] != passes:
                disagreements.append(f"{name}: {cell} grader {passes}, validate {mine[cell]}")
        if name != "correct":
            # the planted mistake is caught where the corpus says
            assert not any(mine[cell] for cell in plants[name].loses), (name, mine)
    assert all(v for v in scores["correct"].values())
    assert not disagreements, "\n".join(disagreements)
