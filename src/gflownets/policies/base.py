"""What every policy returns: forward logits, backward logits and a log state flow per state."""

from __future__ import annotations

import functools
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


class Policy(nn.Module):
    """A forward/backward policy with a learned log partition function `log_z`."""

    def __init__(self, env: DiscreteEnv, backward: str = "learned"):
        super().__init__()
        if backward not in ("learned", "uniform"):
            raise ValueError(f"backward policy must be 'learned' or 'uniform', got {backward!r}")
        self.env = env
        self.backward = backward
        self.log_z = nn.Parameter(torch.zeros(()))

    def forward(self, states: torch.Tensor) -> PolicyOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_logits(self, states: torch.Tensor) -> torch.Tensor:
        """Only the P_F logits: what a rollout step needs (policies may skip the other heads)."""
        return self(states).forward_logits

    def rollout_outputs(self, states: torch.Tensor) -> tuple[PolicyOutput, tuple[torch.Tensor, ...]]:
        """The outputs for a rollout step, and what of this forward pass the policy can `replay`
        later (one row per state). A rollout has already run the network on every state a loss
        will evaluate; keeping its activations saves the loss that second forward pass. The
        default keeps nothing (the loss then runs the network again)."""
        return self(states), ()

    def replay(self, kept: tuple[torch.Tensor, ...], rows: torch.Tensor) -> PolicyOutput:
        """The outputs on the given rows of what `rollout_outputs` kept, differentiable with
        respect to the parameters as if the network had run on those states now. Only called
        for policies whose `rollout_outputs` keeps something, and only while the weights are
        the ones that made it (`policies.kept.Activations`)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no activations to replay")

    def replay_gradients(self, kept: tuple[torch.Tensor, ...], rows: torch.Tensor, d_forward_logits: torch.Tensor,
                         d_backward_logits: torch.Tensor) -> dict[nn.Parameter, torch.Tensor] | None:
        """The backward pass of `replay` without autograd: the gradients, with respect to every
        parameter but `log_z`, of sum over the rows of <d_forward_logits, forward logits> +
        <d_backward_logits, backward logits>. For losses with a closed-form derivative
        (`objectives.CLOSED_FORM`): autograd's bookkeeping costs as much as the maths of a
        network this small. None (the default): not available, use autograd."""
        return None

    def weights_version(self) -> tuple[int, ...]:
        """Autograd's in-place version counter of every parameter: it changes when any weight
        is written (optimizers, `load_state_dict`), so kept activations can tell they are stale."""
        return tuple(p._version for p in self.parameter_list)

    @functools.cached_property
    def parameter_list(self) -> list[nn.Parameter]:
        """`parameters()`, listed once: per-batch users (version checks, Polyak averaging)
        would otherwise walk the modules on every call, which costs more than their work."""
        return list(self.parameters())

    def flow_parameters(self) -> list[nn.Parameter]:
        """Parameters trained with the log-Z learning rate."""
        return [self.log_z]

    def network_parameters(self) -> list[nn.Parameter]:
        ids = {id(p) for p in self.flow_parameters()}
        return [p for p in self.parameters() if id(p) not in ids]
