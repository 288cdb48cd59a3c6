"""Grading: the robust autograder (the checks are :mod:`course_lib.checks`, the release
:mod:`course_lib.release`)."""
