"""Distances between the learned and the target distribution over finished objects, and
the count of reward modes a run has found."""

from __future__ import annotations

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
    """Which modes (objects of maximum reward) the sampler has produced so far; `mode_mask`
    marks the modes among an enumerated set of objects, `update` takes positions in that set."""

    def __init__(self, mode_mask: torch.Tensor):
        self.mode_mask = mode_mask
        self.found = torch.zeros_like(mode_mask)

    def update(self, positions: torch.Tensor) -> None:
        positions = positions[positions >= 0]
        self.found[positions] = self.mode_mask[positions]

    @property
    def n_found(self) -> int:
        return int(self.found.sum())

    @property
    def n_modes(self) -> int:
        return int(self.mode_mask.sum())
