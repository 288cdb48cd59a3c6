"""`course-lib grade` with the gradebook on a real PostgreSQL server.

A throwaway cluster is created with the Debian ``postgresql`` package's ``initdb`` and started
with ``pg_ctl`` on a Unix socket in a temporary folder (no TCP port, trust authentication for
that socket only); PostgreSQL refuses to run as root, so under root the cluster belongs to
``nobody``. The test grades three submissions of chapter 2 through nbgrader's database URL,
twice (regrading is idempotent), and reads the gradebook back through nbgrader's ``Gradebook``.
Skipped, with the reason, where the PostgreSQL binaries or ``psycopg2`` are missing.
"""

from __future__ import annotations

import copy
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import nbformat
import pytest

from course_lib.grading.batch import GradeOptions, grade_batch
from course_lib.grading.course import normalize_db_url

pytestmark = [pytest.mark.postgres, pytest.mark.grading, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
A = "ch02_backpropagation"
SOURCE = REPO / "solutions" / A / f"{A}.ipynb"


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _run_as(user: str | None, args: list[str], **kw) -> subprocess.CompletedProcess:
    cmd = ["runuser", "-u", user, "--", *args] if user else args
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120, **kw)


@pytest.fixture(scope="module")
def postgres_url():
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt install postgresql")
    pytest.importorskip("psycopg2", reason="psycopg2 is needed for a PostgreSQL gradebook")
    user = None
    if os.geteuid() == 0:  # postgres refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
        user = "nobody"
        pwd.getpwnam(user)
    base = Path(tempfile.mkdtemp(prefix="course-pg-", dir="/tmp"))
    os.chmod(base, 0o755)
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if user:
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
        os.chown(sock, entry.pw_uid, entry.pw_gid)
    try:
        _run_as(
            user,
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "grader",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        )
        _run_as(
            user,
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(base / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                f"-k {sock} -c listen_addresses='' -p 54329",
                "start",
            ],
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc.stdout}\n{exc.stderr}")
    try:
        import psycopg2

        conn = psycopg2.connect(host=str(sock), port=54329, user="grader", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE course")
        conn.close()
        yield f"postgresql://grader@/course?host={sock}&port=54329"
    finally:
        subprocess.run(
            [
                *(["runuser", "-u", user, "--"] if user else []),
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


def _gid(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


@pytest.fixture(scope="module")
def submissions(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pg-subs")
    nb = nbformat.read(str(SOURCE), as_version=4)
    last = max(i for i, c in enumerate(nb.cells) if _gid(c) == f"{A}-two_layer_net-tests")
    good = copy.deepcopy(nb)
    good.cells = good.cells[: last + 1]  # without the (ungraded) MNIST training part
    for student, content in {
        "ada": nbformat.writes(good).encode(),
        "bob": b'{"cells": [ not json',
        "cyd": b"",
    }.items():
        folder = tmp / student / A
        folder.mkdir(parents=True)
        (folder / f"{A}.ipynb").write_bytes(content)
    return tmp


def test_grading_into_postgresql(postgres_url, submissions, tmp_path):
    from nbgrader.api import Gradebook

    source = nbformat.read(str(SOURCE), as_version=4)
    graded = [c for c in source.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    points = [float(c.metadata.nbgrader.get("points", 0)) for c in graded]
    last = max(i for i, c in enumerate(graded) if _gid(c) == f"{A}-two_layer_net-tests")
    # ada submitted up to the TwoLayerNet test: the code tests up to there earn their points,
    # the later exercises (put back unanswered) and the written answers earn none
    ada = sum(p for c, p in zip(graded[: last + 1], points) if c.cell_type == "code")
    expected = {"ada": ada, "bob": 0.0, "cyd": 0.0}
    options = GradeOptions(jobs=2, cell_timeout=30, notebook_timeout=600, feedback=False)
    for run in (1, 2):  # the second run regrades: same rows, same scores
        result = grade_batch(
            submissions,
            tmp_path / f"out{run}",
            course_root=REPO,
            assignments=[A],
            db_url=postgres_url,
            options=options,
            log=lambda _msg: None,
        )
        assert {s: e[A]["score"] for s, e in result.students.items()} == expected
        assert not (tmp_path / f"out{run}" / "gradebook.db").exists()  # nothing went to SQLite
        with Gradebook(normalize_db_url(postgres_url)) as gb:
            assert sorted(s.id for s in gb.students) == sorted(expected)
            assignment = gb.find_assignment(A)
            assert assignment.max_score == pytest.approx(sum(points))
            assert len(assignment.submissions) == 3
            for student, score in expected.items():
                submission = gb.find_submission(A, student)
                assert submission.score == pytest.approx(score), student
                notebook = gb.find_submission_notebook(A, A, student)
                assert len(notebook.grades) == len(graded)
        csv = (tmp_path / f"out{run}" / "grades.csv").read_text()
        assert all(student in csv for student in expected)
    problems = result.students["bob"][A]["problems"]
    assert any("not a valid" in p for p in problems), problems
