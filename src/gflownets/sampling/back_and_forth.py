"""The back-and-forth proposal of energy-based GFlowNets (Zhang et al. 2022): from a finished
object x, undo k steps with P_B, redo k steps with P_F, and accept the new object x' by
Metropolis-Hastings. The move is an MH step on the path space, so with any policy it leaves the
reward distribution invariant; the better the policy matches the reward, the more it accepts,
and a large k lets the chain jump between modes that local moves never connect.

With x = u_0 -> u_1 -> ... -> u_k = s the backward walk (actions b_j) and s = v_0 -> ... -> v_k = x'
the forward walk (actions f_j),

    log q(x -> x') = sum_j log P_B(b_j | u_j) + sum_j log P_F(f_j | v_j),
    log q(x' -> x) = sum_j log P_B(f_j | v_{j+1}) + sum_j log P_F(b_j | u_{j+1}),

the reverse move walking back along the forward path and forward along the backward one, and
x' is accepted by `metropolis.metropolis_hastings`: with probability min(1, R(x') q(x' -> x) /
(R(x) q(x -> x'))). Forward steps never exit (exit is masked), so x' is as many steps from s0
as x."""

from __future__ import annotations

from typing import NamedTuple

import torch

from gflownets.envs.base import DiscreteEnv
from gflownets.policies.base import Policy
from gflownets.policies.distributions import masked_log_softmax, sample_categorical


class BackAndForth(NamedTuple):
    proposals: torch.Tensor  # (n, ...) x', the objects after k steps back and k forth
    log_ratio: torch.Tensor  # (n,) float64 log q(x' -> x) - log q(x -> x')


def _chosen(log_probs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    return log_probs.gather(1, actions[:, None]).squeeze(1).double()


@torch.no_grad()
def back_and_forth(env: DiscreteEnv, policy: Policy, objects: torch.Tensor, k: int,
                   generator: torch.Generator | None = None) -> BackAndForth:
    """Propose x' for each object: k backward steps with P_B, then k forward steps with P_F
    (exit masked), both sampled without exploration. 2k + 1 batched policy calls."""
    if k < 1:
        raise ValueError(f"back-and-forth needs k >= 1 steps, got {k}")
    states = objects
    log_q_forth = torch.zeros(len(objects), dtype=torch.float64, device=objects.device)
    log_q_back = torch.zeros_like(log_q_forth)
    out = policy(states)
    for _ in range(k):
        mask = env.backward_mask(states)
        if not mask.any(dim=1).all():
            raise ValueError(f"{env.name}: an object is fewer than k={k} steps from s0; back-and-forth "
                             "needs every object at least k steps deep")
        log_pb = masked_log_softmax(out.backward_logits, mask)
        actions = sample_categorical(log_pb.exp(), generator)
        log_q_forth += _chosen(log_pb, actions)
        states = env._backward_step(states, actions)
        out = policy(states)
        log_q_back += _chosen(masked_log_softmax(out.forward_logits, _moves(env, states)), actions)
    for _ in range(k):
        mask = _moves(env, states)
        if not mask.any(dim=1).all():
            raise ValueError(f"{env.name}: a state has no move but exit within the k={k} forward steps")
        log_pf = masked_log_softmax(out.forward_logits, mask)
        actions = sample_categorical(log_pf.exp(), generator)
        log_q_forth += _chosen(log_pf, actions)
        states = env._step(states, actions)
        out = policy(states)
        log_q_back += _chosen(masked_log_softmax(out.backward_logits, env.backward_mask(states)), actions)
    return BackAndForth(states, log_q_back - log_q_forth)


def _moves(env: DiscreteEnv, states: torch.Tensor) -> torch.Tensor:
    """The forward mask without exit: the moves of the forward half of the proposal."""
    mask = env.forward_mask(states).clone()
    mask[:, env.exit_action] = False
    return mask
