"""How well an energy model and its sampler fit binary data:

- `exp_hamming_mmd`: the unbiased squared MMD with the exponential-Hamming kernel
  k(x, y) = exp(-bandwidth * Hamming(x, y)) (bandwidth 0.1, as in EB-GFN and ALOE);
- `coupling_rmse`: the root mean square error of learned Ising couplings against the true J;
- `exact_kl`: KL divergences between the learned energy's distribution and a known one, by
  enumerating all 2^D states (D <= 20);
- `kernel_log_z` and `energy_nll`: the learned energy's held-out negative log-likelihood,
  E(x) + log Z_E, with log Z_E estimated by importance sampling from a data kernel: pick a
  training point and flip each bit with probability `flip`. The proposal has full support and
  is the same for every method, so the estimates compare; like every importance-sampling
  estimate of log Z it is biased low (by Jensen), so the NLL can only come out optimistic when
  the energy puts mass far from the data, which MMD and samples then show.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gflownets.errors import TooManyStates

#: the most bits `exact_kl` enumerates (2^20 states)
MAX_EXACT_BITS = 20


def hamming(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(n, m) Hamming distances between rows of 0/1 tensors, by one matmul."""
    x, y = x.double(), y.double()
    return x.sum(1, keepdim=True) + y.sum(1)[None, :] - 2 * x @ y.T


def exp_hamming_mmd(x: torch.Tensor, y: torch.Tensor, bandwidth: float = 0.1) -> float:
    """Unbiased MMD^2 between samples x (n, D) and y (m, D) of bits, n, m >= 2."""
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"MMD needs at least 2 samples on each side, got {len(x)} and {len(y)}")
    kxx = torch.exp(-bandwidth * hamming(x, x))
    kyy = torch.exp(-bandwidth * hamming(y, y))
    kxy = torch.exp(-bandwidth * hamming(x, y))
    n, m = len(x), len(y)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(within_x + within_y - 2 * kxy.mean())


def coupling_rmse(learned: torch.Tensor, true: torch.Tensor) -> float:
    """RMSE over all D x D entries of the coupling matrices."""
    return float((learned.detach().double() - true.double()).pow(2).mean().sqrt())


def all_bit_vectors(dim: int) -> torch.Tensor:
    """(2^dim, dim) float, row k holding k's binary digits (most significant first)."""
    if dim > MAX_EXACT_BITS:
        raise TooManyStates(f"{dim} bits: exact enumeration stops at {MAX_EXACT_BITS}")
    shifts = torch.arange(dim - 1, -1, -1)
    return ((torch.arange(2 ** dim)[:, None] >> shifts) & 1).float()


@torch.no_grad()
def energies_of(energy: nn.Module, states: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """(S,) float64 energies, `chunk` rows at a time."""
    return torch.cat([energy(states[i:i + chunk].float()).double() for i in range(0, len(states), chunk)])


def energy_log_probs(energy: nn.Module, states: torch.Tensor) -> torch.Tensor:
    """(S,) float64 log-probabilities of the learned energy's distribution restricted to
    `states` (normalised over them: all 2^D states gives the exact distribution)."""
    return (-energies_of(energy, states)).log_softmax(dim=0)


def exact_log_z(energy: nn.Module, dim: int) -> float:
    """log Z_E by enumerating all 2^dim states (dim <= 20)."""
    return float(torch.logsumexp(-energies_of(energy, all_bit_vectors(dim)), 0))


def exact_kl(energy: nn.Module, true_probs: torch.Tensor, states: torch.Tensor) -> dict[str, float]:
    """KL(true || learned) (what maximum likelihood minimises) and KL(learned || true), exact,
    over `states` (all 2^D of them) with the true probabilities `true_probs`."""
    log_q = energy_log_probs(energy, states.float())
    p = true_probs.double()
    log_p = p.clamp(min=1e-300).log()
    q = log_q.exp()
    return {"kl_true_learned": float((p * (log_p - log_q)).sum()),
            "kl_learned_true": float((q * (log_q - log_p)).sum())}


@torch.no_grad()
def kernel_log_z(energy: nn.Module, train: torch.Tensor, n: int = 20_000, flip: float = 0.05,
                 generator: torch.Generator | None = None, chunk: int = 4096) -> dict[str, float]:
    """Importance-sampling estimate of log Z_E = log sum_x exp(-E(x)) with the data-kernel
    proposal q(x) = mean_j prod_i flip^[x_i != t_ji] (1 - flip)^[x_i == t_ji] over training
    points t_j. Returns the estimate, a 95 % delta-method half-width and the effective sample size."""
    if not 0 < flip < 0.5:
        raise ValueError(f"flip must be in (0, 0.5), got {flip}")
    train = train.float()
    dim = train.shape[1]
    log_weights = []
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        centres = train[torch.randint(len(train), (m,), generator=generator)]
        flips = (torch.rand(m, dim, generator=generator) < flip).float()
        x = (centres + flips) % 2
        distances = hamming(x, train)
        log_q = torch.logsumexp(distances * math.log(flip) + (dim - distances) * math.log1p(-flip), dim=1) \
            - math.log(len(train))
        log_weights.append(-energy(x).double() - log_q)
    log_w = torch.cat(log_weights)
    log_z = float(torch.logsumexp(log_w, 0) - math.log(n))
    weights = (log_w - log_w.max()).exp()
    ess = float(weights.sum() ** 2 / weights.pow(2).sum())
    relative_sd = float(weights.std() / weights.mean()) / math.sqrt(n)
    return {"log_z": log_z, "half_width": 1.96 * relative_sd, "ess": ess, "n": n}


@torch.no_grad()
def energy_nll(energy: nn.Module, test: torch.Tensor, log_z: float) -> float:
    """Mean held-out negative log-likelihood in nats: mean E(x) + log Z_E."""
    return float(energy(test.float()).double().mean() + log_z)
