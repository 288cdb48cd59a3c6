"""What the grader knows about a notebook: its cells' nbgrader roles (``nbgrader.utils``'s),
reading a submitted file and how it differs from its source, and the two preprocessors the
grader adds to nbgrader's (docs/grading.md, "Fairness policy" and "Tamper resistance")."""

from __future__ import annotations

import ast
import copy
import json
import re
from pathlib import Path
from typing import Any

import nbformat
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbformat import NotebookNode
from nbgrader import utils as nbutils
from nbgrader.api import Gradebook
from nbgrader.preprocessors import ClearHiddenTests, GetGrades, NbGraderPreprocessor

from course_lib.grading.findings import apply_findings, collect_findings

#: Largest submitted file the grader reads.
MAX_FILE_BYTES = 50 * 1024 * 1024


def nbgrader_meta(cell: Any) -> dict[str, Any]:
    """A copy of the cell's nbgrader metadata (empty when it has none)."""
    return dict(cell.get("metadata", {}).get("nbgrader", {}) or {})


def grade_id(cell: Any) -> str | None:
    return nbgrader_meta(cell).get("grade_id")


def is_test(cell: Any) -> bool:
    """An autograder test cell: graded, not an answer."""
    return bool(nbutils.is_grade(cell) and not nbutils.is_solution(cell))


def is_answer(cell: Any) -> bool:
    """A code cell the student writes their answer in."""
    return cell.cell_type == "code" and bool(nbutils.is_solution(cell))


def read_notebook(path: Path) -> tuple[NotebookNode | None, str | None]:
    """(the notebook as nbformat v4 or None, the problem that prevents reading it or the note
    that it was upgraded from an older nbformat)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read {path.name}: {exc}"
    if not raw.strip():
        return None, f"{path.name} is empty"
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{path.name} is not a valid notebook file (not JSON: {exc})"
    if not isinstance(data, dict) or "nbformat" not in data:
        return None, f"{path.name} is JSON but not a Jupyter notebook"
    try:
        version = int(data.get("nbformat", 0))
        nb = nbformat.reads(json.dumps(data), as_version=4)
    except Exception as exc:
        return None, f"{path.name} is not a readable notebook: {exc}"
    if version < 4:
        return nb, f"{path.name} was saved in an old notebook format (upgraded to v4)"
    return nb, None


def pick_submitted(
    folder: Path, expected: str, source: NotebookNode, problems: list[str]
) -> NotebookNode | None:
    """The submission of notebook ``expected`` in ``folder`` (maybe under another file name:
    the candidate sharing most cell ids with ``source``), or None; ``problems`` gets a note."""
    exact = folder / f"{expected}.ipynb"
    if exact.is_file() and not exact.is_symlink():
        chosen = exact
    else:
        candidates = sorted(p for p in folder.glob("*.ipynb") if p.is_file() and not p.is_symlink())
        ids = {grade_id(c) for c in source.cells} - {None}
        read = {path: read_notebook(path)[0] for path in candidates}
        scores = {p: len(ids & {grade_id(c) for c in nb.cells}) for p, nb in read.items() if nb}
        chosen = max(scores, key=scores.__getitem__, default=None)
        if chosen is None or scores[chosen] <= 0:
            found = f" (found {', '.join(p.name for p in candidates)})" if candidates else ""
            problems.append(f"no notebook {expected}.ipynb submitted{found}")
            return None
        problems.append(f"notebook submitted as {chosen.name!r}; graded as {expected}.ipynb")
    if chosen.stat().st_size > MAX_FILE_BYTES:
        problems.append(f"{chosen.name} is larger than {MAX_FILE_BYTES // 2**20} MiB")
        return None
    nb, problem = read_notebook(chosen)
    if problem:
        problems.append(problem)
    return nb


def _visible_code(source: str) -> str:
    """A test cell's source without its hidden tests, as code (formatting and comments do not
    count: a reformatted cell is not an edited one), or whitespace-normalised text."""
    cell = nbformat.v4.new_code_cell(source)
    ClearHiddenTests(enforce_metadata=False)._remove_hidden_test_region(cell)
    try:
        return ast.dump(ast.parse(cell.source))
    except (SyntaxError, ValueError, RuntimeError):
        return " ".join(cell.source.split())


def report_changes(nb: NotebookNode, source: NotebookNode, problems: list[str]) -> NotebookNode:
    """Note in ``problems`` how the submission's nbgrader cells differ from the source, give
    every cell back the role the source gives it (nbgrader restores locked cells itself) and
    put deleted answer cells back, unanswered, where the source has them."""
    src_cells = {grade_id(c): c for c in source.cells if grade_id(c)}
    seen: dict[str, int] = {}
    for cell in nb.cells:
        gid = grade_id(cell)
        if not gid:
            continue
        seen[gid] = seen.get(gid, 0) + 1
        src = src_cells.get(gid)
        if src is None:
            problems.append(f"cell id {gid!r} is not part of the assignment (ignored)")
            continue
        meta, smeta = nbgrader_meta(cell), nbgrader_meta(src)
        if is_test(src):
            if meta.get("points") != smeta.get("points"):
                problems.append(f"test cell {gid}: points changed (restored)")
            if _visible_code(cell.source) != _visible_code(src.source):
                problems.append(f"test cell {gid} was edited (nbgrader restored the original)")
        roles = ("grade", "solution", "locked", "points", "task")
        cell.metadata["nbgrader"] = {**meta, **{k: smeta[k] for k in roles if k in smeta}}
    problems += [
        f"cell {gid} appears {n} times (only the first counts)" for gid, n in seen.items() if n > 1
    ]
    previous: str | None = None  # nbgrader re-adds a deleted test cell after this one
    for gid, src in src_cells.items():
        if gid not in seen and is_test(src):
            problems.append(f"test cell {gid} was deleted (nbgrader put it back)")
        elif gid not in seen and nbutils.is_solution(src) and not nbutils.is_grade(src):
            problems.append(f"answer cell {gid} was deleted (graded as unanswered)")
            stub = copy.deepcopy(src)
            stub.source = "# (deleted in the submission)\nraise NotImplementedError()"
            stub["outputs"], stub["execution_count"] = [], None
            # after ``previous``; without one, after the first cell without a grade id (the title)
            ids = [grade_id(cell) for cell in nb.cells]
            nb.cells.insert(ids.index(previous) + 1 if previous in ids else 0, stub)
            seen[gid] = 1
        if gid in seen:
            previous = gid
    return nb


def feedback_preprocessors() -> list[type]:
    """``GenerateFeedback.preprocessors`` without the hidden tests, for ``course-lib grade`` and
    (through ``graders/nbgrader_config.py``) plain ``nbgrader generate_feedback``."""
    return [GetGrades, FeedbackView, CSSHTMLHeaderPreprocessor]


class FeedbackView(ClearHiddenTests):
    """The feedback copy of an autograded notebook: nbgrader's ``ClearHiddenTests`` on test
    cells, which also drops the traceback lines quoting a hidden line."""

    def preprocess_cell(self, cell: NotebookNode, resources: Any, index: int) -> Any:
        if not is_test(cell):
            return cell, resources
        lines = set(cell.source.splitlines())
        cell, resources = super().preprocess_cell(cell, resources, index)
        hidden = {line.strip() for line in lines - set(cell.source.splitlines())}
        hidden = {line for line in hidden if len(line) > 3 and "HIDDEN TESTS" not in line}
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error" and hidden:
                output["traceback"] = [
                    line
                    for line in output.get("traceback", [])
                    if not any(h in re.sub(r"\x1b\[[0-9;]*m", "", line) for h in hidden)
                ]
        return cell, resources


class ApplyFindings(NbGraderPreprocessor):
    """The fairness policy (:func:`course_lib.grading.findings.apply_findings`) applied to one
    autograded notebook after nbgrader's ``SaveAutoGrades``, in nbgrader's gradebook and in the
    notebook, whose metadata keeps the findings (``course_lib.findings``)."""

    def preprocess(self, nb: NotebookNode, resources: Any) -> Any:
        info = resources["nbgrader"]
        source = resources.get("source_notebook")  # IsolatedExecute's, of the same resources
        if source is None:
            self.log.warning("no source notebook for %s: findings not applied", info["notebook"])
            return nb, resources
        findings = collect_findings(source, nb)
        with Gradebook(info["db_url"]) as gb:
            sub = gb.find_submission_notebook(info["notebook"], info["assignment"], info["student"])
            grades = {grade.name: grade for grade in sub.grades}
            if apply_findings(findings, nb, grades, {c.name: c for c in sub.comments}):
                sub.flagged = True
            gb.db.commit()
        nb.metadata["course_lib"] = {"findings": [f.to_dict(info["notebook"]) for f in findings]}
        return nb, resources
