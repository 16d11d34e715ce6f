"""Sampling: padded trajectory batches, forward rollouts from s0 and backward walks from objects."""

from gflownets.sampling.trajectories import PAD, Trajectories, sample_backward, sample_forward

__all__ = ["PAD", "Trajectories", "sample_backward", "sample_forward"]
