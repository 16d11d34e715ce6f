"""Evaluation: the exact learned distribution by dynamic programming, distribution metrics and
log-likelihood estimates. Distances and sample diversity live in `gflownets.measures` (shared with
the environments) and are re-exported here."""

from gflownets.evaluation.exact import StateGraph, optimal_tabular_policy, try_state_graph
from gflownets.evaluation.likelihood import (estimate_log_prob, exact_log_prob, held_out_metrics,
                                             log_prob_reward_correlation)
from gflownets.evaluation.metrics import ModeTracker, distribution_metrics
from gflownets.measures import (edit_distance_matrix, hamming_matrix, mean_pairwise_distance, novelty, spearman,
                                top_k_distinct)

__all__ = ["ModeTracker", "StateGraph", "optimal_tabular_policy", "distribution_metrics", "try_state_graph",
           "hamming_matrix", "edit_distance_matrix", "mean_pairwise_distance", "novelty", "spearman",
           "top_k_distinct", "estimate_log_prob", "exact_log_prob", "log_prob_reward_correlation", "held_out_metrics"]
