"""Forward-looking detailed balance (Pan et al. 2023, "Better Training of GFlowNets with Local
Credit and Incomplete Trajectories", FL-DB).

Where the reward is defined on partial states too (an energy whose terms accrue along the
trajectory), the state flow is written as log F(s) = log F~(s) + log R~(s), with R~(s) =
`env.intermediate_log_reward(s)`, and the state-flow head learns the *forward-looking* flow
log F~(s): what is still to come from s. Detailed balance on a move s -> s' then reads

    log F~(s) + log R~(s) + log P_F(s'|s) = log F~(s') + log R~(s') + log P_B(s|s'),

so each move is credited with its own reward change log R~(s') - log R~(s) at once instead of
waiting for the end. The ends of a trajectory, in this library's layout (`TrajectoryTerms`):

- s0: its flow is the learned log Z itself (F(s0) = Z, as in DB), not reparametrised, so
  `log_z` is DB's estimate;
- exit s_n -> sink: the sink's point is log R(x), with P_B = 1, as in DB. In the paper's terms,
  F~(sink) = 1 and the sink's accrued reward is the full R(x): log F~(s_n) + log R~(s_n) +
  log P_F(exit|s_n) = log R(x). Where every object ends with an exit only and R~(x) = R(x),
  this is the paper's F~(x) = 1 at terminal states.

The reparametrisation leaves the fixed point unchanged, whatever R~ is: the optimum has
F~(s) = F(s) / R~(s) with the same P_F, P_B and Z as DB's (tests/test_objectives.py and
tests/test_new_objectives.py write it from the exact flows). With R~ = 0 everywhere (an
environment with a user reward function, by default) FL-DB is DB.

Against torchgfn: its DBGFlowNet(forward_looking=True) adds log R(s) to the flow of each
transition's source state only (s0 included, whose flow is an estimator output there) and not
to the next state's; here both states of a move carry their R~, as the paper's equation has it,
and s0 keeps log Z.
"""

from __future__ import annotations

import torch

from gflownets.envs.base import DiscreteEnv
from gflownets.objectives.base import Objective, register
from gflownets.objectives.terms import trajectory_terms
from gflownets.policies.base import Policy
from gflownets.sampling.trajectories import Trajectories


def forward_looking_log_flow(env: DiscreteEnv, states: torch.Tensor, log_flow: torch.Tensor) -> torch.Tensor:
    """The forward-looking log F~(s) = log F(s) - log R~(s) of states whose log flow is
    `log_flow`: what the state-flow head holds at FL-DB's optimum (in `log_flow`'s dtype)."""
    return log_flow - env.intermediate_log_reward(states).to(log_flow.dtype)


def forward_looking_detailed_balance(policy: Policy, batch: Trajectories) -> torch.Tensor:
    """mean over the batch's transitions s -> s' (exit steps included) of the squared FL-DB
    residual (log F~(s) + log R~(s) + log P_F(s'|s) - log F~(s') - log R~(s') - log P_B(s|s')),
    with log Z at s0 and log R(x) after exit."""
    terms = trajectory_terms(policy, batch)
    valid = terms.valid
    n, width = valid.shape
    # R~ of every visited state s_k at its point k, 1 <= k <= n; s0 (k = 0) keeps log Z and the
    # sink (k = n + 1, past the valid steps) keeps log R(x)
    inner = valid.clone()
    inner[:, 0] = False
    accrued = torch.zeros(n, width + 1, dtype=terms.log_points.dtype, device=valid.device)
    accrued[:, :width][inner] = policy.env.intermediate_log_reward(batch.states[inner]).to(accrued.dtype)
    log_points = terms.log_points + accrued
    residual = log_points[:, :-1] + terms.log_pf - terms.log_pb - log_points[:, 1:]
    return residual[valid].pow(2).mean()


@register
class ForwardLookingDetailedBalance(Objective):
    name = "fldb"
    summary = ("forward-looking detailed balance: the flow head learns F(s) / R~(s), R~ the reward "
               "of partial states (Pan et al. 2023)")
    uses_state_flow = True

    def loss(self, policy: Policy, batch: Trajectories) -> torch.Tensor:
        return forward_looking_detailed_balance(policy, batch)
