"""Vectorised lookup of state rows: maps a batch of states to their positions in a known table."""

from __future__ import annotations

import numpy as np
import torch


def _row_keys(rows: np.ndarray) -> np.ndarray:
    """One opaque, hashable-by-bytes key per row, so rows can be sorted and searched as scalars."""
    rows = np.ascontiguousarray(rows.reshape(rows.shape[0], int(np.prod(rows.shape[1:]))).astype(np.int64, copy=False))
    return rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()


class StateIndex:
    """Index of a fixed table of states; `lookup` returns each row's position, or -1 if absent.
    The index itself is kept in numpy (on the CPU); `lookup` takes states on any device and
    returns their positions on that device."""

    def __init__(self, states: torch.Tensor):
        self.states = states
        keys = _row_keys(states.cpu().numpy())
        self._order = np.argsort(keys, kind="stable")
        self._sorted = keys[self._order]
        if len(keys) > 1 and (self._sorted[1:] == self._sorted[:-1]).any():
            raise ValueError("StateIndex: the state table holds duplicate rows")

    def __len__(self) -> int:
        return len(self._sorted)

    def lookup(self, states: torch.Tensor) -> torch.Tensor:
        keys = _row_keys(states.cpu().numpy())
        pos = np.searchsorted(self._sorted, keys).clip(max=len(self._sorted) - 1)
        found = self._sorted[pos] == keys
        index = np.where(found, self._order[pos], -1)
        return torch.as_tensor(index, device=states.device)
