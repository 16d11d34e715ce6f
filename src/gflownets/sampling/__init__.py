"""Sampling: padded trajectory batches, forward rollouts from s0 and backward walks from objects,
and Metropolis chains over finished objects."""

from gflownets.sampling.metropolis import MetropolisStep, Proposal, metropolis_hastings, metropolis_step
from gflownets.sampling.trajectories import PAD, Trajectories, sample_backward, sample_forward

__all__ = ["PAD", "MetropolisStep", "Proposal", "Trajectories", "metropolis_hastings", "metropolis_step",
           "sample_backward", "sample_forward"]
