"""Masked action distributions: log-probabilities, exploration mixtures and sampling.

Forbidden actions get a large finite negative logit rather than -inf: a row where every
action is forbidden (the backward distribution at s0) then stays finite, so no NaN can leak
into gradients through a softmax that is computed but never used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from gflownets.envs.base import DiscreteEnv

#: logit given to forbidden actions; exp() of it underflows to exactly 0 next to real logits
MASKED_LOGIT = -1e9


def masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Log-probabilities over allowed actions; entries of forbidden actions are meaningless."""
    return logits.masked_fill(~mask, MASKED_LOGIT).log_softmax(dim=-1)


def move_log_probs(env: DiscreteEnv, forward_logits: torch.Tensor, backward_logits: torch.Tensor,
                   states: torch.Tensor, actions: torch.Tensor, previous: torch.Tensor,
                   first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row by row: log P_F(action | state), and log P_B(previous | state) of the move into the
    state (0 where `first`: s0 has no move into it)."""
    log_pf = masked_log_softmax(forward_logits, env.forward_mask(states)).gather(1, actions[:, None]).squeeze(1)
    log_pb = masked_log_softmax(backward_logits, env.backward_mask(states)).gather(1, previous[:, None]).squeeze(1)
    return log_pf, log_pb.masked_fill(first, 0.0)


def exploration_probs(logits: torch.Tensor, mask: torch.Tensor, gamma: float = 0.0,
                      temperature: float = 1.0) -> torch.Tensor:
    """The sampling distribution: softmax(logits / temperature) over allowed actions, mixed
    with the uniform distribution over allowed actions with weight gamma (the tutorial's
    exploration; epsilon-uniform exploration is the same mixture)."""
    if temperature != 1.0:
        logits = logits / temperature
    probs = torch.where(mask, logits, MASKED_LOGIT).softmax(dim=-1)
    if gamma > 0:
        uniform = mask / mask.sum(dim=-1, keepdim=True).clamp(min=1)
        probs = (1 - gamma) * probs + gamma * uniform
    return probs


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row by the exponential race argmax(p / E), E ~ Exp(1): exactly the
    categorical distribution, and an action of probability 0 can never win. The draw is made on
    the device of `probs`, where `generator` (if given) must be too."""
    race = torch.empty_like(probs).exponential_(generator=generator)
    return race.reciprocal_().mul_(probs).argmax(dim=-1)
