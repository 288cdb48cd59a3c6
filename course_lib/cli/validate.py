"""``course-lib validate [CHAPTER...]``: run your saved chapters as the grader does.

Each workspace notebook is graded by the course's own grading engine
(:func:`course_lib.grading.batch.grade_batch`: nbgrader autograde with the grader's isolated
execution, time and memory limits and integrity checks) with the tests you were given: the
visible tests of your notebook (restored from the course if you edited them); the grader's
hidden tests are left out. A check (test cell) passes exactly when it would earn its points
from those tests under ``course-lib grade`` (nbgrader's own rule,
:func:`nbgrader.utils.determine_grade`).

Prints every failing check with its full message, one summary line, and exits 1 if any check
fails (2 if there is nothing to validate).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from course_lib.course_home import (
    FAILING,
    NOT_ATTEMPTED,
    PASSING,
    STUB,
    Check,
    error_text,
    label_of,
    record_validation,
    workspace_notebook,
)

__all__ = [
    "ChapterResult",
    "add_parser",
    "report",
    "resolve_chapters",
    "validate_chapters",
    "validate_notebooks",
]

#: The student's name in the grader's private course folder.
STUDENT = "you"


@dataclass
class ChapterResult:
    chapter: str
    checks: list[Check] = field(default_factory=list)
    #: errors in cells that are not checks (your code cells), as (cell label, message)
    cell_errors: list[tuple[str, str]] = field(default_factory=list)
    #: what the grader noticed beyond the checks (edited test cells, use of the reference, ...)
    problems: list[str] = field(default_factory=list)
    graded: bool = True

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status != PASSING]

    @property
    def ok(self) -> bool:
        return self.graded and not self.failed


def resolve_chapters(names: list[str], available: list[str]) -> list[str]:
    """``ch02``, ``2``, ``ch02_backpropagation`` -> the assignment id; all if ``names`` empty."""
    if not names:
        return list(available)
    chosen = []
    for name in names:
        key = name.strip().rstrip("/").split("/")[-1].removesuffix(".ipynb")
        if key.isdigit():
            key = f"ch{int(key):02d}"
        matches = [a for a in available if a == key or a.startswith(f"{key}_")]
        if len(matches) != 1:
            raise SystemExit(
                f"error: no chapter {name!r} (the chapters: {', '.join(available)})"
                if not matches
                else f"error: {name!r} is ambiguous: {', '.join(matches)}"
            )
        if matches[0] not in chosen:
            chosen.append(matches[0])
    return chosen


def _validation_course(root: Path, chapters: list[str], scratch: Path) -> Path:
    """A private course root whose sources hold the visible tests only.

    It holds the course's own ``graders/nbgrader_config.py`` (loaded from there, so its
    settings apply unchanged) and, as source notebooks, the instructor's sources with their
    hidden tests removed by nbgrader's own ``ClearHiddenTests`` (the grader then restores and
    runs exactly the test cells the student was given, and judges everything else as it does
    against the real sources). Without ``solutions/`` (a student's copy of a private course)
    the released chapters serve as sources.
    """
    from nbgrader.preprocessors import ClearHiddenTests

    from course_lib.grading.course import load_course

    config = load_course(root)
    course = scratch / "course"
    (course / "graders").mkdir(parents=True)
    shutil.copy2(config.config_path, course / "graders" / config.config_path.name)
    source = course / config.source_path.relative_to(config.root)
    for chapter in chapters:
        if (config.source_path / chapter / f"{chapter}.ipynb").is_file():
            shutil.copytree(config.source_path / chapter, source / chapter)
            for path in (source / chapter).glob("*.ipynb"):
                nb = nbformat.read(str(path), as_version=4)
                nb, _ = ClearHiddenTests().preprocess(nb, {})
                nbformat.write(nb, str(path))
        else:
            shutil.copytree(config.release_path / chapter, source / chapter)
    return course


def _grade(
    course: Path, submissions: Path, output: Path, chapters: list[str], jobs: int
) -> dict[str, dict[str, object]]:
    """The grader's pipeline on the student's notebooks (its public entry point)."""
    from course_lib.grading.batch import GradeOptions, grade_batch

    options = GradeOptions(jobs=jobs, feedback=False, quick=True)
    quiet = io.StringIO()
    # nbgrader's and the grader's progress lines are for instructors; keep the student's
    # terminal to the verdicts (they are printed if grading itself fails)
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        root_logger = logging.getLogger()
        level = root_logger.level
        root_logger.setLevel(logging.CRITICAL)
        try:
            result = grade_batch(
                submissions,
                output,
                course_root=course,
                assignments=chapters,
                options=options,
                log=lambda line: print(line, file=quiet),
            )
        except Exception:
            sys.__stderr__.write(quiet.getvalue()[-5000:])
            raise
        finally:
            root_logger.setLevel(level)
    return result.students


def _read_result(chapter: str, autograded: Path, problems: list[str]) -> ChapterResult:
    from nbgrader.utils import determine_grade

    result = ChapterResult(chapter, problems=list(problems))
    if not autograded.is_file():
        result.graded = False
        result.problems.append("the grader produced no result for this notebook")
        return result
    nb = nbformat.read(str(autograded), as_version=4)
    if (
        nb.cells
        and nb.cells[0].cell_type == "markdown"
        and "could not be graded" in nb.cells[0].source
    ):
        result.graded = False
    answer = ""
    log = logging.getLogger("course_lib.validate")
    for index, cell in enumerate(nb.cells):
        meta = dict(cell.metadata.get("nbgrader", {}) or {})
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if meta.get("solution"):
            answer = cell.source
            if errors:
                result.cell_errors.append(
                    (f"your cell {meta.get('grade_id', index)}", error_text(errors[0]))
                )
            continue
        if not (meta.get("grade") and cell.cell_type == "code"):
            if errors:
                result.cell_errors.append((f"cell {index + 1}", error_text(errors[0])))
            continue
        gid = meta.get("grade_id", "")
        points = float(meta.get("points") or 0)
        score, max_score = determine_grade(cell, log)
        if score is not None and max_score is not None and score >= max_score:
            status, message = PASSING, ""
        else:
            status = NOT_ATTEMPTED if STUB in answer and not errors[1:] else FAILING
            message = "\n".join(error_text(e) for e in errors) or "no points (no error output)"
            if status == NOT_ATTEMPTED and "NotImplementedError" not in message:
                status = FAILING
        result.checks.append(
            Check(gid, label_of(chapter, gid), points, status, message, "validate")
        )
    return result


def validate_notebooks(
    notebooks: dict[str, dict[str, Path]], root: Path, jobs: int = 1
) -> dict[str, list[ChapterResult]]:
    """Grade ``{name: {chapter: notebook file}}`` as the grader does, against the visible tests
    of the released chapters, in one batch; ``{name: [ChapterResult per chapter]}``."""
    chapters = sorted({c for by_chapter in notebooks.values() for c in by_chapter})
    scratch = Path(tempfile.mkdtemp(prefix="course-validate-"))
    try:
        os.chmod(scratch, 0o755)
        course = _validation_course(root, chapters, scratch)
        submissions = scratch / "submitted"
        for name, by_chapter in notebooks.items():
            for chapter, src in by_chapter.items():
                folder = submissions / name / chapter
                folder.mkdir(parents=True)
                shutil.copy2(src, folder / f"{chapter}.ipynb")
        output = scratch / "output"
        graded = _grade(course, submissions, output, chapters, jobs)
        results: dict[str, list[ChapterResult]] = {}
        for name, by_chapter in notebooks.items():
            for chapter in by_chapter:
                entry = _as_dict(graded.get(name, {}).get(chapter, {}))
                problems = [*entry.get("problems", []), *_findings(entry)]
                autograded = output / "autograded" / name / chapter / f"{chapter}.ipynb"
                results.setdefault(name, []).append(_read_result(chapter, autograded, problems))
        return results
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def validate_chapters(
    workspace: Path, chapters: list[str], root: Path, jobs: int = 1
) -> list[ChapterResult]:
    """Grade the saved workspace notebooks of ``chapters`` as the grader does; the results are
    also recorded for ``course-lib progress`` and the course home."""
    paths = {chapter: workspace_notebook(workspace, chapter) for chapter in chapters}
    before = {chapter: path.read_bytes() for chapter, path in paths.items()}
    results = validate_notebooks({STUDENT: paths}, root, jobs)[STUDENT]
    for result in results:
        path = paths[result.chapter]
        if result.graded and path.read_bytes() == before[result.chapter]:
            record_validation(workspace, result.chapter, path, result.checks)
    return results


def _as_dict(entry: object) -> dict:
    """The batch's per-submission entry (a dict, or a dataclass in newer versions)."""
    import dataclasses

    if dataclasses.is_dataclass(entry) and not isinstance(entry, type):
        return dataclasses.asdict(entry)
    return dict(entry) if isinstance(entry, dict) else {}


def _findings(entry: dict) -> list[str]:
    out = []
    for finding in entry.get("findings") or []:
        if isinstance(finding, dict):
            out.append(
                f"your code {finding.get('where', '')} (tests {', '.join(finding.get('tests', []))} score 0)"
            )
        else:
            out.append(str(finding))
    return out


def report(results: list[ChapterResult], out: io.TextIOBase | None = None) -> int:
    """Print every failing check with its full message and one summary line; the exit code."""
    out = out or sys.stdout
    n_checks = n_failed = 0
    failing_chapters = []
    for result in results:
        n_checks += len(result.checks)
        n_failed += len(result.failed)
        passed = len(result.checks) - len(result.failed)
        state = (
            "cannot be graded"
            if not result.graded
            else f"{passed} of {len(result.checks)} checks pass"
        )
        print(f"== {result.chapter}: {state}", file=out)
        for problem in result.problems:
            print(f"  note: {problem}", file=out)
        for check in result.failed:
            print(
                f"\nFAIL {check.label} ({check.points:g} point{'s' if check.points != 1 else ''}, "
                f"{check.status})",
                file=out,
            )
            print("  " + check.message.replace("\n", "\n  "), file=out)
        shown = {c.message for c in result.failed}
        for where, message in result.cell_errors:
            if message not in shown:
                print(f"\nERROR in {where}:\n  " + message.replace("\n", "\n  "), file=out)
        if not result.ok:
            failing_chapters.append(result.chapter)
        print(file=out)
    if failing_chapters:
        print(
            f"validate: {n_failed} of {n_checks} checks fail in {', '.join(failing_chapters)}",
            file=out,
        )
        return 1
    print(f"validate: all {n_checks} checks pass in {len(results)} chapter(s)", file=out)
    return 0


def run(args: argparse.Namespace) -> int:
    from course_lib.cli.lab import find_course_root

    root = find_course_root()
    workspace = Path(args.workspace or root / "workspace").resolve()
    released = sorted(p.name for p in (root / "chapters").iterdir() if p.is_dir())
    chapters = resolve_chapters(args.chapters, released)
    if not args.chapters:
        chapters = [c for c in chapters if workspace_notebook(workspace, c).is_file()]
    missing = [c for c in chapters if not workspace_notebook(workspace, c).is_file()]
    if missing or not chapters:
        where = ", ".join(str(workspace_notebook(workspace, c)) for c in missing) or str(workspace)
        print(
            f"error: nothing to validate ({where} not found; ./course.sh start creates your "
            "copies)",
            file=sys.stderr,
        )
        return 2
    print(
        f"validating {', '.join(chapters)} as the grader does (your saved notebooks; "
        "this takes a minute or so per chapter) ...",
        flush=True,
    )
    jobs = args.jobs or max(1, min(len(chapters), os.cpu_count() or 1))
    results = validate_chapters(workspace, chapters, root, jobs=jobs)
    return report(results)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="run your chapters as the grader does and list every failing check",
        description="Run your saved workspace notebooks exactly as the grader does (fresh "
        "kernel, quick mode, the grader's limits and checks), print every failing check "
        "with its full message and a summary line. Exit status 1 if any check fails.",
    )
    p.add_argument(
        "chapters",
        nargs="*",
        metavar="CHAPTER",
        help="ch02, 2 or ch02_backpropagation (default: every chapter in your workspace)",
    )
    p.add_argument(
        "--workspace",
        default=os.environ.get("COURSE_LIB_WORKSPACE"),
        help="where your copies of the chapters live (default: workspace/ in the course)",
    )
    p.add_argument(
        "-j", "--jobs", type=int, default=0, help="chapters graded at once (default: all cores)"
    )
    p.set_defaults(func=run)
