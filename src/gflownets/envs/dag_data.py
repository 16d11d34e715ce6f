"""Data for structure learning: seeded synthetic Erdos-Renyi DAGs with linear-Gaussian or
discrete conditional distributions, and a user's data from a CSV file (header = node names).
Everything is generated locally; nothing is downloaded."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from gflownets.errors import ConfigError, DataError
from gflownets.textfiles import is_number, read_csv_rows, shown

#: the most values in the probability table of one node of synthetic discrete data
#: (arity^(parents + 1): 80 MB of float64 at the limit)
MAX_TABLE = 10_000_000


def erdos_renyi_dag(d: int, expected_edges: float, rng: np.random.Generator) -> np.ndarray:
    """(d, d) 0/1 adjacency (A[i, j] = edge i -> j): a random order of the nodes, then each of
    the d (d - 1) / 2 pairs joined, from earlier to later, with probability
    expected_edges / (d (d - 1) / 2)."""
    pairs = d * (d - 1) / 2
    p = min(max(expected_edges / pairs, 0.0), 1.0) if pairs else 0.0
    upper = np.triu(rng.random((d, d)) < p, k=1)
    order = rng.permutation(d)
    adjacency = np.zeros((d, d), dtype=np.int64)
    adjacency[np.ix_(order, order)] = upper
    return adjacency


def topological_order(adjacency: np.ndarray) -> list[int]:
    remaining = adjacency.copy()
    order: list[int] = []
    todo = set(range(len(adjacency)))
    while todo:
        roots = [j for j in sorted(todo) if not remaining[:, j].any()]
        if not roots:
            raise DataError("the graph has a cycle")
        for j in roots:
            order.append(j)
            todo.remove(j)
            remaining[j, :] = 0
    return order


def sample_linear_gaussian(adjacency: np.ndarray, n: int, rng: np.random.Generator,
                           noise_std: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """n samples of X_j = sum_i W[i, j] X_i + e_j, e_j ~ N(0, noise_std^2), with edge weights
    W[i, j] ~ N(0, 1) on the edges (the usual synthetic setting). Returns (data, W)."""
    d = len(adjacency)
    weights = rng.normal(size=(d, d)) * adjacency
    data = np.zeros((n, d))
    for j in topological_order(adjacency):
        data[:, j] = data @ weights[:, j] + noise_std * rng.normal(size=n)
    return data, weights


def sample_discrete(adjacency: np.ndarray, n: int, rng: np.random.Generator,
                    arity: int = 2) -> np.ndarray:
    """n samples with every node taking `arity` values; each row of every conditional
    probability table is drawn from a Dirichlet(1, ..., 1)."""
    d = len(adjacency)
    data = np.zeros((n, d), dtype=np.int64)
    for j in topological_order(adjacency):
        parents = np.nonzero(adjacency[:, j])[0]
        if arity ** (len(parents) + 1) > MAX_TABLE:
            raise ConfigError(f"synthetic discrete data: node {j} has {len(parents)} parents, so its probability "
                              f"table would hold arity^{len(parents) + 1} = {arity ** (len(parents) + 1):.3g} values, "
                              f"more than the limit of {MAX_TABLE}: lower arity or edges_per_node")
        config = np.zeros(n, dtype=np.int64)
        for p in parents:
            config = config * arity + data[:, p]
        table = rng.dirichlet(np.ones(arity), size=arity ** len(parents))
        cumulative = table[config].cumsum(axis=1)
        data[:, j] = (rng.random(n)[:, None] > cumulative[:, :-1]).sum(axis=1)
    return data


def read_data_csv(path: str | Path, discrete: bool) -> tuple[list[str], np.ndarray]:
    """(node names, data) from a CSV whose header names the nodes. Continuous data must be
    numbers; discrete data may be any labels, coded 0..k-1 per column in sorted order. At
    least two nodes: over one node there is a single graph, nothing to learn (and edge
    metrics, means over no pairs of nodes, are undefined)."""
    path = Path(path)
    rows = read_csv_rows(path, DataError, "data file")
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header of node names and at least one data row")
    names = rows[0]
    if len(set(names)) != len(names) or not all(names):
        raise DataError(f"{path}: node names in the header must be distinct and non-empty: {shown(names)}")
    if len(names) < 2:
        raise DataError(f"{path}: structure learning needs at least 2 nodes (columns), the header names "
                        f"{len(names)}: {shown(names)}")
    for i, row in enumerate(rows[1:], start=1):
        if len(row) != len(names):
            raise DataError(f"{path}: data row {i} has {len(row)} values, the header {len(names)}")
    cells = np.array(rows[1:])
    if discrete:
        data = np.zeros(cells.shape, dtype=np.int64)
        for j in range(cells.shape[1]):
            _, data[:, j] = np.unique(cells[:, j], return_inverse=True)
        return names, data
    try:
        data = cells.astype(np.float64)
    except ValueError:
        bad = next((i, j) for i in range(cells.shape[0]) for j in range(cells.shape[1])
                   if not is_number(cells[i, j]))
        raise DataError(f"{path}: data row {bad[0] + 1}, column {names[bad[1]]}: "
                        f"{shown(str(cells[bad]))} is not a number") from None
    if not np.isfinite(data).all():
        raise DataError(f"{path}: data holds NaN or infinite values")
    # the BGe score sums squares over the rows: past this scale they overflow to infinity
    limit = math.sqrt(np.finfo(np.float64).max / (4 * len(data)))
    if np.abs(data).max() > limit:
        raise DataError(f"{path}: values as large as {np.abs(data).max():.3g} are too large to score (the score "
                        f"sums their squares over {len(data)} rows; the limit is {limit:.3g}): rescale the columns")
    return names, data
