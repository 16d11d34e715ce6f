"""Baselines: samplers that are not GFlowNets (random search, MCMC), behind one interface that counts reward calls."""

from gflownets.baselines.samplers import Baseline, MetropolisSampler, RandomSampler, has_mutation

__all__ = ["Baseline", "RandomSampler", "MetropolisSampler", "has_mutation"]
