"""The exact terminal distribution of a forward policy on the hypergrid, for the peers' time to
quality: NumPy only (each peer's venv has it), states in row-major order (x_0 most significant),
actions 0..D-1 = add one to coordinate i, action D = exit, as both peers number them."""

import numpy as np


def all_states(ndim: int, height: int) -> np.ndarray:
    """(H^D, D) every cell, row-major: index = sum_i x_i H^(D-1-i)."""
    return np.stack(np.unravel_index(np.arange(height ** ndim), (height,) * ndim), axis=1)


def forward_mask(states: np.ndarray, height: int) -> np.ndarray:
    """(S, D+1) allowed actions: a coordinate below H-1 may grow; exit always."""
    return np.concatenate([states < height - 1, np.ones((len(states), 1), dtype=bool)], axis=1)


def terminal_distribution(probs: np.ndarray, ndim: int, height: int) -> np.ndarray:
    """P(x is where the trajectory exits) from each state's action probabilities (S, D+1),
    masked ones zero: the flow of each state pushed to its children level by level."""
    states = all_states(ndim, height)
    strides = height ** np.arange(ndim - 1, -1, -1)
    flow = np.zeros(len(states))
    flow[0] = 1.0
    level = states.sum(axis=1)
    for depth in range(ndim * (height - 1) + 1):
        here = np.flatnonzero(level == depth)
        for i in range(ndim):
            grow = here[states[here, i] < height - 1]
            flow[grow + strides[i]] += flow[grow] * probs[grow, i]
    return flow * probs[:, ndim]
