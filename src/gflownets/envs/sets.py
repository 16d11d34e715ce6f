"""Sets (seed 003): build a subset of exactly k of n items, one item per step. The order of
insertion does not matter, so k! trajectories lead to each set: the case where a naive
sequence model over-counts large sets and a GFlowNet does not."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from gflownets.envs.base import DiscreteEnv, EnvConfig
from gflownets.errors import ConfigError, DataError, TooManyStates
from gflownets.envs.limits import check_policy_inputs, check_seed

#: objectives of `Sets.objective_values`
N_OBJECTIVES = 2


@dataclasses.dataclass
class SetsConfig(EnvConfig):
    n_items: int = dataclasses.field(default=8, metadata={"help": "number of items n"})
    set_size: int = dataclasses.field(default=4, metadata={"help": "size k of a finished set (the largest, with "
                                                                     "--min-size)"})
    min_size: int | None = dataclasses.field(default=None, metadata={
        "help": "smallest finished set (default: set_size, every set has k items); below set_size, sets of "
                "different sizes have different numbers of construction orders (size!)"})
    reward_seed: int = dataclasses.field(default=0, metadata={"help": "seed of the default item values"})
    beta: float = dataclasses.field(default=2.0, metadata={"help": "inverse temperature of the default reward"})

    def validate(self) -> None:
        if self.n_items < 1:
            raise ConfigError(f"n_items must be >= 1, got {self.n_items}")
        if not 1 <= self.set_size <= self.n_items:
            raise ConfigError(f"set_size must be in [1, n_items={self.n_items}], got {self.set_size}")
        if self.min_size is not None and not 1 <= self.min_size <= self.set_size:
            raise ConfigError(f"min_size must be in [1, set_size={self.set_size}], got {self.min_size}")
        check_policy_inputs("sets", self.n_items, "one membership flag per item")
        check_seed("reward_seed", self.reward_seed)
        if not np.isfinite(self.beta):
            raise ConfigError(f"beta must be finite, got {self.beta}")


class Sets(DiscreteEnv):
    """State: membership vector (B, n) of 0/1. Action i < n adds item i; exit (action n) is
    allowed exactly when the set holds k items, and then it is the only action (with
    `min_size` m < k: exit is allowed from m items on, and adding until k). CSV rows list the
    items in increasing order, padded with -1 for sets smaller than k.

    Default reward: each item i has a value v_i ~ U(-1, 1) drawn from `reward_seed`, and
    log R(S) = beta * (sum_{i in S} v_i + sum_{i<j in S} v_i v_j / k), an additive score with
    pairwise interactions, so the target is not a product distribution.
    """

    name = "sets"
    Config = SetsConfig
    compilable = True

    def setup(self, config: SetsConfig) -> None:
        self.n_items, self.set_size = config.n_items, config.set_size
        self.min_size = config.set_size if config.min_size is None else config.min_size
        self.n_actions = self.n_items + 1
        self.state_shape = (self.n_items,)
        self.max_steps = self.set_size + 1
        self.feature_dim = self.n_items
        gen = torch.Generator().manual_seed(config.reward_seed)
        self.item_values = torch.rand(self.n_items, generator=gen, dtype=torch.float64) * 2 - 1
        # two more value vectors, after the first in the same stream: the objectives of `objective_values`
        self.objective_weights = torch.rand(N_OBJECTIVES, self.n_items, generator=gen, dtype=torch.float64)
        ordered = self.objective_weights.sort(dim=1).values
        self._objective_low = ordered[:, :self.set_size].sum(dim=1)
        self._objective_high = ordered[:, -self.set_size:].sum(dim=1)

    @property
    def initial_state(self) -> torch.Tensor:
        return torch.zeros(self.n_items, dtype=torch.long, device=self.device)

    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        size = states.sum(dim=-1, keepdim=True)
        return torch.cat([(states == 0) & (size < self.set_size), size >= self.min_size], dim=-1)

    def backward_mask(self, states: torch.Tensor) -> torch.Tensor:
        return states == 1

    def _step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return states + torch.nn.functional.one_hot(actions, self.n_items)

    def _backward_step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return states - torch.nn.functional.one_hot(actions, self.n_items)

    def default_log_reward(self, states: torch.Tensor) -> torch.Tensor:
        x = states.double()
        linear = x @ self.item_values
        pairwise = ((x @ self.item_values) ** 2 - x @ self.item_values ** 2) / 2
        return self.config.beta * (linear + pairwise / self.set_size)

    def features(self, states: torch.Tensor) -> torch.Tensor:
        return states.float()

    def objective_values(self, states: torch.Tensor) -> torch.Tensor:
        """Two objectives of a finished set S: f_k(S) = sum_{i in S} u_ki with item values
        u_k ~ U(0, 1) (from `reward_seed`), scaled to [0, 1] by the smallest and largest sums
        any k items reach (so each objective's best set scores 1); for preference conditioning."""
        totals = states.double() @ self.objective_weights.T.to(states.device)
        low, high = self._objective_low.to(states.device), self._objective_high.to(states.device)
        return ((totals - low) / (high - low).clamp(min=1e-12)).clamp(0.0, 1.0)

    def _enumerate(self) -> torch.Tensor:
        # counted size by size, up to the limit only: the full sum is minutes of bignums for large n
        n_states = 0
        for size in range(self.set_size + 1):
            n_states += math.comb(self.n_items, size)
            if n_states > self.max_enumerable_states:
                raise TooManyStates(f"sets: more than {self.max_enumerable_states} states (subsets of up to "
                                    f"{self.set_size} of {self.n_items} items), too many to enumerate")
        return super()._enumerate()

    @property
    def object_columns(self) -> list[str]:
        return [f"item{i}" for i in range(self.set_size)]

    def objects_to_rows(self, states: torch.Tensor) -> np.ndarray:
        """A finished set as its item indices in increasing order, padded with -1 to k columns."""
        members = states.cpu().numpy().astype(bool)
        sizes = members.sum(axis=1)
        if ((sizes < self.min_size) | (sizes > self.set_size)).any():
            raise ValueError(f"objects_to_rows takes finished sets of {self.min_size} to {self.set_size} items only")
        order = np.argsort(~members, axis=1, kind="stable")[:, :self.set_size]  # members first, in index order
        return np.where(np.arange(self.set_size) < sizes[:, None], order, -1).astype(np.int64)

    def objects_from_rows(self, rows: np.ndarray) -> torch.Tensor:
        if rows.ndim != 2 or rows.shape[1] != self.set_size:
            raise DataError(f"sets objects need {self.set_size} item columns, got {rows.shape[-1]}")
        present = rows >= 0
        after_padding = np.zeros_like(present)
        after_padding[:, 1:] = present[:, 1:] & ~present[:, :-1]  # an item after a -1
        bad = (rows >= self.n_items) | ((rows < 0) & (rows != -1)) | after_padding
        if bad.any():
            r, col = np.argwhere(bad)[0]
            raise DataError(f"row {r + 1}: item {rows[r, col]} is outside [0, {self.n_items - 1}] (sets smaller "
                            f"than {self.set_size} are padded with -1 at the end)")
        sizes = present.sum(axis=1)
        small = sizes < self.min_size
        if small.any():
            r = int(np.argmax(small))
            raise DataError(f"row {r + 1}: {int(sizes[r])} item(s), fewer than the smallest set ({self.min_size})")
        states = np.zeros((len(rows), self.n_items + 1), dtype=np.int64)  # the last column takes the padding
        np.put_along_axis(states, np.where(present, rows, self.n_items), 1, axis=1)
        states = states[:, :self.n_items]
        dup = states.sum(axis=1) != sizes
        if dup.any():
            r = int(np.argmax(dup))
            raise DataError(f"row {r + 1}: items {rows[r].tolist()} repeat an item")
        return torch.as_tensor(states, device=self.device)
