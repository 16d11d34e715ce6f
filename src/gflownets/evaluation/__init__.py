"""Evaluation: the exact learned distribution by dynamic programming, and distribution metrics."""

from gflownets.evaluation.exact import StateGraph, optimal_tabular_policy, try_state_graph
from gflownets.evaluation.metrics import ModeTracker, distribution_metrics

__all__ = ["ModeTracker", "StateGraph", "optimal_tabular_policy", "distribution_metrics", "try_state_graph"]
