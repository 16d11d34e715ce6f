"""Metrics of generated molecules, given as SMILES (with their rewards where a metric ranks them):

- `validity`: the fraction that RDKit parses and sanitises;
- `uniqueness`: distinct molecules (by canonical SMILES) over valid ones;
- `novelty`: the fraction of distinct valid molecules absent from a reference set (the training data);
- `top_k_reward`: the mean reward of the k best distinct molecules;
- `top_k_diversity`: the mean pairwise Tanimoto distance (1 - similarity of Morgan fingerprints,
  radius 2, 2048 bits) among them; `tanimoto_diversity` for any set;
- `modes` / `count_modes`: molecules above a reward threshold that are pairwise dissimilar
  (Tanimoto similarity < 0.7), the count of Bengio et al. 2021 (the first GFlowNet paper):
  taken greedily from the best down, a molecule is a new mode when it is less than 0.7 similar
  to every mode kept so far;
- `draw_top_molecules`: a PNG grid of the best molecules (RDKit's drawing), legends their rewards;
- `molecule_metrics`: all of them at once, as a dict.

Invalid SMILES count against validity and are ignored by the others; duplicates (equal canonical
SMILES) count once, with their best reward.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gflownets.chemistry.molecules import Mol, fingerprints, parse_smiles

#: the similarity below which two molecules are distinct modes (Bengio et al. 2021)
MODE_SIMILARITY = 0.7


def _distinct(mols: Sequence[Mol | None], rewards: Sequence[float] | np.ndarray | None = None
              ) -> tuple[list[str], list[Mol], np.ndarray]:
    """(canonical SMILES, molecules, best reward) of the distinct valid molecules among parsed
    ones (None: invalid), in order of first appearance (rewards: zeros when none are given)."""
    from rdkit import Chem

    rewards = np.zeros(len(mols)) if rewards is None else np.asarray(rewards, dtype=np.float64).reshape(-1)
    if len(rewards) != len(mols):
        raise ValueError(f"{len(rewards)} rewards for {len(mols)} molecules")
    position: dict[str, int] = {}
    names: list[str] = []
    kept: list[Mol] = []
    best: list[float] = []
    for mol, reward in zip(mols, rewards):
        if mol is None:
            continue
        key = Chem.MolToSmiles(mol)
        if key in position:
            best[position[key]] = max(best[position[key]], float(reward))
        else:
            position[key] = len(names)
            names.append(key)
            kept.append(mol)
            best.append(float(reward))
    return names, kept, np.asarray(best, dtype=np.float64)


def _top(distinct: tuple[list[str], list[Mol], np.ndarray], k: int) -> tuple[list[str], list[Mol], np.ndarray]:
    names, mols, best = distinct
    order = np.argsort(-best, kind="stable")[:k]
    return [names[i] for i in order], [mols[i] for i in order], best[order]


def _modes(distinct: tuple[list[str], list[Mol], np.ndarray], threshold: float, max_similarity: float) -> list[str]:
    from rdkit import DataStructs

    names, mols, best = distinct
    above = [i for i in np.argsort(-best, kind="stable") if best[i] >= threshold]
    fps = fingerprints([mols[i] for i in above])
    kept: list[int] = []
    for j in range(len(above)):
        if not kept or max(DataStructs.BulkTanimotoSimilarity(fps[j], [fps[m] for m in kept])) < max_similarity:
            kept.append(j)
    return [names[above[j]] for j in kept]


def validity(smiles: Sequence[str]) -> float:
    """Fraction of the SMILES that are valid molecules (nan for none)."""
    if not len(smiles):
        return float("nan")
    return float(np.mean([m is not None for m in parse_smiles(smiles)]))


def uniqueness(smiles: Sequence[str]) -> float:
    """Distinct valid molecules over valid molecules (nan when none is valid)."""
    mols = parse_smiles(smiles)
    valid = sum(m is not None for m in mols)
    return float("nan") if valid == 0 else len(_distinct(mols)[0]) / valid


def novelty(smiles: Sequence[str], reference: Sequence[str]) -> float:
    """Fraction of the distinct valid molecules that are not in `reference` (compared by
    canonical SMILES; nan when none is valid)."""
    names = _distinct(parse_smiles(smiles))[0]
    if not names:
        return float("nan")
    known = set(_distinct(parse_smiles(reference))[0])
    return float(np.mean([name not in known for name in names]))


def top_k(smiles: Sequence[str], rewards: Sequence[float] | np.ndarray, k: int
          ) -> tuple[list[str], list[Mol], np.ndarray]:
    """The k best distinct valid molecules (fewer if there are fewer): canonical SMILES,
    molecules and rewards, best first (ties in order of appearance)."""
    return _top(_distinct(parse_smiles(smiles), rewards), k)


def top_k_reward(smiles: Sequence[str], rewards: Sequence[float] | np.ndarray, k: int = 100) -> float:
    """Mean reward of the k best distinct valid molecules (nan when none is valid)."""
    best = top_k(smiles, rewards, k)[2]
    return float(best.mean()) if len(best) else float("nan")


def _mean_pairwise_distance(mols: Sequence[Mol]) -> float:
    from rdkit import DataStructs

    n = len(mols)
    if n < 2:
        return float("nan")
    fps = fingerprints(mols)
    total = sum(sum(DataStructs.BulkTanimotoSimilarity(fps[i], fps[i + 1:])) for i in range(n - 1))
    return float(1.0 - total / (n * (n - 1) / 2))


def tanimoto_diversity(smiles: Sequence[str]) -> float:
    """Mean pairwise Tanimoto distance of the valid molecules, duplicates included (0 for copies of
    one molecule; nan below two valid molecules)."""
    return _mean_pairwise_distance([m for m in parse_smiles(smiles) if m is not None])


def top_k_diversity(smiles: Sequence[str], rewards: Sequence[float] | np.ndarray, k: int = 100) -> float:
    """Mean pairwise Tanimoto distance among the k best distinct valid molecules (nan below two)."""
    return _mean_pairwise_distance(top_k(smiles, rewards, k)[1])


def modes(smiles: Sequence[str], rewards: Sequence[float] | np.ndarray, threshold: float,
          max_similarity: float = MODE_SIMILARITY) -> list[str]:
    """Canonical SMILES of the modes: from the best reward down, each distinct valid molecule of
    reward >= `threshold` whose Tanimoto similarity to every mode kept so far is below
    `max_similarity`."""
    return _modes(_distinct(parse_smiles(smiles), rewards), threshold, max_similarity)


def count_modes(smiles: Sequence[str], rewards: Sequence[float] | np.ndarray, threshold: float,
                max_similarity: float = MODE_SIMILARITY) -> int:
    """Number of `modes`."""
    return len(modes(smiles, rewards, threshold, max_similarity))


def draw_top_molecules(smiles: Sequence[str], rewards: Sequence[float] | np.ndarray, out: str | Path,
                       k: int = 16, per_row: int = 4, label: str = "reward") -> Path:
    """A PNG grid of the k best distinct valid molecules (RDKit's 2-D drawings, 250 px each),
    each captioned with its `label` and value; returns the path. Nothing valid: a ValueError."""
    from rdkit.Chem import Draw

    _, mols, best = top_k(smiles, rewards, k)
    if not mols:
        raise ValueError("no valid molecule to draw")
    image = Draw.MolsToGridImage(mols, molsPerRow=min(per_row, len(mols)), subImgSize=(250, 250),
                                 legends=[f"{label} {value:.4g}" for value in best])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, format="PNG")
    return out


def molecule_metrics(smiles: Sequence[str], rewards: Sequence[float] | np.ndarray, k: int = 100,
                     threshold: float | None = None, reference: Sequence[str] | None = None) -> dict[str, float]:
    """`validity`, `uniqueness`, `top{k}_reward`, `top{k}_diversity`, with a `threshold` `modes`
    (their number) and with a `reference` `novelty`; every SMILES parsed once."""
    mols = parse_smiles(smiles)
    n_valid = sum(m is not None for m in mols)
    distinct = _distinct(mols, rewards)
    best = _top(distinct, k)
    out = {"validity": n_valid / len(mols) if len(mols) else float("nan"),
           "uniqueness": len(distinct[0]) / n_valid if n_valid else float("nan"),
           f"top{k}_reward": float(best[2].mean()) if len(best[2]) else float("nan"),
           f"top{k}_diversity": _mean_pairwise_distance(best[1])}
    if threshold is not None:
        out["modes"] = float(len(_modes(distinct, threshold, MODE_SIMILARITY)))
    if reference is not None:
        known = set(_distinct(parse_smiles(reference))[0])
        out["novelty"] = float(np.mean([n not in known for n in distinct[0]])) if distinct[0] else float("nan")
    return out
