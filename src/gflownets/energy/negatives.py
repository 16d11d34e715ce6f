"""Negative samples for approximate maximum likelihood of an energy model: each sampler is
called once per training iteration with the current energy and a batch of data, and returns
as many negatives x ~ p_E (approximately). The energy update is the same for all of them
(`training.train_energy`), so they compare at equal energy cost: each counts its energy
evaluations (rows through the energy network; a gradient pass counts as one more).

- `GFlowNetNegatives` (EB-GFN, Zhang et al. 2022): one trajectory-balance step of a GFlowNet
  whose reward is exp(-E), on forward trajectories and on backward trajectories from the data,
  then the back-and-forth proposal from the data with K growing over training, accepted by MH.
- `GibbsNegatives`: persistent chains (PCD), random-scan Gibbs: one site per step, flipped with
  its conditional probability.
- `GWGNegatives`: persistent chains, Gibbs-with-gradients (Grathwohl et al. 2021): the flip is
  drawn from softmax(d(x) / 2), d the gradient's first-order estimate of each flip's change of
  log p, and accepted by MH against the reverse proposal.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from gflownets.envs.bits import Bits
from gflownets.errors import ConfigError
from gflownets.objectives.balance import trajectory_balance
from gflownets.policies.mlp import MLPPolicy
from gflownets.sampling.back_and_forth import back_and_forth
from gflownets.sampling.metropolis import metropolis_hastings
from gflownets.sampling.trajectories import sample_backward, sample_forward

Energy = Callable[[torch.Tensor], torch.Tensor]


def linear_k(dim: int, warmup: int) -> Callable[[int], int]:
    """The reference's `lin_k` schedule: K = D (step + 1) / warmup, at least 1 and at most D,
    so the proposal starts local and ends resampling whole objects."""
    if warmup < 1:
        raise ConfigError(f"the K warm-up must be >= 1 iterations, got {warmup}")
    return lambda step: max(1, min(dim, int(dim * (step + 1) / warmup)))


def random_bits(n: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (n, dim), generator=generator).float()


class GFlowNetNegatives:
    """The GFlowNet of EB-GFN and its back-and-forth negatives. `policy` is an MLP over the
    `bits` environment (learned or uniform P_B); the GFlowNet trains on (1 - back_ratio) x TB of
    on-policy trajectories + back_ratio x TB of data walked back with P_B, with the reward
    exp(-E) of the energy it is called with."""

    name = "eb-gfn"

    def __init__(self, dim: int, *, hidden: int = 256, layers: int = 3, backward: str = "learned",
                 lr: float = 1e-3, lr_logz: float = 0.1, back_ratio: float = 0.5, exploration: float = 0.0,
                 k_schedule: Callable[[int], int] | None = None, mh: bool = True):
        if not 0.0 <= back_ratio <= 1.0:
            raise ConfigError(f"back_ratio must be in [0, 1], got {back_ratio}")
        if not 0.0 <= exploration < 1.0:
            raise ConfigError(f"exploration must be in [0, 1), got {exploration}")
        self.env = Bits(dim=dim, log_reward_fn=self._log_reward)
        self.policy = MLPPolicy(self.env, hidden=hidden, layers=layers, backward=backward, state_flow=False)
        self.optimizer = torch.optim.Adam([{"params": self.policy.network_parameters(), "lr": lr},
                                           {"params": self.policy.flow_parameters(), "lr": lr_logz}])
        self.back_ratio, self.exploration, self.mh = back_ratio, exploration, mh
        self.k_schedule = k_schedule or (lambda step: dim)
        self.energy: Energy | None = None
        self.energy_evaluations = 0
        self.last = {}

    def state_dict(self) -> dict:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "energy_evaluations": self.energy_evaluations}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.energy_evaluations = state["energy_evaluations"]

    @torch.no_grad()
    def _log_reward(self, rows: torch.Tensor) -> torch.Tensor:
        self.energy_evaluations += len(rows)
        return -self.energy(rows.float())

    def train_step(self, objects: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One TB step; returns the data's log-rewards (computed on the way, reused by MH)."""
        terms = []
        if self.back_ratio < 1:
            forward = sample_forward(self.env, self.policy, len(objects), generator, gamma=self.exploration)
            terms.append((1 - self.back_ratio) * trajectory_balance(self.policy, forward))
        backward = sample_backward(self.env, self.policy, objects, generator)
        if self.back_ratio > 0:
            terms.append(self.back_ratio * trajectory_balance(self.policy, backward))
        loss = sum(terms)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.last["gfn_loss"] = float(loss.detach())
        self.last["log_z"] = float(self.policy.log_z.detach())
        return backward.log_rewards

    def __call__(self, energy: Energy, data: torch.Tensor, step: int, generator: torch.Generator) -> torch.Tensor:
        self.energy = energy
        objects = data.long() + 1  # bits -> the environment's states (1 + bit)
        data_log_rewards = self.train_step(objects, generator)
        if not self.mh:  # plain GFlowNet samples
            return self.sample(energy, len(data), generator)
        k = self.k_schedule(step)
        proposal = back_and_forth(self.env, self.policy, objects, k, generator)
        moved, accepted = metropolis_hastings(objects, data_log_rewards, proposal.proposals,
                                              self.env.log_reward(proposal.proposals), proposal.log_ratio, generator)
        self.last.update(k=k, acceptance=float(accepted.double().mean()))
        return moved.float() - 1

    @torch.no_grad()
    def sample(self, energy: Energy, n: int, generator: torch.Generator) -> torch.Tensor:
        """n objects from the GFlowNet's forward policy, as (n, D) float bits."""
        self.energy = energy
        return sample_forward(self.env, self.policy, n, generator).terminal_states.float() - 1


class _PersistentChains:
    """n persistent chains, started from uniform random bits at the first call."""

    name = "chains"

    def __init__(self, dim: int, n_chains: int, steps: int = 1):
        if steps < 1 or n_chains < 1:
            raise ConfigError(f"steps and n_chains must be >= 1, got {steps} and {n_chains}")
        self.dim, self.n_chains, self.steps = dim, n_chains, steps
        self.chains: torch.Tensor | None = None
        self.energy_evaluations = 0
        self.last = {}

    def __call__(self, energy: Energy, data: torch.Tensor, step: int, generator: torch.Generator) -> torch.Tensor:
        if self.chains is None:
            self.chains = random_bits(self.n_chains, self.dim, generator).to(data.device)
        self.chains = self.run(energy, self.chains, self.steps, generator)
        return self.chains

    def state_dict(self) -> dict:
        return {"chains": self.chains, "energy_evaluations": self.energy_evaluations}

    def load_state_dict(self, state: dict) -> None:
        self.chains, self.energy_evaluations = state["chains"], state["energy_evaluations"]

    def sample(self, energy: Energy, n: int, generator: torch.Generator, steps: int = 1000) -> torch.Tensor:
        """n fresh chains from uniform bits, after `steps` steps on `energy` (for evaluation)."""
        return self.run(energy, random_bits(n, self.dim, generator), steps, generator)

    def run(self, energy: Energy, x: torch.Tensor, steps: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError


class GibbsNegatives(_PersistentChains):
    """Random-scan Gibbs: per step and chain one uniformly chosen bit is resampled from its
    conditional, i.e. flipped with probability sigmoid(E(x) - E(x flipped)). One energy
    evaluation per step (the current energy is kept), one more per call (the energy changed)."""

    name = "gibbs"

    @torch.no_grad()
    def run(self, energy: Energy, x: torch.Tensor, steps: int, generator: torch.Generator) -> torch.Tensor:
        rows = torch.arange(len(x), device=x.device)
        current = energy(x)
        for _ in range(steps):
            site = torch.randint(self.dim, (len(x),), generator=generator).to(x.device)
            flipped = x.clone()
            flipped[rows, site] = 1 - flipped[rows, site]
            flipped_energy = energy(flipped)
            uniform = torch.rand(len(x), generator=generator).to(x.device)
            flip = uniform < torch.sigmoid(current - flipped_energy)
            x = torch.where(flip[:, None], flipped, x)
            current = torch.where(flip, flipped_energy, current)
        self.energy_evaluations += len(x) * (steps + 1)
        return x


def flip_logits(energy: Energy, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E(x) and GWG's proposal logits d(x) / 2, d_i = -(1 - 2 x_i) dE/dx_i, the first-order
    estimate of log p(x with bit i flipped) - log p(x)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        values = energy(x)
        (gradient,) = torch.autograd.grad(values.sum(), x)
    return values.detach(), -(1 - 2 * x.detach()) * gradient / 2


class GWGNegatives(_PersistentChains):
    """Gibbs-with-gradients: per step one flip drawn from softmax(d(x) / 2), accepted with
    min(1, p(x') q(i | x') / (p(x) q(i | x))). Two energy evaluations per step (E and its
    gradient at the proposal), two more per call."""

    name = "gwg"

    def run(self, energy: Energy, x: torch.Tensor, steps: int, generator: torch.Generator) -> torch.Tensor:
        rows = torch.arange(len(x), device=x.device)
        current, logits = flip_logits(energy, x)
        for _ in range(steps):
            log_q = logits.log_softmax(dim=1)
            uniform = torch.rand(x.shape, generator=generator).to(x.device)
            site = (uniform.log().neg().log().neg() + log_q).argmax(dim=1)  # Gumbel-max draw
            proposal = x.clone()
            proposal[rows, site] = 1 - proposal[rows, site]
            proposal_energy, proposal_logits = flip_logits(energy, proposal)
            log_accept = (current - proposal_energy + proposal_logits.log_softmax(dim=1)[rows, site]
                          - log_q[rows, site])
            accept = torch.rand(len(x), generator=generator).to(x.device).log() < log_accept
            x = torch.where(accept[:, None], proposal, x)
            current = torch.where(accept, proposal_energy, current)
            logits = torch.where(accept[:, None], proposal_logits, logits)
        self.energy_evaluations += 2 * len(x) * (steps + 1)
        return x.detach()
