"""A grading task still running at its time limit is killed with every process below it,
in both ways a task runs: forked from the batch's fork server, and as ``python -m
course_lib.grading.tasks`` (where the grader may not fork, e.g. a daemonic Dask worker)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from grading_support import CourseDir, synthetic_notebook

from course_lib.grading import gradebook
from course_lib.grading.course import Limits, load_course
from course_lib.grading.tasks import GradeTask, run_task

pytestmark = pytest.mark.grading

A = "synthetic_task_limit"


def _descendants() -> set[int]:
    """Live processes below this one, but multiprocessing's fork server and resource tracker."""
    me = os.getpid()
    out = set()
    for proc in psutil.Process(me).children(recursive=True):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.ppid() == me and "multiprocessing." in " ".join(proc.cmdline()):
                continue
            out.add(proc.pid)
        except psutil.NoSuchProcess:
            continue
    return out


@pytest.mark.parametrize("forkserver", ["1", "0"], ids=["forked", "python-m"])
def test_task_past_its_limit_is_killed_with_its_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forkserver: str
) -> None:
    monkeypatch.setenv("COURSE_LIB_GRADE_FORKSERVER", forkserver)
    course = CourseDir.create(tmp_path / "course", notebooks={A: synthetic_notebook()})
    config = load_course(course.root)
    template = gradebook.prepare(config, tmp_path / "out", course.db_url, [A], tmp_path / "work")
    submitted = synthetic_notebook()
    submitted.cells.insert(2, nbformat.v4.new_code_cell("import time\ntime.sleep(600)"))
    folder = tmp_path / "submitted" / "ana" / A
    folder.mkdir(parents=True)
    nbformat.write(submitted, str(folder / f"{A}.ipynb"))
    as_submitted = (folder / f"{A}.ipynb").read_bytes()
    # a cell may sleep 60 s, the notebook 60 s, but the task is killed after 10 s
    limits = Limits(cell_timeout=60, notebook_timeout=60, kill_grace=-50)
    task = GradeTask("ana", A, folder, config, template, limits)
    before = _descendants()
    started = time.monotonic()
    result = run_task(task)
    assert time.monotonic() - started >= 10
    assert result.status == "failed"
    assert result.problems == ["grading stopped after 10 s (the notebook time limit); score 0"]
    assert result.score == 0
    deadline = time.monotonic() + 10
    while _descendants() - before and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [psutil.Process(p).cmdline() for p in _descendants() - before if psutil.pid_exists(p)]
    assert not left, f"processes of the killed task still alive: {left}"
    assert (folder / f"{A}.ipynb").read_bytes() == as_submitted
