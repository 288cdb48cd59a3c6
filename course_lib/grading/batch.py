"""Grade a folder of submissions: :func:`grade_batch`, what ``course-lib grade`` runs.

Four steps (:class:`Batch`): ``prepare`` the gradebook and the template every task copies,
``grade`` each submission in a process of its own (:func:`course_lib.grading.tasks.run_task`,
on a local thread pool or a Dask cluster) with progress and ETA, ``merge`` each result into
the one gradebook as it arrives (this process is its only writer), ``report`` feedback,
``grades.csv`` and ``summary.json`` (``course-lib grade`` prints its summary). Submissions are
only read; a second run regrades (idempotent). See docs/grading.md ("Large classes").
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from course_lib.grading import gradebook
from course_lib.grading.course import (
    DEFAULT_KERNEL_USER,
    CourseConfig,
    Limits,
    load_course,
    normalize_db_url,
)
from course_lib.grading.tasks import GradeTask, TaskResult, forkserver_context, run_task


@dataclass
class GradeOptions:
    """Switches of a grading run. A limit left None is the course's (:class:`Limits`)."""

    cell_timeout: int | None = None
    notebook_timeout: float | None = None
    memory: int | None = None
    quick: bool = True
    isolate: bool = True
    kernel_user: str = DEFAULT_KERNEL_USER
    jobs: int = 1
    #: "local" (a Dask ``LocalCluster``) or a scheduler's address; None: a local thread pool
    dask: str | None = None
    feedback: bool = True
    #: grade only these students (None: every student found)
    students: Sequence[str] | None = None

    def limits(self, course: CourseConfig) -> Limits:
        return course.limits.override(
            cell_timeout=self.cell_timeout,
            notebook_timeout=self.notebook_timeout,
            memory=self.memory,
        )


#: What ``summary.json`` holds of each submission (:class:`TaskResult`'s attributes).
SUMMARY_KEYS = ("status", "score", "max_score", "problems", "findings", "seconds", "cpu_seconds")


@dataclass
class BatchResult:
    """``students[student][assignment]``: the :data:`SUMMARY_KEYS` of each submission (what
    ``summary.json`` holds); ``feedback_problems``: feedback not written."""

    students: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    feedback_problems: list[str] = field(default_factory=list)

    @property
    def submissions(self) -> int:
        return sum(len(v) for v in self.students.values())

    @property
    def failed(self) -> int:
        """Submissions that could not be graded normally."""
        return sum(e["status"] != "graded" for v in self.students.values() for e in v.values())


@dataclass
class Submission:
    student: str
    assignment: str  #: "" when no assignment folder was found
    folder: Path
    problems: list[str]

    @property
    def timestamp(self) -> str | None:
        try:
            return (self.folder / "timestamp.txt").read_text().strip()[:64] or None
        except OSError:  # none (or unreadable): nbgrader records the time of grading
            return None


def discover(
    submissions: Path, assignments: Sequence[str], students: Iterable[str] | None = None
) -> list[Submission]:
    """Every submission in nbgrader's layout (``<student>/<assignment>/``). A student folder
    holding notebooks directly counts as a submission of the only assignment being graded."""
    wanted = None if students is None else set(students)
    found = []
    for folder in sorted(p for p in submissions.iterdir() if p.is_dir()):
        if folder.name.startswith(".") or (wanted is not None and folder.name not in wanted):
            continue
        mine = [Submission(folder.name, a, folder / a, []) for a in assignments]
        mine = [s for s in mine if s.folder.is_dir()]
        if not mine and len(assignments) == 1 and any(folder.glob("*.ipynb")):
            note = f"files were not in a folder named {assignments[0]}/"
            mine = [Submission(folder.name, assignments[0], folder, [note])]
        found += mine or [Submission(folder.name, "", folder, ["no assignment folder found"])]
    return found


class Batch:
    """One grading run over a folder of submissions (see the module docstring)."""

    def __init__(
        self,
        course: CourseConfig,
        submissions: Path,
        output: Path,
        assignments: Sequence[str] | None,
        db_url: str | None,
        options: GradeOptions,
        log: Callable[[str], None],
    ) -> None:
        self.course, self.options, self.log = course, options, log
        self.submissions, self.output = submissions.resolve(), output.resolve()
        self.work = self.output / ".grader"
        (self.work / "logs").mkdir(parents=True, exist_ok=True)
        self.db_url = normalize_db_url(db_url or f"sqlite:///{self.output / 'gradebook.db'}")
        available = course.available_assignments()
        found = [a for a in available if any(self.submissions.glob(f"*/{a}"))]
        self.assignments = list(assignments or []) or found or available
        self.started = time.monotonic()
        self.result = BatchResult()
        self.found: dict[tuple[str, str], Submission] = {}

    def prepare(self) -> list[GradeTask]:
        forkserver_context()  # its imports run while the gradebook is prepared
        template = gradebook.prepare(
            self.course, self.output, self.db_url, self.assignments, self.work
        )
        self.log(f"gradebook prepared in {time.monotonic() - self.started:.1f} s")
        found = discover(self.submissions, self.assignments, self.options.students)
        self.found = {(s.student, s.assignment): s for s in found}
        env = {"COURSE_QUICK": "1" if self.options.quick else "0"}
        if "COURSE_LIB_DATA" in os.environ:
            env["COURSE_LIB_DATA"] = os.environ["COURSE_LIB_DATA"]
        opts, tasks = self.options, []
        for sub in found:
            if not sub.assignment:
                self._record(TaskResult(sub.student, "(none)", "failed", sub.problems), 0.0)
                continue
            tasks.append(
                GradeTask(
                    sub.student,
                    sub.assignment,
                    sub.folder,
                    self.course,
                    template,
                    opts.limits(self.course),
                    isolate=opts.isolate,
                    kernel_user=opts.kernel_user,
                    env=env,
                )
            )
        return tasks

    def grade(self, tasks: list[GradeTask]) -> None:
        """Every task, each merged as it finishes; a progress line with the ETA for each."""
        opts, total, started = self.options, len(tasks), time.monotonic()
        where = f"Dask {opts.dask}" if opts.dask else f"{opts.jobs} local jobs"
        self.log(f"grading {total} submissions of {', '.join(self.assignments)} ({where})")
        for done, result in enumerate(_results(tasks, opts), start=1):
            entry = self.merge(result)
            left = (time.monotonic() - started) / done * (total - done)
            eta = f"ETA {int(left // 60)}:{int(left % 60):02d}" if done < total else "done"
            problems = f"  [{len(result.problems)} problem(s)]" if result.problems else ""
            self.log(
                f"[{done:>{len(str(total))}}/{total}] {result.student:<24} "
                f"{result.assignment:<28} {entry['score']:6.1f} / {entry['max_score']:.1f}  "
                f"{eta}{problems}"
            )

    def merge(self, result: TaskResult) -> dict[str, Any]:
        """``result`` into the gradebook, ``autograded/`` and the logs; its summary entry."""
        sub = self.found[(result.student, result.assignment)]
        result.problems = sub.problems + result.problems
        log_file = self.work / "logs" / f"{result.student}--{result.assignment}.log"
        log_file.write_text(result.log, encoding="utf-8")
        gradebook.write_autograded(self.output, result)
        try:
            max_score = gradebook.merge(self.course, self.db_url, result, sub.timestamp)
        except Exception as exc:  # reported: the submission counts as not graded
            result.problems.append(f"could not write the gradebook: {exc}")
            result.status = "failed"
            max_score = result.max_score
        return self._record(result, max_score)

    def _record(self, result: TaskResult, max_score: float) -> dict[str, Any]:
        entry = {key: getattr(result, key) for key in SUMMARY_KEYS}
        entry["max_score"] = max_score  # the gradebook's: also for a task that gave no grades
        self.result.students.setdefault(result.student, {})[result.assignment] = entry
        return entry

    def report(self) -> BatchResult:
        self.log(f"graded in {time.monotonic() - self.started:.1f} s")
        if self.options.feedback:
            for assignment in self.assignments:
                self.result.feedback_problems += gradebook.feedback(
                    self.course,
                    self.output,
                    self.db_url,
                    assignment,
                    sorted(s for s, a in self.found if a == assignment),
                    self.options.jobs,
                )
            self.log(f"feedback written in {time.monotonic() - self.started:.1f} s")
        gradebook.export_csv(self.course, self.db_url, self.output / "grades.csv")
        self.result.seconds = time.monotonic() - self.started
        (self.output / "summary.json").write_text(json.dumps(asdict(self.result), indent=1))
        return self.result


def grade_batch(
    submissions: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    course: CourseConfig | None = None,
    course_root: str | os.PathLike[str] | None = None,
    assignments: Sequence[str] | None = None,
    db_url: str | None = None,
    options: GradeOptions | None = None,
    log: Callable[[str], None] = print,
) -> BatchResult:
    """Grade every submission under ``submissions`` (``<student>/<assignment>/*.ipynb``) of
    ``course`` (default: the course at or above ``course_root``, or the cwd)."""
    course = course or load_course(course_root)
    batch = Batch(
        course, Path(submissions), Path(output), assignments, db_url, options or GradeOptions(), log
    )
    batch.grade(batch.prepare())
    return batch.report()


def _results(tasks: list[GradeTask], opts: GradeOptions) -> Iterable[TaskResult]:
    """The results as the tasks finish: :func:`run_task` on ``opts.jobs`` threads of this
    process, or one Dask task per submission (``opts.dask``)."""
    if not opts.dask:
        with concurrent.futures.ThreadPoolExecutor(max(1, opts.jobs)) as pool:
            futures = [pool.submit(run_task, task) for task in tasks]
            yield from (f.result() for f in concurrent.futures.as_completed(futures))
        return
    from dask.distributed import Client, as_completed

    if opts.dask == "local":  # a LocalCluster of the client's own, closed with it
        client = Client(n_workers=max(1, opts.jobs), threads_per_worker=1, dashboard_address=None)
    else:
        client = Client(opts.dask)
    try:
        futures = {
            client.submit(run_task, t, pure=False, key=f"grade-{t.student}-{t.assignment}"): t
            for t in tasks
        }
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as exc:  # a worker lost mid-task: that submission fails, reported
                message = f"the Dask task failed: {exc}"
                result = TaskResult.failure(futures[future], message, time.monotonic())
            yield result
    finally:
        client.close()
