"""The grading engine: ``course-lib grade`` and the isolated execution of plain nbgrader.

Its modules are internal and keep no ``__all__``; the rest of the project uses
:func:`batch.grade_batch` with :class:`batch.GradeOptions` (the command line),
:func:`execute.isolated_autograde_preprocessors` and :func:`notebook.feedback_preprocessors`
(``graders/nbgrader_config.py``), :func:`course.load_course` and its :class:`course.CourseConfig`
and :class:`course.Limits` (the release, the command line) and :func:`sandbox.probe`. The checks
that test cells call are :mod:`course_lib.checks`, the release :mod:`course_lib.release`.
Design: docs/grading.md.
"""
