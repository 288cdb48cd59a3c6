"""Autograde ONE submission in a private course directory; report the result as data.

``python -m course_lib.grading.worker PAYLOAD.json RESULT.json`` is what every grading task
runs (a local pool thread or a Dask task starts it as a subprocess, so a crash here can never
take the batch down). It

1. reads the submitted files *without modifying them*, copying them into a private course
   directory: a notebook that is not valid JSON, empty, or not a notebook is reported and left
   out (nbgrader then scores it 0); an old nbformat is upgraded; a notebook with the wrong file
   name is graded under the expected one; nbgrader metadata is compared with the source
   (edited or deleted test cells, changed points, unknown ids are reported);
2. runs the real ``nbgrader autograde`` (Python API) against a private copy of the template
   gradebook, with :class:`course_lib.grading.execute.IsolatedExecute` in place of ``Execute``
   and ``OverwriteCells.add_missing_cells`` on;
3. applies the static checks (:mod:`course_lib.grading.static`): flagged tests get score 0 and an
   error output that says why;
4. writes the grades, comments and autograded notebooks as JSON for the batch to merge into the
   one gradebook.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import nbformat

from course_lib.grading.static import scan_submission

__all__ = ["grade_one", "main"]

#: Largest submitted file copied into the grading directory.
MAX_FILE_BYTES = 50 * 1024 * 1024


def _meta(cell: Any) -> dict:
    return dict(cell.get("metadata", {}).get("nbgrader", {}) or {})


def _read_notebook(path: Path) -> tuple[nbformat.NotebookNode | None, str | None, bool]:
    """(notebook as v4, problem, upgraded)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read {path.name}: {exc}", False
    if not raw.strip():
        return None, f"{path.name} is empty", False
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{path.name} is not a valid notebook file (not JSON: {exc})", False
    if not isinstance(data, dict) or "nbformat" not in data:
        return None, f"{path.name} is JSON but not a Jupyter notebook", False
    try:
        version = int(data.get("nbformat", 0))
        nb = nbformat.reads(json.dumps(data), as_version=4)
    except Exception as exc:
        return None, f"{path.name} is not a readable notebook: {exc}", False
    upgraded = version < 4
    return nb, None, upgraded


_HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS", re.DOTALL)


def _visible(source: str) -> str:
    """A test cell's source without its hidden tests, as code (formatting and comments do not
    count: a reformatted cell is not an edited one), or whitespace-normalised text."""
    import ast

    text = _HIDDEN.sub("", source)
    try:
        return ast.dump(ast.parse(text))
    except (SyntaxError, ValueError):
        return " ".join(text.split())


def _sanitize(
    nb: nbformat.NotebookNode, source: nbformat.NotebookNode, problems: list[str]
) -> nbformat.NotebookNode:
    """Report how the submission's nbgrader cells differ from the source (nbgrader repairs)."""
    src_cells = {_meta(c)["grade_id"]: c for c in source.cells if _meta(c).get("grade_id")}
    seen: dict[str, int] = {}
    for cell in nb.cells:
        meta = _meta(cell)
        gid = meta.get("grade_id")
        if not gid:
            continue
        seen[gid] = seen.get(gid, 0) + 1
        src = src_cells.get(gid)
        if src is None:
            problems.append(f"cell id {gid!r} is not part of the assignment (ignored)")
            continue
        smeta = _meta(src)
        if smeta.get("grade") and not smeta.get("solution"):
            if meta.get("points") != smeta.get("points"):
                problems.append(f"test cell {gid}: points changed (restored)")
            if _visible(cell.source) != _visible(src.source):
                problems.append(f"test cell {gid} was edited (nbgrader restored the original)")
        # a student cannot change what kind of cell this is
        cell.metadata["nbgrader"] = {
            **meta,
            **{
                k: smeta[k] for k in ("grade", "solution", "locked", "points", "task") if k in smeta
            },
        }
    for gid, count in seen.items():
        if count > 1:
            problems.append(f"cell {gid} appears {count} times (only the first counts)")
    for gid, src in src_cells.items():
        smeta = _meta(src)
        if smeta.get("grade") and not smeta.get("solution") and gid not in seen:
            problems.append(f"test cell {gid} was deleted (nbgrader put it back)")
        if smeta.get("solution") and not smeta.get("grade") and gid not in seen:
            problems.append(f"answer cell {gid} was deleted")
    return nb


def _pick_notebook(
    folder: Path, expected: str, source: nbformat.NotebookNode, problems: list[str]
) -> tuple[nbformat.NotebookNode | None, bool]:
    """Find and read the submission of notebook ``expected`` (maybe under a wrong name)."""
    exact = folder / f"{expected}.ipynb"
    candidates: list[Path]
    if exact.is_file() and not exact.is_symlink():
        candidates = [exact]
    else:
        candidates = sorted(p for p in folder.glob("*.ipynb") if p.is_file() and not p.is_symlink())
        if not candidates:
            problems.append(f"no notebook {expected}.ipynb submitted")
            return None, False
        source_ids = {_meta(c).get("grade_id") for c in source.cells} - {None}

        def overlap(path: Path) -> int:
            nb, _, _ = _read_notebook(path)
            if nb is None:
                return -1
            return len(source_ids & {_meta(c).get("grade_id") for c in nb.cells})

        best = max(candidates, key=overlap)
        if overlap(best) <= 0:
            problems.append(
                f"no notebook {expected}.ipynb submitted (found {', '.join(p.name for p in candidates)})"
            )
            return None, False
        problems.append(f"notebook submitted as {best.name!r}; graded as {expected}.ipynb")
        candidates = [best]
    if candidates[0].stat().st_size > MAX_FILE_BYTES:
        problems.append(f"{candidates[0].name} is larger than {MAX_FILE_BYTES // 2**20} MiB")
        return None, False
    nb, problem, upgraded = _read_notebook(candidates[0])
    if problem:
        problems.append(problem)
        return None, False
    if upgraded:
        problems.append(
            f"{candidates[0].name} was saved in an old notebook format (upgraded to v4)"
        )
    return nb, True


def grade_one(payload: dict[str, Any]) -> dict[str, Any]:
    """Grade one submission (see the module docstring); returns the result record."""
    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    started = time.monotonic()
    student = payload["student"]
    assignment = payload["assignment"]
    source_dir = Path(payload["source_dir"])
    submission = Path(payload["submission_dir"])
    problems: list[str] = []
    work = Path(tempfile.mkdtemp(prefix=f"grade-{assignment}-", dir=payload.get("scratch")))
    os.chmod(work, 0o755)
    try:
        root = work / "course"
        sub_dir = root / "submitted" / student / assignment
        sub_dir.mkdir(parents=True)
        db_path = root / "gradebook.db"
        shutil.copyfile(payload["template_gradebook"], db_path)
        notebooks = sorted(p.stem for p in source_dir.glob("*.ipynb"))
        sources = {
            n: nbformat.read(str(source_dir / f"{n}.ipynb"), as_version=4) for n in notebooks
        }
        for name in notebooks:
            nb, ok = _pick_notebook(submission, name, sources[name], problems)
            if nb is not None and ok:
                nb = _sanitize(nb, sources[name], problems)
                nbformat.write(nb, str(sub_dir / f"{name}.ipynb"))
        # non-notebook files (data a student saved, timestamp.txt); never follow symlinks
        for path in submission.iterdir() if submission.is_dir() else []:
            if path.suffix == ".ipynb" or path.is_symlink() or not path.is_file():
                continue
            if path.stat().st_size <= MAX_FILE_BYTES:
                shutil.copyfile(path, sub_dir / path.name)

        c = Config()
        if payload.get("config_file"):
            from traitlets.config.loader import PyFileConfigLoader

            cfg_path = Path(payload["config_file"])
            c.merge(PyFileConfigLoader(cfg_path.name, str(cfg_path.parent)).load_config())
        c.CourseDirectory.root = str(root)
        c.CourseDirectory.source_directory = str(source_dir.parent)
        c.CourseDirectory.submitted_directory = "submitted"
        c.CourseDirectory.autograded_directory = "autograded"
        c.CourseDirectory.db_url = f"sqlite:///{db_path}"
        c.CourseDirectory.course_id = payload.get("course_id", "")
        c.OverwriteCells.add_missing_cells = True
        from nbconvert.preprocessors import ClearMetadataPreprocessor
        from nbgrader.preprocessors import (
            AssignLatePenalties,
            CheckCellMetadata,
            IgnorePattern,
            LimitOutput,
            SaveAutoGrades,
        )

        from course_lib.grading.execute import IsolatedExecute

        c.Autograde.autograde_preprocessors = [
            IsolatedExecute,
            IgnorePattern,
            ClearMetadataPreprocessor,
            LimitOutput,
            SaveAutoGrades,
            AssignLatePenalties,
            CheckCellMetadata,
        ]
        limits = payload.get("limits", {})
        c.Execute.timeout = int(limits.get("cell_timeout", 120))
        c.IsolatedExecute.timeout = int(limits.get("cell_timeout", 120))
        c.IsolatedExecute.notebook_timeout = float(limits.get("notebook_timeout", 900))
        c.IsolatedExecute.memory_limit = int(limits.get("memory", 4 * 1024**3))
        c.IsolatedExecute.isolate_tests = bool(payload.get("isolate", True))
        c.IsolatedExecute.source_directory = str(source_dir)
        c.IsolatedExecute.scratch_directory = str(work)
        c.IsolatedExecute.kernel_user = payload.get("kernel_user", "nobody") or ""
        api = NbGraderAPI(config=c)
        outcome = api.autograde(assignment, student, force=True, create=True)
        if not outcome.get("success"):
            problems.append("nbgrader could not autograde this submission")
        result: dict[str, Any] = {
            "student": student,
            "assignment": assignment,
            "status": "graded" if outcome.get("success") else "failed",
            "problems": problems,
            "findings": [],
            "notebooks": {},
            "log": (outcome.get("log") or "")[-20000:],
            "error": (outcome.get("error") or "")[-20000:],
        }
        with Gradebook(f"sqlite:///{db_path}", payload.get("course_id", "")) as gb:
            for name in notebooks:
                try:
                    sub = gb.find_submission_notebook(name, assignment, student)
                except Exception:
                    continue
                grades = {
                    g.name: {
                        "auto_score": g.auto_score,
                        "max_score": g.max_score,
                        "needs_manual_grade": g.needs_manual_grade,
                    }
                    for g in sub.grades
                }
                comments = {c_.name: c_.auto_comment for c_ in sub.comments}
                result["notebooks"][name] = {
                    "grades": grades,
                    "comments": comments,
                    "late_penalty": sub.late_submission_penalty,
                }
        for name in notebooks:
            path = root / "autograded" / student / assignment / f"{name}.ipynb"
            entry = result["notebooks"].setdefault(name, {"grades": {}, "comments": {}})
            if path.exists():
                autograded = nbformat.read(str(path), as_version=4)
                submitted_path = sub_dir / f"{name}.ipynb"
                if submitted_path.exists():
                    submitted = nbformat.read(str(submitted_path), as_version=4)
                    findings = scan_submission(sources[name], submitted)
                    _apply_findings(findings, entry, autograded)
                    result["findings"] += [
                        {"notebook": name, "kind": f.kind, "where": f.describe(), "tests": f.tests}
                        for f in findings
                    ]
                entry["autograded"] = nbformat.writes(autograded)
        _summarise(result)
        result["seconds"] = round(time.monotonic() - started, 2)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _apply_findings(
    findings: list, entry: dict[str, Any], autograded: nbformat.NotebookNode
) -> None:
    by_test: dict[str, list[str]] = {}
    for finding in findings:
        for gid in finding.tests:
            by_test.setdefault(gid, []).append(finding.describe())
    for gid, reasons in by_test.items():
        grade = entry["grades"].get(gid)
        if grade is not None:
            grade["auto_score"] = 0.0
            grade["flagged"] = reasons
        for cell in autograded.cells:
            if _meta(cell).get("grade_id") == gid:
                text = "; ".join(reasons)
                cell.setdefault("outputs", []).append(
                    nbformat.v4.new_output(
                        "error",
                        ename="IntegrityCheckFailed",
                        evalue=f"this test scores 0 because your code {text}",
                        traceback=[
                            "\x1b[0;31mIntegrityCheckFailed\x1b[0m: this test scores 0 because "
                            f"your code {text}"
                        ],
                    )
                )


def _summarise(result: dict[str, Any]) -> None:
    score = max_score = 0.0
    for entry in result["notebooks"].values():
        for grade in entry.get("grades", {}).values():
            score += float(grade.get("auto_score") or 0.0)
            max_score += float(grade.get("max_score") or 0.0)
    result["score"] = score
    result["max_score"] = max_score


def forked_main(
    payload_path: str, result_path: str, log_path: str, env: dict[str, str], cwd: str
) -> None:
    """Entry point in a child of the batch's fork server (modules already imported)."""
    os.setsid()  # its own session: the batch kills the whole tree at the time limit
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    code = main([payload_path, result_path])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    payload = json.loads(Path(argv[0]).read_text())
    out = Path(argv[1])
    try:
        result = grade_one(payload)
    except BaseException as exc:
        result = {
            "student": payload.get("student"),
            "assignment": payload.get("assignment"),
            "status": "failed",
            "problems": [f"the grader failed on this submission: {type(exc).__name__}: {exc}"],
            "error": traceback.format_exc()[-20000:],
            "notebooks": {},
            "findings": [],
            "score": 0.0,
            "max_score": 0.0,
        }
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
