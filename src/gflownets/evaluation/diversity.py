"""Sample-quality metrics for objects that are sequences or vectors: distances (Hamming, edit),
diversity (mean pairwise distance), novelty (distance to a reference set), top-k rewards and
the Spearman rank correlation. Distances take integer tensors padded with -1."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.stats import spearmanr

if TYPE_CHECKING:
    from gflownets.envs.sequences import SequenceEnv

DistanceFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def hamming_matrix(a: torch.Tensor, b: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """(Na, Nb) number of positions where rows of a and b differ."""
    parts = [(a[i:i + chunk, None, :] != b[None, :, :]).sum(dim=-1) for i in range(0, len(a), chunk)]
    return torch.cat(parts) if parts else torch.zeros(0, len(b), dtype=torch.long)


def edit_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,) Levenshtein distance between row i of a and row i of b (tokens >= 0, -1 padding
    after the end). Vectorised over rows: one dynamic-programming table per pair."""
    n = a.shape[0]
    la, lb = (a >= 0).sum(dim=1), (b >= 0).sum(dim=1)
    wa, wb = a.shape[1], b.shape[1]
    # row[j] = distance between a[:i] and b[:j]; prefixes past a row's length are never read
    row = torch.arange(wb + 1).expand(n, -1).clone()
    answer = torch.where(la == 0, lb, torch.zeros_like(la))
    for i in range(1, wa + 1):
        new = torch.empty_like(row)
        new[:, 0] = i
        substitute = row[:, :-1] + (a[:, i - 1:i] != b).long()
        delete = row[:, 1:] + 1
        best = torch.minimum(substitute, delete)
        for j in range(1, wb + 1):
            new[:, j] = torch.minimum(best[:, j - 1], new[:, j - 1] + 1)
        row = new
        done = la == i
        answer = torch.where(done, row.gather(1, lb[:, None]).squeeze(1), answer)
    return answer


def edit_distance_matrix(a: torch.Tensor, b: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """(Na, Nb) Levenshtein distances."""
    ia, ib = torch.meshgrid(torch.arange(len(a)), torch.arange(len(b)), indexing="ij")
    ia, ib = ia.flatten(), ib.flatten()
    out = torch.cat([edit_distance(a[ia[i:i + chunk]], b[ib[i:i + chunk]])
                     for i in range(0, len(ia), chunk)]) if len(ia) else torch.zeros(0, dtype=torch.long)
    return out.view(len(a), len(b))


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
    """Indices of the k best-scoring distinct objects (fewer if there are fewer)."""
    _, first = np.unique(objects.reshape(len(objects), -1).cpu().numpy(), axis=0, return_index=True)
    first = torch.from_numpy(first)
    order = scores[first].argsort(descending=True, stable=True)
    return first[order[:k]]


def sequence_sample_metrics(env: SequenceEnv, objects: torch.Tensor, log_rewards: torch.Tensor,
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
