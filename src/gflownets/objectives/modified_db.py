"""Modified detailed balance (Deleu et al. 2022, DAG-GFlowNet, eq. 6) for environments where
every state is terminal. With F(s) P_F(exit | s) = R(s) at every state, detailed balance on
s -> s' becomes, without any state flow,

    log R(s') + log P_B(s | s') + log P_F(exit | s) = log R(s) + log P_F(s' | s) + log P_F(exit | s').

The loss is the mean over the batch's moves (exit steps carry no constraint) of the squared
difference. log R(s') - log R(s) comes from `env.log_reward_change`, the local "delta score"
where the environment has one. As in DAG-GFlowNet, a target network (a Polyak-averaged copy
of the policy, without gradient) may supply log P_F(exit | s'), the side that bootstraps.
"""

from __future__ import annotations

import torch

from gflownets.errors import ConfigError

from gflownets.objectives.base import Objective, register
from gflownets.policies.base import Policy
from gflownets.policies.distributions import masked_log_softmax
from gflownets.sampling.trajectories import Trajectories


def modified_detailed_balance(policy: Policy, batch: Trajectories, target: Policy | None = None) -> torch.Tensor:
    env = policy.env
    valid = batch.valid
    states = batch.states[valid]
    forward_mask = env.forward_mask(states)
    if not forward_mask[:, -1].all():
        raise ConfigError(_every_state_terminal(env))
    out = policy(states)
    log_pf = masked_log_softmax(out.forward_logits, forward_mask)

    # flat position of each valid (trajectory, step); moves are the non-exit steps
    position = torch.full(valid.shape, -1, dtype=torch.long, device=valid.device)
    position[valid] = torch.arange(states.shape[0], device=valid.device)
    moves = valid & (batch.actions != env.exit_action) & (batch.actions >= 0)
    if not moves.any():
        return out.forward_logits.sum() * 0.0
    here = position[moves]
    there = position[:, 1:][moves[:, :-1]] if moves.shape[1] > 1 else here[:0]
    actions = batch.actions[moves]

    log_forward = log_pf[here, actions]
    log_exit_here = log_pf[here, -1]
    log_pb_all = masked_log_softmax(out.backward_logits[there], env.backward_mask(states[there]))
    log_backward = log_pb_all.gather(1, actions[:, None]).squeeze(1)
    if target is None:
        log_exit_there = log_pf[there, -1]
    else:
        with torch.no_grad():
            logits = target(states[there]).forward_logits
            log_exit_there = masked_log_softmax(logits, forward_mask[there])[:, -1]
    delta = env.log_reward_change(states[here], actions, states[there]).to(log_forward.dtype)
    residual = delta + log_backward + log_exit_here - log_forward - log_exit_there
    return residual.pow(2).mean()


@torch.no_grad()
def modified_db_log_z(policy: Policy) -> torch.Tensor:
    """Every state is terminal, so P_F(exit | s0) = R(s0) / Z: log Z = log R(s0) - log P_F(exit | s0)."""
    env = policy.env
    s0 = env.initial_states(1)
    log_exit = masked_log_softmax(policy(s0).forward_logits, env.forward_mask(s0))[0, -1]
    return env.log_reward(s0)[0].to(log_exit.dtype) - log_exit


@register
class ModifiedDetailedBalance(Objective):
    name = "mdb"
    summary = "modified detailed balance, every state terminal (Deleu et al. 2022; option target_decay)"
    uses_target = True

    def check_env(self, env) -> None:
        super().check_env(env)
        if not bool(env.forward_mask(env.initial_states(1))[:, -1].all()):
            raise ConfigError(_every_state_terminal(env))

    def loss(self, policy: Policy, batch: Trajectories) -> torch.Tensor:
        return modified_detailed_balance(policy, batch, target=self.target)

    def log_z(self, policy: Policy) -> float:
        return float(modified_db_log_z(policy))


def _every_state_terminal(env) -> str:
    return (f"mdb (modified detailed balance) needs every state of {env.name} to be terminal (exit always "
            "allowed); use db, tb or subtb")
