"""course_lib.quick_mode: the chapters' one quick/full switch."""

from __future__ import annotations

import pytest

from course_lib import quick_mode


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("COURSE_QUICK", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    return monkeypatch


def test_the_students_choice_without_environment(clean_env, capsys):
    assert quick_mode(True) is True
    assert quick_mode(False) is False
    assert "full mode" in capsys.readouterr().out


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("0", False), (" 1 ", True)])
def test_course_quick_overrides_the_argument(clean_env, value, expected):
    clean_env.setenv("COURSE_QUICK", value)
    assert quick_mode(not expected) is expected
    clean_env.setenv("NBGRADER_EXECUTION", "autograde")
    assert quick_mode(not expected) is expected  # course-lib grade --full sets COURSE_QUICK=0


def test_plain_nbgrader_grades_in_quick_mode_whatever_the_submission_says(clean_env):
    clean_env.setenv("NBGRADER_EXECUTION", "autograde")
    assert quick_mode(False) is True


def test_a_typo_is_an_error_not_a_long_run(clean_env):
    clean_env.setenv("COURSE_QUICK", "yes")
    with pytest.raises(ValueError, match="COURSE_QUICK must be 1"):
        quick_mode(True)
