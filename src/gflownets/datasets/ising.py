"""Ising models on periodic 2-D lattices, the EB-GFN paper's Ising experiment, with exact sampling
for small lattices and a batched Gibbs sampler for larger ones.

Convention (that of the reference LatticeIsingModel of Gibbs-with-gradients, reused by EB-GFN):
spins s = 2x - 1 in {-1, +1}^D for bits x in {0, 1}^D, couplings J = sigma * A with A the
symmetric adjacency matrix of the periodic lattice, and

    log p(s) = s^T J s + h^T s + const,   i.e.  E(s) = -(s^T J s + h^T s),

so each lattice edge is counted twice (J_ij and J_ji). Samples are returned as {0, 1} uint8
tensors (x, not s); `.float()` them for an energy network.
"""

from __future__ import annotations

import torch

from gflownets.errors import ConfigError, TooManyStates

#: the most sites exact_ising_distribution enumerates (2**20 states, ~170 MB of float64 spins)
MAX_EXACT_SITES = 20


def lattice_couplings(side: int, sigma: float) -> torch.Tensor:
    """(D, D) float64 J = sigma * adjacency of the periodic side x side lattice, D = side**2,
    sites numbered row-major. Each site has 4 neighbours for side >= 3; for side 2 the left and
    right (up and down) neighbours coincide, so its entries are 2 * sigma (a doubled edge)."""
    if side < 2:
        raise ConfigError(f"the lattice side must be >= 2, got {side}")
    grid = torch.arange(side * side).reshape(side, side)
    adjacency = torch.zeros(side * side, side * side, dtype=torch.float64)
    for shift, dim in ((1, 0), (-1, 0), (1, 1), (-1, 1)):
        neighbour = torch.roll(grid, shifts=shift, dims=dim).reshape(-1)
        adjacency[grid.reshape(-1), neighbour] += 1.0
    return sigma * adjacency


def _spins(x: torch.Tensor) -> torch.Tensor:
    """{0, 1} bits or {-1, +1} spins -> float64 spins: both encodings map 1 to +1, 0 and -1 to -1."""
    return torch.where(torch.as_tensor(x) > 0, 1.0, -1.0).to(torch.float64)


def _field(J: torch.Tensor, field: torch.Tensor | float | None) -> torch.Tensor:
    if field is None:
        return torch.zeros(J.shape[0], dtype=torch.float64)
    return torch.as_tensor(field, dtype=torch.float64).expand(J.shape[0])


def _check_couplings(J: torch.Tensor) -> torch.Tensor:
    J = torch.as_tensor(J, dtype=torch.float64)
    if J.ndim != 2 or J.shape[0] != J.shape[1]:
        raise ConfigError(f"couplings must be a square matrix, got shape {tuple(J.shape)}")
    if not torch.allclose(J, J.T):
        raise ConfigError("couplings must be symmetric")
    return J


def ising_energy(x: torch.Tensor, J: torch.Tensor, field: torch.Tensor | float | None = None) -> torch.Tensor:
    """(..., D) bits in {0, 1} or spins in {-1, +1} -> (...) float64 energies -(s^T J s + h^T s)."""
    J = _check_couplings(J)
    s = _spins(x)
    return -(((s @ J) * s).sum(-1) + s @ _field(J, field))


def exact_ising_distribution(J: torch.Tensor, field: torch.Tensor | float | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """All 2**D states (uint8, (2**D, D), state k's bits are k's binary digits, most significant
    first) and their exact probabilities, softmax(-E); the ground truth for small lattices."""
    J = _check_couplings(J)
    dim = J.shape[0]
    if dim > MAX_EXACT_SITES:
        raise TooManyStates(f"{dim} sites: exact enumeration stops at {MAX_EXACT_SITES}; use gibbs_samples")
    shifts = torch.arange(dim - 1, -1, -1)
    states = ((torch.arange(2 ** dim)[:, None] >> shifts) & 1).to(torch.uint8)
    probs = torch.softmax(-ising_energy(states, J, field), dim=0)
    return states, probs


def exact_ising_samples(J: torch.Tensor, n: int, seed: int,
                        field: torch.Tensor | float | None = None) -> torch.Tensor:
    """(n, D) uint8 independent exact samples, drawn from the enumerated distribution (D <= 20)."""
    states, probs = exact_ising_distribution(J, field)
    generator = torch.Generator().manual_seed(seed)
    return states[torch.multinomial(probs, n, replacement=True, generator=generator)]


def gibbs_samples(J: torch.Tensor, n: int, sweeps: int, seed: int,
                  field: torch.Tensor | float | None = None, init: torch.Tensor | None = None) -> torch.Tensor:
    """(n, D) uint8 states of n independent chains after `sweeps` systematic-scan Gibbs sweeps
    (each site once per sweep, all chains at once), started from uniform random states or `init`.

    Site i's conditional: p(s_i = +1 | rest) = sigmoid(4 sum_{j != i} J_ij s_j + 2 h_i)."""
    J = _check_couplings(J)
    h = _field(J, field)
    dim = J.shape[0]
    generator = torch.Generator().manual_seed(seed)
    if init is None:
        s = torch.randint(0, 2, (n, dim), generator=generator).to(torch.float64) * 2 - 1
    else:
        s = _spins(init).expand(n, dim).clone()
    off_diagonal = J - torch.diag(torch.diagonal(J))
    for _ in range(sweeps):
        uniforms = torch.rand(dim, n, generator=generator, dtype=torch.float64)
        for i in range(dim):
            logit = 4.0 * (s @ off_diagonal[:, i]) + 2.0 * h[i]
            s[:, i] = torch.where(uniforms[i] < torch.sigmoid(logit), 1.0, -1.0)
    return (s > 0).to(torch.uint8)
