"""What a rollout keeps of the policy's forward passes, so that the loss need not run the
network again on the states the rollout has just visited.

A compiled rollout (`sampling/compiled.py`) evaluates the policy on every state of its batch
anyway. It keeps the policy's activations (`Policy.rollout_outputs`), and, while it is in one
graph, also each step's log P_F and log P_B and their derivatives with respect to the logits
(by `torch.func.vjp` of `move_log_probs`, the same function the eager loss uses). The loss then
gets the same terms with the same gradients from a few row selections: autograd chains the
kept derivatives into the policy's `replay`, whose backward pass is the network's own.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from gflownets.policies.base import Policy, PolicyOutput


@dataclasses.dataclass
class Activations:
    """What a rollout kept on a batch of n trajectories padded to T steps, as tensors of T * n
    rows in step-major order (row t * n + b: step t of trajectory b, as a rollout makes them):

    - `kept`: the policy's activations (`Policy.rollout_outputs`);
    - `log_pf`, `log_pb`: log P_F(a_t | s_t) and log P_B(a_{t-1} | s_t) (0 at t = 0 and past
      the end), and `d_log_pf`, `d_log_pb` their derivatives with respect to the forward and
      the backward logits of the same row;
    - `valid`: which rows are steps; `log_ratio_sums`: (n,) sum over each trajectory of
      log P_F - log P_B;
    - the weights' versions at the time (`Policy.weights_version`): once the weights have
      changed, the activations are stale and ignored.
    """

    kept: tuple[torch.Tensor, ...]
    log_pf: torch.Tensor
    log_pb: torch.Tensor
    d_log_pf: torch.Tensor
    d_log_pb: torch.Tensor
    valid: torch.Tensor
    log_ratio_sums: torch.Tensor
    policy_id: int
    versions: tuple[int, ...]

    @classmethod
    def of(cls, policy: Policy, kept: tuple[torch.Tensor, ...],
           log_probs: tuple[torch.Tensor, ...]) -> Activations | None:
        """From what `rollout_fixed_steps` returns; None when the policy kept nothing."""
        return cls(kept, *log_probs, id(policy), policy.weights_version()) if kept else None

    def usable_by(self, policy: Policy) -> bool:
        """Made by this policy with its current weights."""
        return id(policy) == self.policy_id and policy.weights_version() == self.versions

    def replay(self, policy: Policy, flat: torch.Tensor) -> tuple[PolicyOutput, torch.Tensor, torch.Tensor] | None:
        """(outputs, log P_F, log P_B into the state) at the steps `flat` (positions b * T + t of
        the flattened (n, T) batch), differentiable with respect to the policy's parameters; None
        when these activations were made by another policy or with other weights."""
        if not self.usable_by(policy):
            return None
        n = len(self.log_ratio_sums)
        steps = len(self.valid) // n
        rows = flat.remainder(steps).mul_(n).add_(flat.div(steps, rounding_mode="floor"))
        out = policy.replay(self.kept, rows)
        log_pf, log_pb = _KeptLogProbs.apply(out.forward_logits, out.backward_logits, rows,
                                             self.log_pf, self.log_pb, self.d_log_pf, self.d_log_pb)
        return out, log_pf, log_pb

    def log_ratio_sum(self, policy: Policy) -> torch.Tensor | None:
        """(n,) sum over each trajectory of log P_F - log P_B, differentiable (what trajectory
        balance needs, with a few operations instead of per-step terms); None when stale."""
        if not self.usable_by(policy):
            return None
        rows = self.valid.nonzero().squeeze(1)
        out = policy.replay(self.kept, rows)
        return _KeptLogRatioSums.apply(out.forward_logits, out.backward_logits, rows, self.log_ratio_sums,
                                       self.d_log_pf, self.d_log_pb)

    def log_ratio_sum_gradients(self, policy: Policy, d_sums: torch.Tensor) -> dict[nn.Parameter, torch.Tensor] | None:
        """The gradients of sum_b d_sums[b] * `log_ratio_sum`[b] with respect to the policy's
        network parameters, without autograd (`Policy.replay_gradients`); None when stale or when
        the policy has no such backward pass."""
        if not self.usable_by(policy):
            return None
        rows = self.valid.nonzero().squeeze(1)
        d_log_pf, d_log_pb = self.d_log_pf.index_select(0, rows), self.d_log_pb.index_select(0, rows)
        d_forward, d_backward = _logit_gradients(d_sums, rows.remainder(len(d_sums)), d_log_pf, d_log_pb)
        return policy.replay_gradients(self.kept, rows, d_forward, d_backward)


def _logit_gradients(d_sums: torch.Tensor, trajectory: torch.Tensor, d_log_pf: torch.Tensor,
                     d_log_pb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of sum_b d_sums[b] * (log-ratio sum of trajectory b) with respect to each
    step's forward and backward logits: its trajectory's d_sums times the step's derivatives."""
    per_step = d_sums.index_select(0, trajectory)[:, None]
    return per_step * d_log_pf, -per_step * d_log_pb


class _KeptLogProbs(torch.autograd.Function):
    """The kept log-probabilities of the selected rows, as functions of the logits: backward
    scales each row's kept derivative by the incoming gradient (each log-probability depends
    on its own row's logits only)."""

    @staticmethod
    def forward(ctx, forward_logits: torch.Tensor, backward_logits: torch.Tensor, rows: torch.Tensor,
                log_pf: torch.Tensor, log_pb: torch.Tensor, d_log_pf: torch.Tensor,
                d_log_pb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.save_for_backward(d_log_pf.index_select(0, rows), d_log_pb.index_select(0, rows))
        return log_pf.index_select(0, rows), log_pb.index_select(0, rows)

    @staticmethod
    def backward(ctx, grad_pf: torch.Tensor, grad_pb: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        d_log_pf, d_log_pb = ctx.saved_tensors
        return grad_pf[:, None] * d_log_pf, grad_pb[:, None] * d_log_pb, None, None, None, None, None


class _KeptLogRatioSums(torch.autograd.Function):
    """The kept per-trajectory sums of log P_F - log P_B as functions of the selected rows'
    logits: a step's row gets its trajectory's incoming gradient times the row's derivatives."""

    @staticmethod
    def forward(ctx, forward_logits: torch.Tensor, backward_logits: torch.Tensor, rows: torch.Tensor,
                log_ratio_sums: torch.Tensor, d_log_pf: torch.Tensor, d_log_pb: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(rows.remainder(len(log_ratio_sums)), d_log_pf.index_select(0, rows),
                              d_log_pb.index_select(0, rows))
        return log_ratio_sums.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return *_logit_gradients(grad, *ctx.saved_tensors), None, None, None, None
