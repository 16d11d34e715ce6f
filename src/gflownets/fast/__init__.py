"""The `--compile` fast path, all in one place: the on-policy rollout as one compiled graph of
fixed shape (`rollout`), and, for trajectory balance and modified detailed balance on our MLP,
the loss's gradients in closed form from what that rollout kept (`closed_form`, `mlp`); and
which path a run takes when its config does not say (`auto`). Nothing outside this package
knows it exists: the trainer swaps in its batch source and, where it applies, its gradient step."""

from __future__ import annotations

from collections.abc import Callable

import torch

from gflownets.fast import mlp
from gflownets.fast.closed_form import (KeptRollout, modified_detailed_balance_gradients,
                                         trajectory_balance_gradients)
from gflownets.fast.rollout import CompiledSampler, rollout_fixed_steps
from gflownets.policies.base import Policy

#: objectives with a closed-form gradient step, and whether the rollout must keep its exit terms
CLOSED_FORMS = {"tb": (trajectory_balance_gradients, False), "mdb": (modified_detailed_balance_gradients, True)}


class ClosedFormStep:
    """The gradient step of an objective in `CLOSED_FORMS` on a compiled MLP rollout: sets every
    parameter's `.grad` (as `zero_grad` and `backward` would) and returns the loss."""

    def __init__(self, sampler: CompiledSampler, policy: Policy, gradients: Callable):
        self.sampler = sampler
        self.policy = policy
        self.gradients = gradients
        self.parameters = list(policy.parameters())

    def __call__(self, batch: object) -> torch.Tensor:
        if batch is not self.sampler.last_batch or self.sampler.last_kept is None:
            raise RuntimeError("a closed-form step takes the batch its compiled sampler has just made")
        loss, gradients = self.gradients(self.policy, batch, self.sampler.last_kept)
        for parameter in self.parameters:  # every one, as zero_grad would
            parameter.grad = gradients.get(parameter)
        self.sampler.last_kept = None  # used once: the weights are about to change
        return loss


def compiled_pieces(env, policy: Policy, batch_size: int, gamma: float, temperature: float,
                    objective: str, on_policy_only: bool, observe: Callable | None = None,
                    target_network: bool = False) -> tuple[CompiledSampler, ClosedFormStep | None]:
    """The compiled on-policy source and, where it applies (TB, or modified DB without a target
    network; our MLP; nothing but on-policy batches; one log Z, not a function of a context), the
    closed-form gradient step; elsewhere the rollout keeps nothing."""
    closed_form = (objective in CLOSED_FORMS and on_policy_only and mlp.supports(policy) and not env.conditional
                   and not (objective == "mdb" and target_network))
    gradients, exits = CLOSED_FORMS.get(objective, (None, False))
    sampler = CompiledSampler(env, policy, batch_size, gamma, temperature, keep=closed_form, observe=observe,
                              exits=exits)
    return sampler, (ClosedFormStep(sampler, policy, gradients) if closed_form else None)


__all__ = ["CLOSED_FORMS", "ClosedFormStep", "CompiledSampler", "KeptRollout", "compiled_pieces",
           "modified_detailed_balance_gradients", "rollout_fixed_steps", "trajectory_balance_gradients"]
