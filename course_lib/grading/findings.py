"""What the grader noticed in a submission, and how each finding reaches the instructor.

The fairness policy (docs/grading.md): tests run in the verdict process, so nothing a student
does inside their kernel changes a verdict. In-kernel habits (shell commands, magics,
``sys.stdout``, standard-library imports, ``setattr`` on their own objects, patching a library
inside their own kernel) are **reported, never punished**. Only two things cost points:

``reference``  the reference implementation of an exercise ran while that exercise's tests ran
               (detected at run time, :mod:`course_lib.grading.refwatch`): every test of that
               exercise scores 0. The static pass's reference findings are early warnings only
               (no points lost);
``grader``     a demonstrable attempt to reach the grader itself (its modules, the verdict
               socket, the gradebook, the watch): the notebook is flagged for review and the
               tests from that point on score 0 until the instructor decides.

Every finding carries its cell and line, and reaches the instructor three ways: the printed
summary and ``summary.json`` (:meth:`Finding.to_dict`), the gradebook comment of the answer cell
it belongs to, and the feedback (a note under the cell, an error output on each zeroed test).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import nbformat

from course_lib.grading.notebook import nbgrader_meta

__all__ = [
    "Finding",
    "apply_findings",
    "collect_findings",
    "report_outputs",
    "runtime_findings",
    "runtime_output",
]

Kind = Literal["habit", "reference", "grader"]

#: ename of the error output a test gets for each costly runtime finding.
ENAMES: Mapping[str, str] = {"reference": "ReferenceUsed", "grader": "GraderAccess"}
_KIND_OF = {v: k for k, v in ENAMES.items()}
_MARK = "[course-lib finding]"
_MARK_RE = re.compile(re.escape(_MARK) + r" kind=(\w+) exercise=(\S*) cell=(-?\d+) line=(-?\d+)")


@dataclass(frozen=True)
class Finding:
    """One thing the grader noticed (see the module docstring for the policy)."""

    kind: Kind
    message: str  # in the student's terms: what the code does
    cell: int | None = None  # index in the submitted notebook (0-based), None if unknown
    line: int | None = None  # line in that cell (1-based)
    tests: tuple[str, ...] = ()  # grade_ids of the tests that score 0 because of it
    exercise: str | None = None
    detected: Literal["static", "runtime"] = "static"

    @property
    def costs_points(self) -> bool:
        return bool(self.tests)

    @property
    def consequence(self) -> str:
        if self.kind == "grader":
            return "flagged for review, the tests from here on score 0"
        if self.costs_points:
            return f"every test of {self.exercise or 'this exercise'} scores 0"
        if self.kind == "reference":
            return "early warning, no points lost (the grader judges by what runs)"
        return "reported, no points lost"

    @property
    def where(self) -> str:
        if self.cell is None:
            return "while a test ran"
        return f"cell {self.cell + 1}" + (f", line {self.line}" if self.line else "")

    def describe(self) -> str:
        return f"{self.where}: {self.message}"

    def summary_line(self) -> str:
        """One line for the printed summary and the gradebook comment."""
        return f"[{self.kind}; {self.consequence}] {self.describe()}"

    def to_dict(self, notebook: str) -> dict[str, Any]:
        """The finding in ``summary.json`` (``where`` is the printed line)."""
        return {
            "notebook": notebook,
            "kind": self.kind,
            "where": self.summary_line(),
            "cell": self.cell,
            "line": self.line,
            "message": self.message,
            "tests": list(self.tests),
            "exercise": self.exercise,
            "detected": self.detected,
            "costs_points": self.costs_points,
        }


# ------------------------------------------------------------------------------------------
# runtime findings travel inside the test cell's outputs (so plain nbgrader scores them too)


def runtime_output(
    kind: Kind, message: str, *, exercise: str | None, cell: int | None, line: int | None
) -> dict[str, Any]:
    """The error output (nbformat) that makes a test score 0 for a runtime finding."""
    ename = ENAMES[kind]
    if cell is not None:
        message = f"cell {cell + 1}" + (f", line {line}" if line else "") + f": {message}"
    mark = (
        f"{_MARK} kind={kind} exercise={exercise or ''} "
        f"cell={-1 if cell is None else cell} line={line or 0}"
    )
    return {
        "output_type": "error",
        "ename": ename,
        "evalue": message,
        "traceback": [f"\x1b[0;31m{ename}\x1b[0m: {message}", mark],
    }


def _locate(site: Mapping[str, Any], cells: list[str]) -> tuple[int | None, int | None]:
    """The submitted cell (index) and line a kernel frame belongs to (by the cell's source)."""
    from course_lib.grading.static import to_python

    source = str(site.get("source") or "").strip()
    line = int(site.get("line") or 0) or None
    if source:
        for convert in (str, to_python):
            for index, cell in enumerate(cells):
                if convert(cell).strip() == source:
                    return index, line
    return None, line


def report_outputs(report: Mapping[str, Any] | None, cells: list[str]) -> list[dict[str, Any]]:
    """Error outputs for what the kernel's watch reported during one test (verdict side).

    ``report``: :func:`course_lib.grading.refwatch.report` (``hits`` of the reference,
    ``notes`` of reaches for the grader); ``cells``: the submitted notebook's cell sources.
    """
    outputs = []
    seen: set[Any] = set()
    for hit in (report or {}).get("hits") or []:
        key = (hit.get("exercise"), hit.get("label"))
        if key in seen:
            continue
        seen.add(key)
        cell, line = _locate(hit, cells)
        how = "a copy of " if hit.get("copy") else ""
        message = (
            f"your `{hit.get('exercise')}` ran {how}the reference implementation "
            f"`{hit.get('label')}`: this exercise scores 0. Write your own code "
            "(the stuck-student line belongs after the exercise's tests)."
        )
        exercise = hit.get("exercise")
        outputs.append(
            runtime_output("reference", message, exercise=exercise, cell=cell, line=line)
        )
    for note in (report or {}).get("notes") or []:
        if note.get("message") in seen:
            continue
        seen.add(note.get("message"))
        cell, line = _locate(note, cells)
        message = (
            f"your code {note.get('message')}: an attempt to reach the grader; "
            "the notebook is flagged for your instructor's review."
        )
        outputs.append(runtime_output("grader", message, exercise=None, cell=cell, line=line))
    return outputs


def _test_positions(nb: Any) -> list[tuple[int, str]]:
    return [
        (i, nbgrader_meta(c)["grade_id"])
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
        and nbgrader_meta(c).get("grade")
        and not nbgrader_meta(c).get("solution")
    ]


def runtime_findings(autograded: Any, exercise_tests: Mapping[str, Iterable[str]]) -> list[Finding]:
    """The runtime findings recorded in an autograded notebook's test outputs."""
    positions = _test_positions(autograded)
    seen: set[tuple[str, str, str]] = set()
    found: list[Finding] = []
    for index, gid in positions:
        for output in autograded.cells[index].get("outputs", []):
            kind = _KIND_OF.get(str(output.get("ename")))
            if kind is None:
                continue
            mark = next((m for t in output.get("traceback", []) if (m := _MARK_RE.search(t))), None)
            if mark is None:
                continue
            exercise, cell, line = mark.group(2) or None, int(mark.group(3)), int(mark.group(4))
            key = (kind, exercise or "", str(output.get("evalue")))
            if key in seen:
                continue
            seen.add(key)
            if kind == "reference":
                tests = tuple(sorted(set(exercise_tests.get(exercise or "", ())) | {gid}))
            else:
                tests = tuple(g for pos, g in positions if pos >= index)
            message = re.sub(r"^cell \d+(, line \d+)?: ", "", str(output.get("evalue")))
            found.append(
                Finding(
                    kind,
                    message,
                    cell if cell >= 0 else None,
                    line or None,
                    tests,
                    exercise,
                    "runtime",
                )
            )
    return found


def collect_findings(source: Any, submitted: Any, autograded: Any) -> list[Finding]:
    """Static findings of the submission and runtime findings of its autograded notebook."""
    from course_lib.grading.static import exercise_tests, scan_submission

    tests = exercise_tests(source)
    return scan_submission(source, submitted) + runtime_findings(autograded, tests)


# ------------------------------------------------------------------------------------------
# applying findings to the grades, the gradebook comments and the feedback


def _answer_cell_for(nb: Any, index: int | None) -> str | None:
    """grade_id of the answer cell a finding belongs to (at or before it, else the first)."""
    answers = [
        (i, nbgrader_meta(c)["grade_id"])
        for i, c in enumerate(nb.cells)
        if nbgrader_meta(c).get("solution") and nbgrader_meta(c).get("grade_id")
    ]
    if not answers:
        return None
    if index is not None:
        before = [g for i, g in answers if i <= index]
        if before:
            return before[-1]
    return answers[0][1]


def apply_findings(findings: list[Finding], entry: Any, autograded: Any) -> None:
    """Zero the tests findings cost, flag the notebook for grader findings, and write every
    finding into the gradebook comments and the feedback notebook.

    ``entry``: the worker's result of one notebook
    (:class:`course_lib.grading.tasks.NotebookResult`: ``grades``, grade_id -> a grade with
    ``auto_score`` and ``flagged``; ``comments``, comment name -> text).
    """

    grades = entry.grades
    comments = entry.comments
    by_id = {
        nbgrader_meta(c).get("grade_id"): c
        for c in autograded.cells
        if nbgrader_meta(c).get("grade_id")
    }
    for finding in findings:
        for gid in finding.tests:
            grade = grades.get(gid)
            if grade is not None:
                grade.auto_score = 0.0
                if finding.kind == "grader":
                    grade.flagged = [*grade.flagged, finding.describe()]
            cell = by_id.get(gid)
            if cell is not None and not any(
                finding.message in str(o.get("evalue")) for o in cell.get("outputs", [])
            ):
                cell.setdefault("outputs", []).append(
                    nbformat.v4.new_output(
                        "error",
                        ename="IntegrityCheckFailed",
                        evalue=f"this test scores 0: {finding.describe()}",
                        traceback=[
                            "\x1b[0;31mIntegrityCheckFailed\x1b[0m: this test scores 0: "
                            f"{finding.describe()}"
                        ],
                    )
                )
        name = _answer_cell_for(autograded, finding.cell)
        if name is not None:
            previous = comments.get(name) or ""
            comments[name] = (previous + "\n" if previous else "") + finding.summary_line()
        if finding.cell is not None and 0 <= finding.cell < len(autograded.cells):
            target = autograded.cells[finding.cell]
            if target.cell_type == "code":
                target.setdefault("outputs", []).append(
                    nbformat.v4.new_output(
                        "stream",
                        name="stderr",
                        text=f"Note from the grader ({finding.consequence}): "
                        f"{finding.describe()}\n",
                    )
                )
