"""Evaluation: the exact learned distribution by dynamic programming, distribution metrics,
log-likelihood estimates and sample diversity."""

from gflownets.evaluation.diversity import (edit_distance_matrix, hamming_matrix, mean_pairwise_distance,
                                            novelty, spearman, top_k_distinct)
from gflownets.evaluation.exact import StateGraph, optimal_tabular_policy, try_state_graph
from gflownets.evaluation.likelihood import estimate_log_prob, exact_log_prob, log_prob_reward_correlation
from gflownets.evaluation.metrics import ModeTracker, distribution_metrics

__all__ = ["ModeTracker", "StateGraph", "optimal_tabular_policy", "distribution_metrics", "try_state_graph",
           "hamming_matrix", "edit_distance_matrix", "mean_pairwise_distance", "novelty", "spearman",
           "top_k_distinct", "estimate_log_prob", "exact_log_prob", "log_prob_reward_correlation"]
