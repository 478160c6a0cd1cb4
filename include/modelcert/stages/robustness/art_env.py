"""How ART runs here: quiet, single-threaded native code, and a seeded global numpy RNG restored afterwards."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

import numpy as np


@contextlib.contextmanager
def quiet_art() -> Iterator[None]:
    """ART without chatter: its import warns about PyTorch, its attacks log at INFO/WARNING (progress bars are
    off through ``verbose=False``), and sklearn warns when ART passes arrays to a model fitted on a DataFrame."""
    art_logger = logging.getLogger("art")
    level = art_logger.level
    art_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        art_logger.setLevel(level)


@contextlib.contextmanager
def single_threaded_native() -> Iterator[None]:
    """One OpenMP/BLAS thread while attacking. The attack queries the model with small batches, many times;
    idle OpenMP workers of e.g. HistGradientBoosting spin between calls and, on few cores, starve the attack
    threads (measured on adult_income, 2 cores: HopSkipJump 6-12 s with the default pool, 2 s with one thread)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@contextlib.contextmanager
def seeded_global_numpy(seed: int) -> Iterator[None]:
    """ART's HopSkipJump draws its gradient-estimation noise from the global numpy RNG: seed it for the attack
    and give the caller its state back afterwards."""
    state = np.random.get_state()
    np.random.seed(seed % (2**32))
    try:
        yield
    finally:
        np.random.set_state(state)
