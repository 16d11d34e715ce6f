"""Distances between the learned and the target distribution over finished objects, and
the count of reward modes a run has found."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.special import rel_entr


def distribution_metrics(learned: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """l1 = sum |p - p*|, l1_mean = l1 / n_objects, tv = l1 / 2, jsd (nats, <= log 2) and
    kl = KL(p* || p) (nats; infinite where p misses support, so omitted for empirical p)."""
    p = learned.double().cpu().numpy()
    q = target.double().cpu().numpy()
    l1 = float(np.abs(p - q).sum())
    m = (p + q) / 2
    jsd = float(0.5 * rel_entr(p, m).sum() + 0.5 * rel_entr(q, m).sum())
    out = {"l1": l1, "l1_mean": l1 / len(p), "tv": l1 / 2, "jsd": max(jsd, 0.0)}
    kl = float(rel_entr(q, p).sum())
    if np.isfinite(kl):
        out["kl"] = kl
    return out


class ModeTracker:
    """Which modes (objects of maximum reward) the sampler has produced so far. `mode_mask` marks
    the modes among a fixed set of objects, and `locate` maps finished objects to positions in
    that set (-1: not in it). Objects queued by `add` are located in one batch when `found` is
    read, so the lookup's fixed cost is paid once per metrics line, not once per iteration."""

    #: queued rows beyond which `add` locates them at once (bounds the queue's memory)
    max_pending = 4096

    def __init__(self, mode_mask: torch.Tensor, locate: Callable[[torch.Tensor], torch.Tensor]):
        self.mode_mask = mode_mask
        self.locate = locate
        self._found = torch.zeros_like(mode_mask)
        self._pending: list[torch.Tensor] = []
        self._pending_rows = 0

    def add(self, objects: torch.Tensor) -> None:
        self._pending.append(objects)
        self._pending_rows += len(objects)
        if self._pending_rows > self.max_pending:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            positions = self.locate(torch.cat(self._pending)).to(self.mode_mask.device)
            positions = positions[positions >= 0]
            self._found[positions] = self.mode_mask[positions]
            self._pending, self._pending_rows = [], 0

    @property
    def found(self) -> torch.Tensor:
        """(n,) bool: which of the modes have been produced."""
        self._flush()
        return self._found

    @found.setter
    def found(self, value: torch.Tensor) -> None:
        self._pending, self._pending_rows = [], 0
        self._found = value.to(self.mode_mask.device)

    @property
    def n_found(self) -> int:
        return int(self.found.sum())

    @property
    def n_modes(self) -> int:
        return int(self.mode_mask.sum())
