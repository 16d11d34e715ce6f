"""Flow matching (Bengio et al. 2021): the forward logits are log edge flows log F(s -> s'),
the exit edge's flow must equal R(x), and at every visited state s != s0 the inflow from all
its parents must equal the outflow to all its children and the sink."""

from __future__ import annotations

import torch

from gflownets.objectives.base import Objective, register
from gflownets.policies.base import Policy
from gflownets.policies.distributions import MASKED_LOGIT
from gflownets.sampling.trajectories import Trajectories


def flow_matching(policy: Policy, batch: Trajectories) -> torch.Tensor:
    env = policy.env
    valid = batch.valid
    states = batch.states[valid]
    step_index = torch.arange(valid.shape[1], device=valid.device).expand_as(valid)[valid]
    out = policy(states)
    edge_logits = out.forward_logits.masked_fill(~env.forward_mask(states), MASKED_LOGIT)
    outflow = edge_logits.logsumexp(dim=-1)

    inner = step_index > 0
    children = states[inner]
    rows, actions = env.backward_mask(children).nonzero(as_tuple=True)
    parents = env._backward_step(children[rows], actions)
    parent_edges = policy(parents).forward_logits.gather(1, actions[:, None]).squeeze(1)
    incoming = parent_edges.new_full((children.shape[0], env.n_actions - 1), MASKED_LOGIT)
    incoming = incoming.index_put((rows, actions), parent_edges)
    inflow = incoming.logsumexp(dim=-1)

    last = batch.lengths.cumsum(0) - 1
    exit_flow = out.forward_logits[last, env.exit_action]
    log_rewards = batch.log_rewards.to(exit_flow.dtype)
    residuals = torch.cat([inflow - outflow[inner], exit_flow - log_rewards])
    return residuals.pow(2).mean()


@torch.no_grad()
def flow_matching_log_z(policy: Policy, s0: torch.Tensor | None = None) -> torch.Tensor:
    """Under flow matching, Z is the total outflow of s0 (of a conditional environment, the s0
    of one context: `s0`, a (1, ...) state)."""
    env = policy.env
    s0 = env.initial_states(1) if s0 is None else s0
    logits = policy(s0).forward_logits.masked_fill(~env.forward_mask(s0), MASKED_LOGIT)
    return logits.logsumexp(dim=-1)[0]


@register
class FlowMatching(Objective):
    name = "fm"
    summary = "flow matching of edge flows (Bengio et al. 2021)"
    conditionable = True

    def loss(self, policy: Policy, batch: Trajectories) -> torch.Tensor:
        return flow_matching(policy, batch)

    def log_z(self, policy: Policy) -> float:
        return float("nan") if policy.env.conditional else float(flow_matching_log_z(policy))

    def log_z_at(self, policy: Policy, s0: torch.Tensor) -> float:
        return float(flow_matching_log_z(policy, s0))
