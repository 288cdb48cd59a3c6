"""Exceptions and warnings of :mod:`course_lib.datasets`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "ChecksumError",
    "DatasetError",
    "DatasetWarning",
    "DownloadError",
    "IDXFormatError",
]


class DatasetError(ValueError):
    """A dataset file is missing, unreadable, corrupt or cannot be obtained.

    ``path`` is the file concerned when there is one (else ``None``).
    """

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)


class IDXFormatError(DatasetError):
    """The bytes are not a well-formed IDX file (bad magic number, truncated, ...)."""


class ChecksumError(DatasetError):
    """The uncompressed bytes do not have the expected size or SHA-256 digest."""


class DownloadError(DatasetError):
    """Every mirror failed for a file.

    ``attempts`` holds one ``(url, error message)`` pair per mirror, in the order tried.
    """

    def __init__(
        self,
        message: str,
        *,
        attempts: Sequence[tuple[str, str]] = (),
        path: str | Path | None = None,
    ) -> None:
        super().__init__(message, path=path)
        self.attempts: tuple[tuple[str, str], ...] = tuple(attempts)


class DatasetWarning(UserWarning):
    """Something was repaired on the fly (e.g. a corrupt cached file moved aside)."""
