"""The log-partition variance loss: VarGrad (Richter et al. 2020) as a GFlowNet objective
(Zhang et al. 2023, "Robust Scheduling with GFlowNets", section 3.2; torchgfn's
LogPartitionVarianceGFlowNet).

Trajectory balance with log Z replaced by its batch estimate: for each trajectory b of the batch,

    zeta_b = sum log P_F(tau_b) - sum log P_B(tau_b) - log R(x_b),

and the loss is the variance of zeta over the batch, mean_b (zeta_b - mean zeta)^2: the mean
squared deviation (divided by B, not B - 1), as torchgfn's `(scores - scores.mean()).pow(2)`
reduced by a mean. At the optimum every trajectory has zeta = -log Z, so the loss is zero
there; its gradient is TB's with log Z set to the batch's own optimal value, -mean zeta. It
holds for any batch, on-policy or not (replayed or offline objects walked back with P_B): the
loss is zero exactly when zeta is the same on every trajectory of the batch.

No log Z is learned. The estimate log Z_hat = mean_b (log R(x_b) - sum log P_F + sum log P_B)
= -mean zeta of the latest batch is written, without gradient, into `policy.log_z`, so that
evaluation (`log_z`) reports it and checkpoints keep it. That parameter then gets no gradient
from this loss: the optimiser skips it (its `.grad` stays None), and only this write moves it.
On batches drawn from P_F itself its expectation is a lower bound of log Z (an ELBO); on
objects from the target walked back with P_B, an upper bound; both are exact at the optimum.
The trainer evaluates its moving average of the weights, so the log Z it reports is the
average of recent batch estimates.
"""

from __future__ import annotations

import torch

from gflownets.objectives.base import Objective, register
from gflownets.objectives.terms import step_terms
from gflownets.policies.base import Policy
from gflownets.sampling.trajectories import Trajectories


def log_partition_variance(policy: Policy, batch: Trajectories) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, log Z_hat): the batch variance of zeta = sum log P_F - sum log P_B - log R(x), and
    the batch's log Z estimate -mean zeta (detached)."""
    steps = step_terms(policy, batch)
    log_ratio = steps.per_trajectory(steps.log_pf - steps.log_pb_into, len(batch))
    zeta = log_ratio - batch.log_rewards.to(log_ratio.dtype)
    centre = zeta.mean()
    return (zeta - centre).pow(2).mean(), -centre.detach()


@register
class LogPartitionVariance(Objective):
    name = "vargrad"
    summary = ("log-partition variance (VarGrad): TB with log Z replaced by its batch estimate "
               "(Richter et al. 2020; Zhang et al. 2023)")

    def loss(self, policy: Policy, batch: Trajectories) -> torch.Tensor:
        loss, log_z = log_partition_variance(policy, batch)
        with torch.no_grad():
            policy.log_z.copy_(log_z.to(policy.log_z.dtype))
        return loss
