"""The course home: the chapter map and the student's progress per exercise.

``course-lib lab`` writes ``START_HERE.ipynb`` into the student's workspace at every start
(:func:`write_home_notebook`); ``course-lib progress`` prints the same progress as a table.

Progress of one check (one test cell of a chapter) comes from the best evidence there is:

1. the last ``course-lib validate`` of the chapter, if the notebook has not changed since
   (validate runs the notebook as the grader does and records each check in
   ``<workspace>/.course/validation.json``);
2. otherwise the outputs saved in the notebook: an error in the test cell's output is
   *failing*, a test cell that ran without one is *passing*; a test cell that never ran is
   *not attempted* while the exercise's code cell still holds ``raise NotImplementedError()``
   and *not run* once it has code.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat

__all__ = [
    "CHAPTERS",
    "Check",
    "ChapterInfo",
    "chapter_checks",
    "course_progress",
    "format_progress",
    "record_validation",
    "write_home_notebook",
]

PASSING, FAILING, NOT_ATTEMPTED, NOT_RUN = "passing", "failing", "not attempted", "not run"
#: Where validate records its verdicts, relative to the workspace.
VALIDATION_FILE = Path(".course") / "validation.json"
STUB = "raise NotImplementedError()"


@dataclass(frozen=True)
class ChapterInfo:
    """What a chapter teaches and what the student builds in it."""

    title: str
    teaches: str
    builds: str
    #: hours a student typically needs to read and work the chapter (an instructor's estimate)
    study_hours: str


#: The chapter map, in teaching order (keys are the assignment ids of graders/nbgrader_config.py).
CHAPTERS: dict[str, ChapterInfo] = {
    "ch01_differentiation": ChapterInfo(
        "Numerical differentiation",
        "derivatives and gradients by finite differences, gradient descent, softmax and "
        "cross-entropy: how a network learns by lowering a loss",
        "numerical_diff, numerical_gradient, gradient_descent, softmax, cross_entropy_error",
        "3-4",
    ),
    "ch02_backpropagation": ChapterInfo(
        "Backpropagation",
        "computational graphs and the chain rule, layer by layer; checking gradients",
        "MulLayer/AddLayer, Relu, Sigmoid, Affine, SoftmaxWithLoss, a TwoLayerNet trained on MNIST",
        "4-5",
    ),
    "ch03_training_techniques": ChapterInfo(
        "Training techniques",
        "optimizers, weight initialisation, batch normalisation, dropout, validation data",
        "SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam, BatchNormalization, Dropout",
        "5-6",
    ),
    "ch04_convolutional_networks": ChapterInfo(
        "Convolutional networks",
        "convolution and pooling as matrix products (im2col), a CNN for MNIST",
        "im2col, Convolution and Pooling forward/backward, a SimpleConvNet",
        "5-6",
    ),
    "ch05_deep_networks": ChapterInfo(
        "Deep networks",
        "deeper CNNs, data augmentation, saving parameters, Fashion-MNIST",
        "augmentation, .npz parameters, LeakyRelu, GlobalAvgPooling, your own CNN",
        "5-7",
    ),
    "ch06_draw_a_digit": ChapterInfo(
        "Draw a digit",
        "what MNIST's preprocessing did, applied to your own drawings",
        "the preprocessing of a drawing (bounding box, centre of mass, fit, centring)",
        "2-3",
    ),
}


@dataclass
class Check:
    """One test cell of a chapter and where the student stands on it."""

    grade_id: str
    label: str
    points: float
    status: str
    message: str = ""
    source: str = "notebook"  #: "notebook" (saved outputs) or "validate"


def label_of(chapter: str, grade_id: str) -> str:
    """``ch02_backpropagation-relu-backward-tests`` -> ``relu-backward``."""
    label = grade_id.removeprefix(f"{chapter}-").removeprefix(f"{chapter.split('_')[0]}-")
    return label.removesuffix("-tests") or grade_id


def _meta(cell: nbformat.NotebookNode) -> dict:
    return dict(cell.get("metadata", {}).get("nbgrader", {}) or {})


def error_text(output: dict) -> str:
    """``ename: evalue`` of an error output, whole."""
    return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".rstrip(": ")


def notebook_checks(chapter: str, nb: nbformat.NotebookNode) -> list[Check]:
    """Every test cell of ``nb`` with its status from the saved outputs."""
    checks = []
    answer = ""
    for cell in nb.cells:
        meta = _meta(cell)
        if meta.get("solution"):
            answer = cell.source
            continue
        if not (meta.get("grade") and cell.cell_type == "code"):
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            status, message = FAILING, error_text(errors[0])
        elif cell.get("execution_count") is not None or cell.get("outputs"):
            status, message = PASSING, ""
        else:
            status, message = (NOT_ATTEMPTED if STUB in answer else NOT_RUN), ""
        gid = meta.get("grade_id", "")
        checks.append(
            Check(gid, label_of(chapter, gid), float(meta.get("points") or 0), status, message)
        )
    return checks


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_validation(workspace: Path) -> dict:
    path = workspace / VALIDATION_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def record_validation(workspace: Path, chapter: str, notebook: Path, checks: list[Check]) -> None:
    """Remember validate's verdicts on ``notebook`` (as it is on disk now)."""
    data = _load_validation(workspace)
    data[chapter] = {
        "sha256": file_digest(notebook),
        "checks": [asdict(c) for c in checks],
    }
    path = workspace / VALIDATION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def workspace_notebook(workspace: Path, chapter: str) -> Path:
    return workspace / chapter / f"{chapter}.ipynb"


def chapter_checks(workspace: Path, chapter: str) -> list[Check] | None:
    """The checks of ``chapter`` in ``workspace`` (None if the notebook is missing)."""
    path = workspace_notebook(workspace, chapter)
    if not path.is_file():
        return None
    recorded = _load_validation(workspace).get(chapter)
    if recorded and recorded.get("sha256") == file_digest(path):
        return [Check(**{**c, "source": "validate"}) for c in recorded["checks"]]
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # an unreadable notebook: say so instead of a progress
        return [Check("", "(notebook)", 0.0, FAILING, f"cannot read {path.name}: {exc}")]
    return notebook_checks(chapter, nb)


def chapter_ids(chapters: Path) -> list[str]:
    """The released chapters, in the order of :data:`CHAPTERS`, then any others by name."""
    found = sorted(p.name for p in chapters.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))
    return [c for c in CHAPTERS if c in found] + [c for c in found if c not in CHAPTERS]


def course_progress(workspace: Path, chapters: Path) -> dict[str, list[Check] | None]:
    return {chapter: chapter_checks(workspace, chapter) for chapter in chapter_ids(chapters)}


def counts(checks: list[Check]) -> dict[str, int]:
    out = {PASSING: 0, FAILING: 0, NOT_ATTEMPTED: 0, NOT_RUN: 0}
    for check in checks:
        out[check.status] = out.get(check.status, 0) + 1
    return out


def full_run_minutes(notebook: Path) -> str:
    """The full-mode time the chapter's setup cell states (``about N min``), else ''."""
    try:
        text = notebook.read_text()
    except OSError:
        return ""
    match = re.search(r"full run \(about ([^)]*?\d[^)]*?)\)", text)  # a measured figure
    return match.group(1) if match else ""


def format_progress(progress: dict[str, list[Check] | None]) -> str:
    """The progress as a plain-text table, one row per check, with a summary line."""
    rows = [("chapter", "check", "points", "status", "from")]
    total: dict[str, int] = {}
    for chapter, checks in progress.items():
        if checks is None:
            rows.append((chapter, "(not in your workspace yet)", "", "", ""))
            continue
        for check in checks:
            rows.append((chapter, check.label, f"{check.points:g}", check.status, check.source))
            total[check.status] = total.get(check.status, 0) + 1
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    n = sum(total.values())
    lines.append(
        f"{n} checks: "
        + ", ".join(f"{total.get(s, 0)} {s}" for s in (PASSING, FAILING, NOT_ATTEMPTED, NOT_RUN))
    )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# START_HERE.ipynb

_SYMBOL = {PASSING: "✅", FAILING: "❌", NOT_ATTEMPTED: "⬜", NOT_RUN: "🔸"}


def home_markdown(workspace: Path, chapters: Path) -> list[str]:
    """The markdown cells of the course home."""
    intro = (
        "# Start here: Deep Learning from Scratch\n\n"
        "Six chapters, one notebook each. In every chapter you read a little theory, then "
        "write the code yourself; a **test cell** under each exercise checks it. Work in the "
        "chapters listed below (they are your own copies: updating the course never "
        "overwrites them).\n\n"
        "**How to work an exercise.** Replace `raise NotImplementedError()` in the exercise's "
        "cell with your code, run the cell (Shift+Enter), then run the test cell under it. "
        "`Visible tests passed.` means you pass the tests you can see; otherwise the message "
        "says what is wrong. Stuck? The one-line cell under the test switches to the "
        "course's reference version so you can go on (the exercise then earns no points).\n\n"
        "**Quick mode.** The chapters start in quick mode: small subsets, every cell under "
        "about a minute. The first code cell of each chapter has the switch "
        "(`QUICK = course_lib.quick_mode(True)`; `False` runs the full chapter, with the "
        "time it takes).\n\n"
        "**Before you hand in,** run in a terminal, from the course folder:\n\n"
        "```\n./course.sh validate            # every chapter\n"
        "./course.sh validate ch02       # one chapter\n```\n\n"
        "It runs your saved notebooks exactly as the grader does and lists every failing "
        "check with its full message. `./course.sh progress` prints the table below."
    )
    rows = [
        "## The chapters\n",
        "| # | chapter | what you learn | what you build | study time | full run |",
        "|---|---|---|---|---|---|",
    ]
    progress_lines = ["## Your progress\n"]
    for number, chapter in enumerate(chapter_ids(chapters), start=1):
        info = CHAPTERS.get(chapter, ChapterInfo(chapter, "", "", "?"))
        link = f"[{info.title}]({chapter}/{chapter}.ipynb)"
        minutes = full_run_minutes(workspace_notebook(workspace, chapter)) or full_run_minutes(
            chapters / chapter / f"{chapter}.ipynb"
        )
        rows.append(
            f"| {number} | {link} | {info.teaches} | {info.builds} | "
            f"about {info.study_hours} h | {minutes or '—'} |"
        )
        checks = chapter_checks(workspace, chapter)
        if checks is None:
            progress_lines.append(f"**{number}. {info.title}**: not in your workspace yet.\n")
            continue
        c = counts(checks)
        items = ", ".join(f"{_SYMBOL[ch.status]} `{ch.label}`" for ch in checks)
        progress_lines.append(
            f"**{number}. {info.title}**: {c[PASSING]} of {len(checks)} checks passing"
            + (f", {c[FAILING]} failing" if c[FAILING] else "")
            + f". {items}\n"
        )
    rows.append(
        "\nStudy time is an estimate for reading and working the chapter; *full run* is the "
        "measured time of the whole notebook in full mode on 2 cores (quick mode: every "
        "cell under about a minute)."
    )
    progress_lines.append(
        "✅ passing · ❌ failing · ⬜ not attempted · 🔸 written, test not run yet. "
        "From your saved notebooks, or your last `./course.sh validate` where the notebook "
        "has not changed since. This page is rewritten at every `./course.sh start`; run the "
        "cell below to refresh the table now."
    )
    return [intro, "\n".join(rows), "\n".join(progress_lines)]


REFRESH_CELL = (
    "# Refresh your progress (the same table as `./course.sh progress`)\n"
    "from course_lib.cli.progress import show\n\n"
    "show()"
)


def write_home_notebook(workspace: Path, chapters: Path) -> Path:
    """Write ``START_HERE.ipynb`` (the chapter map and progress) into ``workspace``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(text) for text in home_markdown(workspace, chapters)]
    nb.cells.append(nbformat.v4.new_code_cell(REFRESH_CELL))
    path = workspace / "START_HERE.ipynb"
    nbformat.write(nb, str(path))
    return path
