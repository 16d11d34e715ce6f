"""Distances and statistics on objects, shared by environments and evaluation; imports nothing else of the package."""

# Sample quality of objects that are sequences or vectors: diversity (mean pairwise distance),
# novelty (distance to a reference set), top-k rewards and the Spearman rank correlation.

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from scipy.stats import spearmanr

from gflownets.measures.distances import hamming_matrix

DistanceFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class ScoredObjects(Protocol):
    """What `sequence_sample_metrics` asks of an environment (a `SequenceEnv` has all three)."""

    def scores(self, objects: torch.Tensor, log_rewards: torch.Tensor) -> torch.Tensor: ...

    def distance_matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor: ...

    def modes_hit(self, objects: torch.Tensor) -> torch.Tensor | None: ...


def mean_pairwise_distance(objects: torch.Tensor, distance: DistanceFn = hamming_matrix) -> float:
    """Diversity: the mean distance over all pairs of distinct positions i < j (nan below 2)."""
    n = len(objects)
    if n < 2:
        return float("nan")
    d = distance(objects, objects).double()
    return float(d.triu(diagonal=1).sum() / (n * (n - 1) / 2))


def novelty(objects: torch.Tensor, reference: torch.Tensor, distance: DistanceFn = hamming_matrix) -> float:
    """Mean, over the objects, of the distance to the closest object of a reference set
    (for instance the training data): 0 means every sample is a copy of a reference object."""
    if len(objects) == 0 or len(reference) == 0:
        return float("nan")
    return float(distance(objects, reference).min(dim=1).values.double().mean())


def spearman(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float:
    """Spearman rank correlation (ties get average ranks)."""
    x = np.asarray(torch.as_tensor(x).double().cpu())
    y = np.asarray(torch.as_tensor(y).double().cpu())
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(spearmanr(x, y).statistic)


def top_k_distinct(objects: torch.Tensor, scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k best-scoring distinct objects (fewer if there are fewer), on the
    objects' device."""
    _, first = np.unique(objects.reshape(len(objects), -1).cpu().numpy(), axis=0, return_index=True)
    first = torch.as_tensor(first, device=objects.device)
    order = scores[first].argsort(descending=True, stable=True)
    return first[order[:k]]


def sequence_sample_metrics(env: ScoredObjects, objects: torch.Tensor, log_rewards: torch.Tensor,
                            k: int = 100, reference: torch.Tensor | None = None) -> dict[str, float]:
    """Top-k, diversity, uniqueness, modes and novelty of a batch of sampled sequences:

    - `top{k}_reward`: mean reward of the k best distinct samples; `top{k}_score` and
      `max_score`: the same for the task's score (`env.scores`: the Ehrlich value f(x), ...);
    - `top{k}_diversity`: mean pairwise distance (`env.distance_matrix`) of those k;
    - `unique_fraction`: distinct samples / samples;
    - `modes_hit`: distinct known modes hit by the samples (where the env knows its modes);
    - `novelty`: mean distance of the top k to the closest reference object (if given)."""
    out: dict[str, float] = {}
    scores = env.scores(objects, log_rewards).double()
    by_reward = top_k_distinct(objects, log_rewards, k)
    by_score = top_k_distinct(objects, scores, k)
    out[f"top{k}_reward"] = float(log_rewards[by_reward].double().exp().mean())
    out[f"top{k}_score"] = float(scores[by_score].mean())
    out["max_score"] = float(scores.max())
    out[f"top{k}_diversity"] = mean_pairwise_distance(objects[by_score], env.distance_matrix)
    out["unique_fraction"] = float(len(np.unique(objects.cpu().numpy(), axis=0)) / len(objects))
    hits = env.modes_hit(objects)
    if hits is not None:
        out["modes_hit"] = int(hits.any(dim=0).sum())
    if reference is not None:
        out["novelty"] = novelty(objects[by_score], reference, env.distance_matrix)
    return out
