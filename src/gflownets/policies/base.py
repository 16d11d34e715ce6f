"""What every policy returns: forward logits, backward logits and a log state flow per state."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from gflownets.envs.base import DiscreteEnv


class PolicyOutput(NamedTuple):
    #: (B, n_actions) unmasked logits of P_F; for flow matching, log edge flows
    forward_logits: torch.Tensor
    #: (B, n_actions - 1) unmasked logits of P_B (zeros for the uniform backward policy)
    backward_logits: torch.Tensor
    #: (B,) log state flow log F(s) (zeros when the policy has no flow head)
    log_flow: torch.Tensor


def split_heads(out: torch.Tensor, n_forward: int, n_backward: int, n_flow: int, n_actions: int) -> PolicyOutput:
    """One (B, n_forward + n_backward + n_flow) output of every head as a PolicyOutput (columns:
    forward, backward, flow); a missing backward head is the uniform P_B (zero logits), a
    missing flow head log F = 0."""
    forward_logits = out[:, :n_forward]
    backward_logits = (out[:, n_forward:n_forward + n_backward] if n_backward
                       else out.new_zeros(out.shape[0], n_actions - 1))
    log_flow = out[:, -1] if n_flow else out.new_zeros(out.shape[0])
    return PolicyOutput(forward_logits, backward_logits, log_flow)


class Policy(nn.Module):
    """A forward/backward policy with a learned log partition function `log_z`."""

    def __init__(self, env: DiscreteEnv, backward: str = "learned"):
        super().__init__()
        if backward not in ("learned", "uniform"):
            raise ValueError(f"backward policy must be 'learned' or 'uniform', got {backward!r}")
        self.env = env
        self.backward = backward
        self.log_z = nn.Parameter(torch.zeros((), device=env.device))
        # a conditional environment's log Z(c): linear in a fixed code of the context (piecewise
        # linear in beta, additive over preference weights), trained at the log-Z learning rate
        self.log_z_head = nn.Linear(env.log_z_code_width, 1, device=env.device) if env.conditional else None
        if self.log_z_head is not None:
            nn.init.zeros_(self.log_z_head.weight)
            nn.init.zeros_(self.log_z_head.bias)

    def forward(self, states: torch.Tensor) -> PolicyOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_logits(self, states: torch.Tensor) -> torch.Tensor:
        """Only the P_F logits: what a rollout step needs (policies may skip the other heads)."""
        return self(states).forward_logits

    def context_log_z(self, s0: torch.Tensor) -> torch.Tensor:
        """(B,) log Z(c) of conditional GFlowNets, for the contexts of the initial states `s0`."""
        return self.log_z_head(self.env.log_z_code(s0)).squeeze(-1)

    def flow_parameters(self) -> list[nn.Parameter]:
        """Parameters trained with the log-Z learning rate."""
        return [self.log_z, *(self.log_z_head.parameters() if self.log_z_head is not None else [])]

    def network_parameters(self) -> list[nn.Parameter]:
        ids = {id(p) for p in self.flow_parameters()}
        return [p for p in self.parameters() if id(p) not in ids]
