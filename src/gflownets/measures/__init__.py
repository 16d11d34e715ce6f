"""Distances and statistics on objects, shared by environments and evaluation; imports nothing else of the package."""

from gflownets.measures.distances import edit_distance, edit_distance_matrix, hamming_matrix
from gflownets.measures.diversity import (mean_pairwise_distance, novelty, sequence_sample_metrics, spearman,
                                          top_k_distinct)
from gflownets.measures.structure import auroc, edge_marginals, expected_shd, shd

__all__ = ["hamming_matrix", "edit_distance", "edit_distance_matrix", "mean_pairwise_distance", "novelty",
           "spearman", "top_k_distinct", "sequence_sample_metrics", "edge_marginals", "shd", "expected_shd",
           "auroc"]
