"""Multi-objective measures on objective values to be maximised ((n, m) arrays, as
`DiscreteEnv.objective_values` gives them, in [0, 1]):

- `pareto_mask`: the non-dominated points;
- `hypervolume`: the volume dominated by a set of points and bounded below by a reference point
  (moocore's exact algorithms; the objectives are negated for its minimisation convention);
- `r2_indicator`: the R2 indicator of Zitzler/Brockhoff, mean over weight vectors of the best
  weighted Tchebycheff distance to the ideal point (lower is better; MOGFN reports it);
- `simplex_grid`: evenly spread weight vectors for R2 and for preference sweeps.
"""

from __future__ import annotations

import itertools

import moocore
import numpy as np


def _points(values) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    points = np.asarray(values, dtype=np.float64)
    if points.ndim != 2:
        raise ValueError(f"objective values must be an (n, m) array, got shape {points.shape}")
    return points


def pareto_mask(values) -> np.ndarray:
    """(n,) bool: the points no other point dominates (>= in every objective, > in one);
    duplicates of a non-dominated point are all kept."""
    points = _points(values)
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(moocore.is_nondominated(points, maximise=True, keep_weakly=True))


def hypervolume(values, reference=None) -> float:
    """Volume of the region dominated by the points and dominating `reference` (default: the
    origin, the worst value of objectives in [0, 1]); points not above the reference add nothing."""
    points = _points(values)
    reference = np.zeros(points.shape[1]) if reference is None else np.asarray(reference, dtype=np.float64)
    above = (points > reference).all(axis=1)
    if not above.any():
        return 0.0
    return float(moocore.hypervolume(-points[above], ref=-reference))


def simplex_grid(m: int, divisions: int) -> np.ndarray:
    """All weight vectors on the m-simplex with coordinates in multiples of 1 / divisions."""
    rows = [c for c in itertools.product(range(divisions + 1), repeat=m) if sum(c) == divisions]
    return np.asarray(rows, dtype=np.float64) / divisions


def r2_indicator(values, weights=None, ideal=None) -> float:
    """mean over weight vectors w of min over points x of max_i w_i |ideal_i - f_i(x)| (ideal:
    all ones for objectives in [0, 1]; weights: the simplex grid of 10 divisions)."""
    points = _points(values)
    m = points.shape[1]
    weights = simplex_grid(m, 10) if weights is None else np.asarray(weights, dtype=np.float64)
    ideal = np.ones(m) if ideal is None else np.asarray(ideal, dtype=np.float64)
    gaps = np.abs(ideal - points)  # (n, m)
    return float((weights[:, None, :] * gaps[None]).max(axis=2).min(axis=1).mean())
