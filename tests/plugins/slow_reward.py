"""Rewards for tests of runs that go wrong: one that takes its time (3 ms per batch), so that a
test can signal a training run while it is in its loop, and one that makes the loss overflow."""

from __future__ import annotations

import time

import numpy as np


def slow_grid_reward(rows: np.ndarray) -> np.ndarray:
    time.sleep(0.003)
    return 0.1 + (np.asarray(rows) == 0).all(axis=1) + (np.asarray(rows) == 3).all(axis=1) * 2.0


def huge_log_reward(rows: np.ndarray) -> np.ndarray:
    """Finite log-rewards whose squares overflow: trajectory balance's loss becomes infinite."""
    return np.where(np.asarray(rows).sum(axis=1) >= 5, 1e200, 0.0)


def nan_log_reward(rows: np.ndarray) -> np.ndarray:
    """NaN on the far corner: refused as soon as a batch reaches it."""
    return np.where(np.asarray(rows).sum(axis=1) >= 6, np.nan, 0.0)
