"""Shared fixtures: the real datasets folder, seeded generators, float64 helpers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def find_data_dir() -> Path | None:
    """The real MNIST / Fashion-MNIST folder: $COURSE_LIB_DATA, else ../shared/data beside the repo."""
    env = os.environ.get("COURSE_LIB_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for c in candidates:
        if (c / "mnist").is_dir():
            return c
    return None


def pytest_configure(config: pytest.Config) -> None:
    """Let notebooks and other subprocesses find the real datasets too."""
    found = find_data_dir()
    if found is not None:
        os.environ.setdefault("COURSE_LIB_DATA", str(found))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Folder holding mnist/ and fashion-mnist/; the test is skipped when there is none."""
    found = find_data_dir()
    if found is None:
        pytest.skip("real datasets not found: set COURSE_LIB_DATA or provide ../shared/data")
    return found


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
