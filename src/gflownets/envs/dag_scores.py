"""Bayesian scores of DAGs: log p(D | G) + log p(G), sums of local node scores.

A DAG's score is decomposable: log p(D | G) = sum_j local(j, Pa_j). Local scores are cached per
(node, parent set), the parent set held as a bitmask (bit i set = node i is a parent), so the
score of a batch of graphs is a table lookup once each (node, parent set) has been seen, and
adding the edge i -> j changes the score by local(j, Pa_j + i) - local(j, Pa_j) only.

- BGe (Geiger & Heckerman 1994; the form of Kuipers, Moffa & Heckerman 2014, as in
  DAG-GFlowNet, Deleu et al. 2022): linear-Gaussian model with a normal-Wishart prior on the
  mean and precision. Hyperparameters: mu0 = 0 (prior mean), alpha_mu = 1 (prior equivalent
  sample size of the mean), alpha_w = d + 2 (Wishart degrees of freedom, the smallest value
  that gives a proper prior with a finite mean), T = t I with
  t = alpha_mu (alpha_w - d - 1) / (alpha_mu + 1) (the Wishart scale; t = 1/2 by default).
  With these, the local score of node j with l parents P is

      1/2 log(alpha_mu / (N + alpha_mu)) - N/2 log(pi)
      + lgamma((N + alpha_w - d + l + 1) / 2) - lgamma((alpha_w - d + l + 1) / 2)
      + (alpha_w - d + 2 l + 1) / 2 log(t)
      + (N + alpha_w - d + l) / 2 log det R[P, P] - (N + alpha_w - d + l + 1) / 2 log det R[P+j, P+j]

  where R = T + S_N + N alpha_mu / (N + alpha_mu) (xbar - mu0)(xbar - mu0)^T and S_N is the
  centred scatter matrix. BGe is score equivalent: Markov-equivalent DAGs score the same.
- BDe with the BDeu prior (Heckerman, Geiger & Chickering 1995; Buntine 1991) for discrete
  data: Dirichlet(ess / (q r)) parameters, where q is the number of parent configurations and
  r the node's arity; `ess` is the equivalent sample size (default 1, as DAG-GFlowNet).
- Priors over graphs: uniform (log p(G) = 0), or Erdos-Renyi, every one of the d (d - 1) / 2
  node pairs joined with probability p: log p(G) = |E| log p + (d (d - 1) / 2 - |E|) log(1 - p).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import gammaln

from gflownets.errors import ConfigError, DataError


def parent_masks(adjacency: torch.Tensor) -> torch.Tensor:
    """(B, d) int64 bitmask of each node's parents, from (B, d, d) adjacency (A[i, j] = edge i -> j)."""
    bits = torch.arange(adjacency.shape[-1], dtype=torch.int64, device=adjacency.device)
    return (adjacency.to(torch.int64) << bits[:, None]).sum(dim=-2)


def mask_to_parents(mask: int, d: int) -> list[int]:
    return [i for i in range(d) if (mask >> i) & 1]


#: up to this many (node, parent set) pairs, d 2^(d-1), every local score is computed up front
#: into one tensor (d <= 9; `LocalScore.dense_table`): scores and delta scores are then gathers,
#: pure torch, which a compiled rollout traces; beyond, they are computed on demand and cached
MAX_DENSE_LOCAL_SCORES = 4096


class LocalScore:
    """Base of decomposable scores: `local(node, parents)` (a list of node indices), cached by
    `local_table(nodes, masks)`, which takes int64 arrays of nodes and parent bitmasks."""

    d: int

    def __init__(self) -> None:
        self._cache: dict[int, float] = {}

    @property
    def dense(self) -> bool:
        """Whether the whole table is small enough to compute up front (`dense_table`)."""
        return self.d * 2 ** max(self.d - 1, 0) <= MAX_DENSE_LOCAL_SCORES

    def dense_table(self) -> torch.Tensor:
        """(d, 2^d) float64 local(node, parent mask) of every pair; masks that contain the node
        itself are never looked up and hold 0. Index it with `parent_masks`."""
        nodes, masks = np.meshgrid(np.arange(self.d), np.arange(2 ** self.d), indexing="ij")
        own = (masks >> nodes) & 1 == 1
        table = np.zeros(nodes.shape)
        table[~own] = self.local_table(nodes[~own], masks[~own])
        return torch.as_tensor(table, dtype=torch.float64)

    def local(self, node: int, parents: list[int]) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def local_table(self, nodes: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """float64 local scores of (node, parent mask) pairs of any shape, computed once each."""
        keys = np.asarray(nodes, dtype=np.int64) * (1 << self.d) + np.asarray(masks, dtype=np.int64)
        unique, inverse = np.unique(keys.ravel(), return_inverse=True)
        values = np.empty(len(unique))
        for k, key in enumerate(unique.tolist()):
            value = self._cache.get(key)
            if value is None:
                node, mask = divmod(key, 1 << self.d)
                value = self._cache[key] = float(self.local(node, mask_to_parents(mask, self.d)))
            values[k] = value
        return values[inverse].reshape(keys.shape)

    def score(self, adjacency: torch.Tensor) -> torch.Tensor:
        """(B,) float64 log p(D | G) of (B, d, d) adjacency matrices (computed on the CPU,
        returned on the adjacency's device)."""
        masks = parent_masks(adjacency).cpu().numpy()
        nodes = np.broadcast_to(np.arange(self.d), masks.shape)
        return torch.as_tensor(self.local_table(nodes, masks).sum(axis=1), device=adjacency.device)

    def delta(self, adjacency: torch.Tensor, sources: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(B,) change of log p(D | G) when the edge sources -> targets is added to each graph."""
        masks = parent_masks(adjacency).gather(1, targets[:, None]).squeeze(1)
        before = masks.cpu().numpy()
        after = (masks | (1 << sources)).cpu().numpy()
        nodes = targets.cpu().numpy()
        return torch.as_tensor(self.local_table(nodes, after) - self.local_table(nodes, before),
                               device=adjacency.device)


class BGeScore(LocalScore):
    """BGe score of continuous data (N, d); see the module docstring for the hyperparameters."""

    def __init__(self, data: np.ndarray, alpha_mu: float = 1.0, alpha_w: float | None = None,
                 mu0: np.ndarray | None = None):
        super().__init__()
        data = np.asarray(data, dtype=np.float64)
        n, d = data.shape
        self.d, self.n = d, n
        self.alpha_mu = float(alpha_mu)
        self.alpha_w = float(d + 2 if alpha_w is None else alpha_w)
        if self.alpha_w <= d + 1:
            raise ConfigError(f"BGe needs alpha_w > d + 1 = {d + 1}, got {self.alpha_w}")
        mu0 = np.zeros(d) if mu0 is None else np.asarray(mu0, dtype=np.float64)
        self.t = self.alpha_mu * (self.alpha_w - d - 1) / (self.alpha_mu + 1)
        mean = data.mean(axis=0)
        centred = data - mean
        shift = (mean - mu0)[:, None]
        self.R = (self.t * np.eye(d) + centred.T @ centred
                  + n * self.alpha_mu / (n + self.alpha_mu) * (shift @ shift.T))

    def _log_det(self, nodes: list[int]) -> float:
        if not nodes:
            return 0.0
        sign, value = np.linalg.slogdet(self.R[np.ix_(nodes, nodes)])
        if sign <= 0:
            raise DataError("BGe: the data's scatter matrix is not positive definite (columns collinear, or "
                            "values too large): remove duplicate columns, or standardise the data")
        return float(value)

    def local(self, node: int, parents: list[int]) -> float:
        n, d, aw, l = self.n, self.d, self.alpha_w, len(parents)
        constant = (0.5 * (math.log(self.alpha_mu) - math.log(n + self.alpha_mu)) - 0.5 * n * math.log(math.pi)
                    + gammaln(0.5 * (n + aw - d + l + 1)) - gammaln(0.5 * (aw - d + l + 1))
                    + 0.5 * (aw - d + 2 * l + 1) * math.log(self.t))
        return (constant + 0.5 * (n + aw - d + l) * self._log_det(parents)
                - 0.5 * (n + aw - d + l + 1) * self._log_det(parents + [node]))

    def joint_log_marginal(self) -> float:
        """log p(D) of the unrestricted normal-Wishart model (the complete DAG's BGe score),
        computed directly from the multivariate formula: an independent check of `local`."""
        n, d, aw = self.n, self.d, self.alpha_w

        def log_multigamma(a: float) -> float:
            return d * (d - 1) / 4 * math.log(math.pi) + sum(gammaln(a + (1 - k) / 2) for k in range(1, d + 1))

        return (-n * d / 2 * math.log(math.pi) + d / 2 * math.log(self.alpha_mu / (n + self.alpha_mu))
                + log_multigamma((n + aw) / 2) - log_multigamma(aw / 2)
                + aw / 2 * d * math.log(self.t) - (n + aw) / 2 * np.linalg.slogdet(self.R)[1])


class BDeScore(LocalScore):
    """BDeu score of discrete data: (N, d) integer codes in [0, arity_j)."""

    def __init__(self, data: np.ndarray, arities: list[int] | np.ndarray | None = None, ess: float = 1.0):
        super().__init__()
        data = np.asarray(data, dtype=np.int64)
        self.n, self.d = data.shape
        self.data = data
        self.arities = (data.max(axis=0) + 1 if arities is None else np.asarray(arities)).astype(np.int64)
        if (data < 0).any() or (data >= self.arities).any():
            raise ConfigError("BDe data must hold codes 0..arity-1 in every column")
        if not ess > 0:
            raise ConfigError(f"BDe equivalent sample size must be > 0, got {ess}")
        self.ess = float(ess)

    def local(self, node: int, parents: list[int]) -> float:
        r = int(self.arities[node])
        q = 1
        config = np.zeros(self.n, dtype=np.int64)
        for p in parents:
            config = config * int(self.arities[p]) + self.data[:, p]
            q *= int(self.arities[p])
        # counts of (observed parent configuration, value); unobserved configurations add 0
        _, config = np.unique(config, return_inverse=True)
        counts = np.zeros((int(config.max()) + 1, r))
        np.add.at(counts, (config, self.data[:, node]), 1.0)
        a_cfg, a_cell = self.ess / q, self.ess / (q * r)
        return float((gammaln(a_cfg) - gammaln(a_cfg + counts.sum(axis=1))).sum()
                     + (gammaln(a_cell + counts) - gammaln(a_cell)).sum())


class GraphPrior:
    """log p(G): 'uniform' or 'erdos_renyi' with `edges` expected edges."""

    def __init__(self, kind: str, d: int, edges: float):
        self.kind = kind
        pairs = d * (d - 1) / 2
        if kind == "uniform" or pairs == 0:
            self.log_edge, self.log_no_edge = 0.0, 0.0
        elif kind == "erdos_renyi":
            p = edges / pairs
            if not 0 < p < 1:
                raise ConfigError(f"erdos_renyi prior: expected edges must be in (0, {pairs:g}), got {edges}")
            self.log_edge, self.log_no_edge = math.log(p), math.log1p(-p)
        else:
            raise ConfigError(f"prior must be 'uniform' or 'erdos_renyi', got {kind!r}")
        self.pairs = pairs

    def log_prob(self, n_edges: torch.Tensor) -> torch.Tensor:
        n_edges = n_edges.double()
        return n_edges * self.log_edge + (self.pairs - n_edges) * self.log_no_edge

    @property
    def delta(self) -> float:
        """Change of log p(G) when one edge is added."""
        return self.log_edge - self.log_no_edge
