"""What the grader noticed in a submission, and the fairness policy that decides what it costs
(docs/grading.md, "Fairness policy"). The verdict side imports this module: nbformat and
nbgrader (1.5 s to import) are imported only inside the functions that need them."""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

Kind = Literal["habit", "reference", "grader"]

#: ename of the error output a test gets for each costly runtime finding.
ENAMES: Mapping[str, str] = {"reference": "ReferenceUsed", "grader": "GraderAccess"}
_KIND_OF = {v: k for k, v in ENAMES.items()}
#: starts the traceback line that carries a runtime finding: ``[kind, exercise, cell, line]``
_MARK = "[course-lib finding]"


@dataclass(frozen=True)
class Finding:
    """One thing the grader noticed; it costs points when ``tests`` (grade_ids) is not empty."""

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

    def describe(self) -> str:
        if self.cell is None:
            return f"while a test ran: {self.message}"
        line = f", line {self.line}" if self.line else ""
        return f"cell {self.cell + 1}{line}: {self.message}"

    def summary_line(self) -> str:
        """One line for the printed summary and the gradebook comment."""
        return f"[{self.kind}; {self.consequence}] {self.describe()}"

    def to_dict(self, notebook: str) -> dict[str, Any]:
        """The finding in ``summary.json`` (``where`` is the printed line)."""
        return {
            "notebook": notebook,
            **asdict(self),
            "tests": list(self.tests),
            "where": self.summary_line(),
            "costs_points": self.costs_points,
        }


def to_python(source: str) -> str:
    """A cell's source with IPython syntax (magics, ``!`` commands) turned into Python."""
    try:
        ast.parse(source)
        return source
    except SyntaxError:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)


def named_error(ename: str, evalue: str, *more: str) -> dict[str, Any]:
    """An nbformat error output saying ``ename: evalue`` (no traceback of the grader), then
    the lines ``more``."""
    traceback = [f"\x1b[0;31m{ename}\x1b[0m: {evalue}", *more]
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": traceback}


def report_outputs(report: Mapping[str, Any] | None, cells: list[str]) -> list[dict[str, Any]]:
    """Error outputs for what the kernel's watch reported during one test (verdict side):
    ``report`` of :func:`course_lib.grading.refwatch.report` (``hits`` of the reference,
    ``notes`` of reaches for the grader); ``cells``: the submitted notebook's cell sources."""
    items = [("reference", h) for h in (report or {}).get("hits") or []]
    items += [("grader", n) for n in (report or {}).get("notes") or []]
    outputs, seen = [], set()
    for kind, item in items:
        if (key := (item.get("exercise"), item.get("label"), item.get("message"))) in seen:
            continue
        seen.add(key)
        # the submitted cell the kernel's frame belongs to (by its source), and the line
        source = str(item.get("source") or "").strip()
        sources = ([convert(c).strip() for c in cells] for convert in (str, to_python))
        cell = next((s.index(source) for s in sources if source and source in s), None)
        line = int(item.get("line") or 0) or None
        if kind == "reference":
            how = "a copy of " if item.get("copy") else ""
            message = (
                f"your `{item.get('exercise')}` ran {how}the reference implementation "
                f"`{item.get('label')}`: this exercise scores 0. Write your own code "
                "(the stuck-student line belongs after the exercise's tests)."
            )
        else:
            message = (
                f"your code {item.get('message')}: an attempt to reach the grader; "
                "the notebook is flagged for your instructor's review."
            )
        exercise = item.get("exercise") if kind == "reference" else None
        text = Finding(kind, message, cell, line).describe()
        mark = json.dumps([kind, exercise, cell, line])  # read back by collect_findings
        outputs.append(named_error(ENAMES[kind], text, f"{_MARK} {mark}"))
    return outputs


def collect_findings(source: Any, autograded: Any) -> list[Finding]:
    """The static pass's findings over the autograded notebook, then the runtime findings its
    test outputs carry: a reference finding costs every test of its exercise, a grader finding
    every test from its own on."""
    from course_lib.grading.notebook import grade_id, is_test
    from course_lib.grading.static import scan_submission, verdict_init

    exercises, cells = verdict_init(source)["exercises"], autograded.cells
    tests = [(i, grade_id(c)) for i, c in enumerate(cells) if c.cell_type == "code" and is_test(c)]
    found: dict[tuple[str, str, str], Finding] = {}
    for index, gid in tests:
        for output in cells[index].get("outputs", []):
            marks = [t.split(_MARK, 1)[1] for t in output.get("traceback", []) if _MARK in t]
            try:
                kind = _KIND_OF[str(output.get("ename"))]
                _, exercise, cell, line = json.loads(marks[-1])
            except (KeyError, IndexError, ValueError, TypeError):
                continue  # not the verdict's (a student's own message quoting the mark)
            if kind == "reference":
                costs = tuple(sorted({*exercises.get(exercise or "", ()), gid}))
            else:
                costs = tuple(g for pos, g in tests if pos >= index)
            evalue = str(output.get("evalue"))  # "cell 2, line 3: message"
            message = evalue.split(": ", 1)[-1]
            finding = Finding(kind, message, cell, line, costs, exercise, "runtime")
            found.setdefault((kind, exercise or "", evalue), finding)
    return scan_submission(source, autograded) + list(found.values())


def apply_findings(
    findings: list[Finding], autograded: Any, grades: Mapping[str, Any], comments: Mapping[str, Any]
) -> bool:
    """Apply the fairness policy to one autograded notebook and to ``grades`` and ``comments``
    (grade_id -> nbgrader's ``Grade`` of each graded cell, ``Comment`` of each answer cell: a
    finding goes to the answer cell at or before its cell, else the first); True: flag it."""
    from nbformat import from_dict

    from course_lib.grading.notebook import grade_id, is_answer

    cells = autograded.cells
    by_id = {grade_id(c): c for c in cells if grade_id(c)}
    answers = [(i, grade_id(c)) for i, c in enumerate(cells) if is_answer(c) and grade_id(c)]
    flagged = False
    for finding in findings:
        text = finding.describe()
        for gid in finding.tests:
            if gid in grades:
                grades[gid].auto_score = 0.0
                flagged = flagged or finding.kind == "grader"
            outputs = by_id[gid].setdefault("outputs", []) if gid in by_id else []
            if all(finding.message not in o.get("evalue", "") for o in outputs):
                error = named_error("IntegrityCheckFailed", f"this test scores 0: {text}")
                outputs.append(from_dict(error))
        before = [g for i, g in answers if finding.cell is not None and i <= finding.cell]
        comment = comments.get(before[-1] if before else next((g for _, g in answers), None))
        if comment is not None:
            lines = [comment.auto_comment, finding.summary_line()]
            comment.auto_comment = "\n".join(filter(None, lines))
        if finding.cell is not None and 0 <= finding.cell < len(cells):
            if cells[finding.cell].cell_type == "code":
                note = f"Note from the grader ({finding.consequence}): {text}\n"
                stream = {"output_type": "stream", "name": "stderr", "text": note}
                cells[finding.cell].setdefault("outputs", []).append(from_dict(stream))
    return flagged
