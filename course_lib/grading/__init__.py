"""Grading: the checks notebook tests call, the release pipeline and the robust autograder."""
