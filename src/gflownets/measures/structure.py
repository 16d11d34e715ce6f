"""Distances and statistics on objects, shared by environments and evaluation; imports nothing else of the package."""

# Distributions over DAGs: edge marginals, expected structural Hamming distance to a true graph,
# and the AUROC of the edge marginals as a classifier of the true edges.

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata


def edge_marginals(adjacency: torch.Tensor, probs: torch.Tensor | None = None) -> np.ndarray:
    """(d, d) P(edge i -> j) under the distribution `probs` over the (K, d, d) graphs (uniform
    over them, i.e. the empirical marginals of samples, when probs is None), as a numpy array."""
    a = adjacency.double()
    if probs is None:
        return a.mean(dim=0).cpu().numpy()
    p = probs.double().to(a.device)
    p = p / p.sum()
    return torch.einsum("k,kij->ij", p, a).cpu().numpy()


def shd(adjacency: torch.Tensor, true: np.ndarray) -> torch.Tensor:
    """(K,) structural Hamming distance of each graph to `true`: the number of node pairs whose
    edge is missing, extra or reversed (a reversed edge counts once)."""
    diff = adjacency.bool() != torch.as_tensor(true, device=adjacency.device).bool()
    pair = diff | diff.transpose(-1, -2)
    return pair.triu(diagonal=1).sum(dim=(-1, -2))


def expected_shd(adjacency: torch.Tensor, true: np.ndarray, probs: torch.Tensor | None = None) -> float:
    distances = shd(adjacency, true).double()
    if probs is None:
        return float(distances.mean())
    p = probs.double().to(distances.device)
    p = p / p.sum()
    return float((p * distances).sum())


def auroc(marginals: np.ndarray, true: np.ndarray) -> float | None:
    """Area under the ROC curve of the off-diagonal edge marginals against the true edges
    (Mann-Whitney statistic, ties counted half); None when the true graph has no edges or
    every pair is an edge."""
    off = ~np.eye(len(true), dtype=bool)
    scores, labels = np.asarray(marginals)[off], np.asarray(true)[off].astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
