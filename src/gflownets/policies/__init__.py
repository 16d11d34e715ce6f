"""Policies: networks mapping states to forward/backward logits, state flows and log Z."""

from gflownets.policies.base import Policy, PolicyOutput
from gflownets.policies.distributions import (exploration_probs, masked_log_softmax,
                                              sample_categorical)
from gflownets.policies.graph import GraphPolicy
from gflownets.policies.mlp import MLPPolicy
from gflownets.policies.sequence import ConvSequencePolicy
from gflownets.policies.tabular import TabularPolicy
from gflownets.policies.uniform import UniformPolicy

__all__ = ["Policy", "PolicyOutput", "ConvSequencePolicy", "GraphPolicy", "MLPPolicy", "TabularPolicy", "UniformPolicy", "exploration_probs",
           "masked_log_softmax", "sample_categorical"]
