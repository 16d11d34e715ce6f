"""A lookup-table policy over an enumerable state space: exact optimal flows can be written
into it (tests of the objectives), and it is a strong baseline on small environments."""

from __future__ import annotations

import torch
from torch import nn

from gflownets.envs.base import DiscreteEnv
from gflownets.envs.indexing import StateIndex
from gflownets.errors import ConfigError, TooManyStates
from gflownets.limits import require_memory
from gflownets.policies.base import Policy, PolicyOutput


class TabularPolicy(Policy):
    """One row of logits and a log flow per enumerated state. The tables are made on the
    environment's device; `lookup` (numpy, on the CPU) takes states on any device."""

    def __init__(self, env: DiscreteEnv, backward: str = "learned", dtype=torch.float32):
        super().__init__(env, backward)
        try:
            states = env.enumerate_states()
        except TooManyStates as err:
            raise ConfigError(f"a tabular policy has a row per state, so it needs an enumerable environment: "
                              f"{err} (use the mlp policy)") from None
        n = len(states)
        device = env.device
        # its tables (about 2 n_actions values per state), with the gradients and Adam's two moments
        require_memory(f"a tabular policy over {n} states", 4 * n * 2 * env.n_actions * dtype.itemsize, device,
                       "use the mlp policy")
        self.index = StateIndex(states)
        self.forward_table = nn.Parameter(torch.zeros(n, env.n_actions, dtype=dtype, device=device))
        self.backward_table = nn.Parameter(torch.zeros(n, env.n_actions - 1, dtype=dtype, device=device),
                                           requires_grad=backward == "learned")
        self.flow_table = nn.Parameter(torch.zeros(n, dtype=dtype, device=device))
        self.log_z.data = self.log_z.data.to(dtype=dtype, device=device)

    def state_ids(self, states: torch.Tensor) -> torch.Tensor:
        ids = self.index.lookup(states)
        if (ids < 0).any():
            bad = states[ids < 0][0].tolist()
            raise ValueError(f"state {bad} is not in the enumerated state space of {self.env.name}")
        return ids

    def forward(self, states: torch.Tensor) -> PolicyOutput:
        ids = self.state_ids(states).to(self.forward_table.device)
        return PolicyOutput(self.forward_table[ids], self.backward_table[ids], self.flow_table[ids])
