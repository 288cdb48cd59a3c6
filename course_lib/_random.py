"""Randomness is passed in: a seed, a ``np.random.Generator`` or ``None`` (fresh entropy)."""

from __future__ import annotations

from typing import TypeAlias

import numpy as np

SeedLike: TypeAlias = "int | np.random.Generator | np.random.SeedSequence | None"


def as_generator(seed: SeedLike = None) -> np.random.Generator:
    """Return a ``np.random.Generator`` for ``seed``.

    A Generator is returned as is (so callers can share one stream); an int or
    SeedSequence seeds a new one; ``None`` draws fresh entropy from the OS.
    Global ``np.random`` state is never used.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)
