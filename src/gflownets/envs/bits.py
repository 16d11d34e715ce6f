"""Bits (Zhang et al. 2022, "Generative Flow Networks for Discrete Probabilistic Modeling"): a
binary vector x of D bits built one bit at a time, in any order, as in energy-based GFlowNets.
A state is a partial assignment; each complete x is reached by D! orders, so the sampler has to
learn P_F against the backward policy rather than count construction orders.

Default reward: a 1-D Ising model on a ring, log R(x) = -E(x) with

    E(x) = -coupling * sum_i s_i s_{(i+1) mod D} - field * sum_i s_i,   s = 2x - 1 in {-1, +1}.

With coupling > 0 aligned neighbours are favoured (two modes, all-0 and all-1, split by
`field`); with coupling < 0 alternating patterns are. For D = 2 the ring counts the one bond
twice and for D = 1 it is the constant s_0^2 = 1. This is the closed-form target to check the
groundwork of EB-GFN on: the energy is a stand-in for a learned one.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from gflownets.envs.base import DiscreteEnv, EnvConfig, draw_device
from gflownets.envs.limits import check_policy_inputs
from gflownets.errors import ConfigError, TooManyStates

#: the most bits: enough for any enumerable size and for samples of a real data set's dimension
MAX_DIM = 64
#: the largest enumerable dimension: 3^10 = 59049 states and 2 * 10 actions each for the exact graph
MAX_ENUMERABLE_DIM = 10


@dataclasses.dataclass
class BitsConfig(EnvConfig):
    dim: int = dataclasses.field(default=8, metadata={"help": f"number of bits D (1..{MAX_DIM})"})
    coupling: float = dataclasses.field(default=0.3, metadata={
        "help": "Ising coupling J between ring neighbours of the default reward (> 0: aligned bits)"})
    field: float = dataclasses.field(default=0.1, metadata={
        "help": "Ising field h of the default reward (> 0: favours 1 bits)"})

    def validate(self) -> None:
        if not 1 <= self.dim <= MAX_DIM:
            raise ConfigError(f"dim must be in [1, {MAX_DIM}], got {self.dim}")
        check_policy_inputs("bits", 3 * self.dim, "3 * dim one-hot features")
        for name in ("coupling", "field"):
            value = getattr(self, name)
            if not np.isfinite(value):
                raise ConfigError(f"{name} must be finite, got {value}")


class Bits(DiscreteEnv):
    """State: (B, D) entries 0 = unset, 1 = bit 0, 2 = bit 1 (that is, 1 + bit once set). The
    unset value is 0, not -1, so that a partial state never holds the trajectories' -1 padding
    (the fixed-step rollout clamps padded rows to 0, and `intermediate_log_reward` treats -1 as
    padding).

    Actions: a = 2 i + v < 2D sets bit i to v (allowed while bit i is unset); exit (a = 2D) is
    allowed only when every bit is set, and is then the only action. Backward action a = 2 i + v
    unsets bit i where it holds v, so it undoes forward action a. Features: a one-hot of
    {unset, 0, 1} per position (3D). CSV rows: columns b0..b{D-1} of 0/1 (a partial state's
    unset bits are written as -1).

    The default reward on a partial state (`intermediate_log_reward`, for fldb) is the same
    formula with unset spins s_i = 0: the energy of the bits set so far.
    """

    name = "bits"
    Config = BitsConfig
    compilable = True  # masks, features, step and the ring energy are branch-free tensor code
    value_range = (0, 1)
    max_enumerable_states = 3 ** MAX_ENUMERABLE_DIM
    run_defaults = {"objective": "tb", "iters": 4000, "batch_size": 32, "hidden": 128, "lr_logz": 0.1,
                    "eval_every": 500}

    def setup(self, config: BitsConfig) -> None:
        self.dim = config.dim
        self.n_actions = 2 * self.dim + 1
        self.state_shape = (self.dim,)
        self.max_steps = self.dim + 1
        self.feature_dim = 3 * self.dim
        self._positions = torch.arange(self.dim)
        self._set_values = torch.tensor([1, 2])  # the state entries of bit 0 and bit 1

    @property
    def initial_state(self) -> torch.Tensor:
        return torch.zeros(self.dim, dtype=torch.long, device=self.device)

    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        unset = states == 0
        moves = unset.repeat_interleave(2, dim=1)  # column 2 i + v: bit i is free for either value
        return torch.cat([moves, ~unset.any(dim=1, keepdim=True)], dim=1)

    def backward_mask(self, states: torch.Tensor) -> torch.Tensor:
        return (states[:, :, None] == self._set_values).reshape(states.shape[0], 2 * self.dim)

    def _where(self, actions: torch.Tensor) -> torch.Tensor:
        """(B, D) bool: the position each action writes."""
        return self._positions == torch.div(actions, 2, rounding_mode="floor")[:, None]

    def _step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.where(self._where(actions), (actions % 2 + 1)[:, None], states)

    def _backward_step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.where(self._where(actions), 0, states)

    def spins(self, states: torch.Tensor) -> torch.Tensor:
        """Float64 (B, D) spins s = 2x - 1 of the set bits, 0 where unset."""
        return (states == 2).double() - (states == 1).double()

    def default_log_reward(self, states: torch.Tensor) -> torch.Tensor:
        s = self.spins(states)
        bonds = (s * s.roll(-1, dims=1)).sum(dim=1)
        return self.config.coupling * bonds + self.config.field * s.sum(dim=1)

    def features(self, states: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(states, 3).flatten(1).float()

    def mutate(self, objects: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One random bit of each object flipped (symmetric: every flip is its own reverse)."""
        device = draw_device(generator, objects)
        where = torch.randint(self.dim, (objects.shape[0],), generator=generator, device=device)
        flip = self._positions.to(objects.device) == where.to(objects.device)[:, None]
        return torch.where(flip, 3 - objects, objects)

    def _enumerate(self) -> torch.Tensor:
        if 3 ** self.dim > self.max_enumerable_states:
            raise TooManyStates(f"bits: 3^{self.dim} = {3 ** self.dim} states, more than "
                                f"{self.max_enumerable_states}, too many to enumerate")
        # every partial assignment is reachable: {unset, 0, 1}^D in closed form
        values = torch.arange(3, device=self.device)
        return torch.cartesian_prod(*[values] * self.dim).reshape(-1, self.dim)

    @property
    def object_columns(self) -> list[str]:
        return [f"b{i}" for i in range(self.dim)]

    def objects_to_rows(self, states: torch.Tensor) -> np.ndarray:
        """The bits 0/1 (-1 where a partial state's bit is unset)."""
        return super().objects_to_rows(states) - 1

    def objects_from_rows(self, rows: np.ndarray) -> torch.Tensor:
        """Rows of D bits (checked against `value_range` by the base class) as complete states."""
        return super().objects_from_rows(rows) + 1
