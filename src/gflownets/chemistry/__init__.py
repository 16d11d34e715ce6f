"""Molecules with RDKit, computed locally: rewards, molecular metrics and the fragments of `fragment-chains`."""

from gflownets.chemistry.metrics import (count_modes, draw_top_molecules, modes, molecule_metrics, novelty,
                                         tanimoto_diversity, top_k, top_k_diversity, top_k_reward, uniqueness,
                                         validity)
from gflownets.chemistry.molecules import canonical_smiles, fingerprints, parse_smiles
from gflownets.chemistry.rewards import (SCORES, MolecularReward, Score, custom, log_rewards_of_scores, parse_reward,
                                         qed, sa, tanimoto, window)

__all__ = ["MolecularReward", "Score", "SCORES", "parse_reward", "qed", "sa", "window", "tanimoto", "custom",
           "log_rewards_of_scores", "parse_smiles", "canonical_smiles", "fingerprints", "validity", "uniqueness",
           "novelty", "top_k", "top_k_reward", "tanimoto_diversity", "top_k_diversity", "modes", "count_modes",
           "draw_top_molecules", "molecule_metrics"]
