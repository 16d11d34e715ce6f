"""Fragment chains: molecules built from two-ended fragments, small enough to evaluate exactly.

A chain is `length` fragments of a vocabulary of `fragments` (the first K of
`gflownets.chemistry.fragments.FRAGMENTS`: p-phenylene, amide, ether O, ethylene,
pyridine-2,5-diyl, piperazine-1,4-diyl, amine NH, carbonyl, thiophene-2,5-diyl, m-phenylene,
difluoromethylene), each fragment's tail bonded to the next one's head and the two open ends
capped with hydrogen, so every chain is a valid molecule. It is built by prepending and
appending fragments (`SequenceEnv` with `prepend=True`: a chain has 2^(L-1) construction
orders, so P_B matters) and its reward is a molecular score computed locally with RDKit
(`score`, a spec of `gflownets.chemistry.rewards`: "qed", "qed*sa", "qed,logp(1,3)", ...),
tempered as R = score^beta (`transform power`) or exp(beta * score) (`exp`).

All V^L chains (11^5 = 161,051 by default) are assembled and every distinct molecule is scored
once, then cached on disk (`gflownets.chemistry.fragments.chain_table`: $GFLOWNETS_CACHE, else
~/.cache/gflownets); after that the reward is a table lookup (a chain's index is its base-V
number), so training and exact evaluation over the state graph (177,156 states) are as fast as
on the hypergrid. This is our molecular analogue of the QM9 string task of Shen et al. (2023),
without its downloaded proxy table.

Measured once (rdkit 2026.09.1, one process on a 2-core CPU that other jobs kept busy), for
the default vocabulary and length 5:

- assembling and canonicalising the 161,051 chains: 42 s. Every chain sanitises; they are 106,630
  distinct molecules (by canonical SMILES: chains coincide, for instance a chain of symmetric
  fragments read backwards is the same molecule);
- QED of those molecules: 215 s (SA: 43 s more), so the first construction takes about 4.3 min;
  later ones load the cache (0.9 MB of molecules, 0.4 MB of QED) in under a second;
- QED over the chains: 0.079 to 0.948, median 0.694; 7,107 chains (4,784 molecules) have
  QED >= 0.9, 2,457 of those molecules are modes (pairwise Tanimoto < 0.7). With the default
  beta = 16 the log-rewards span -40.6 to -0.85 (log Z = 8.53) and the molecules of QED >= 0.9
  hold 38% of the target's mass; QED*SA ranges from 0.058 to 0.882;
- the state graph (177,156 states) is built in 2 s; 2000 iterations of TB at batch 64 took
  33 s and reached an exact L1 of 0.24 (expected QED 0.870 against the target's 0.874).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gflownets.chemistry.fragments import FRAGMENTS, MAX_CHAINS, ChainTable, chain_table, vocabulary
from gflownets.chemistry.metrics import count_modes, draw_top_molecules, tanimoto_diversity
from gflownets.chemistry.molecules import canonical_smiles
from gflownets.chemistry.rewards import log_rewards_of_scores, parse_reward
from gflownets.envs.molecules import MoleculeConfig
from gflownets.envs.sequences import SequenceEnv
from gflownets.errors import ConfigError, DataError
from gflownets.textfiles import shown


@dataclasses.dataclass
class FragmentChainsConfig(MoleculeConfig):
    fragments: int = dataclasses.field(default=len(FRAGMENTS), metadata={
        "help": f"vocabulary size: the first K of the {len(FRAGMENTS)} fragments"})
    length: int = dataclasses.field(default=5, metadata={"help": "fragments per chain"})
    prepend: bool = dataclasses.field(default=True, metadata={
        "help": "prepend and append fragments (2^(L-1) orders per chain); --no-prepend: append only"})
    mode_threshold: float = dataclasses.field(default=0.9, metadata={
        "help": "score above which sampled molecules count towards the modes metric (pairwise Tanimoto < 0.7)"})

    def validate(self) -> None:
        vocabulary(self.fragments)
        if self.length < 1:
            raise ConfigError(f"length must be >= 1, got {self.length}")
        if self.fragments ** self.length > MAX_CHAINS:
            raise ConfigError(f"{self.fragments}^{self.length} = {self.fragments ** self.length} chains, more "
                              f"than {MAX_CHAINS}: every chain is scored once, up front")
        super().validate()


class FragmentChains(SequenceEnv):
    """Molecules as chains of two-ended fragments, built by prepending and appending, RDKit reward.

    The reward is a molecular score of the assembled molecule, looked up in a table of every
    chain (computed once, cached on disk)."""

    name = "fragment-chains"
    Config = FragmentChainsConfig
    presets = {"tiny": dict(fragments=3, length=3)}

    def __init__(self, config: FragmentChainsConfig | None = None, *, reward_floor: float | None = None, **kwargs):
        """As `DiscreteEnv`'s, except that `reward_floor` defaults to the config's `floor`."""
        super().__init__(config, reward_floor=0.0 if reward_floor is None else reward_floor, **kwargs)
        if reward_floor is None:
            self.reward_floor = float(self.config.floor)

    def setup(self, config: FragmentChainsConfig) -> None:
        self._setup(config.fragments, config.length, config.length, config.prepend)
        self.fragments = vocabulary(config.fragments)
        self.molecular_reward = parse_reward(config.score, config.beta, config.transform)
        self.table: ChainTable = chain_table(self.fragments, config.length, self.molecular_reward)
        chain_scores = self.table.chain_scores
        #: (V^L,) float64 score and log-reward of every chain, by its base-V number
        self.chain_scores = torch.from_numpy(chain_scores)
        self.chain_log_rewards = torch.from_numpy(log_rewards_of_scores(chain_scores, config.beta, config.transform))
        #: (V^L,) index of every chain's molecule in `table.smiles`
        self.chain_molecules = torch.from_numpy(self.table.molecule)
        self._powers = self.vocab_size ** torch.arange(self.max_length - 1, -1, -1)
        self._first_chain: dict[str, int] | None = None  # built by the first read of SMILES

    @property
    def n_molecules(self) -> int:
        """Distinct molecules (canonical SMILES) among all chains."""
        return len(self.table.smiles)

    def chain_index(self, objects: torch.Tensor) -> torch.Tensor:
        """(B,) row of each finished chain in the tables: its fragments as a base-V number."""
        return (objects * self._powers).sum(dim=1)

    def default_log_reward(self, states: torch.Tensor) -> torch.Tensor:
        return self.chain_log_rewards[self.chain_index(states)]

    def scores(self, objects: torch.Tensor, log_rewards: torch.Tensor) -> torch.Tensor:
        """The molecular score (QED, ...) of each chain, for the top-k score metrics."""
        return self.chain_scores[self.chain_index(objects)]

    def molecule_ids(self, objects: torch.Tensor) -> np.ndarray:
        """(B,) index of each finished chain's molecule in `table.smiles`."""
        return self.chain_molecules[self.chain_index(objects)].cpu().numpy()

    #: `gflownets sample` writes each molecule's canonical SMILES after its log-reward
    description_columns = ("smiles",)

    def describe_objects(self, states: torch.Tensor) -> list[tuple[str, ...]]:
        return [(smiles or "",) for smiles in self.smiles(states)]

    def smiles(self, objects: torch.Tensor) -> list[str]:
        """Canonical SMILES of finished chains ((B, L) fragment indices)."""
        return self.table.smiles[self.molecule_ids(objects)].tolist()

    def objects_from_descriptions(self, column: str, values: list[str]) -> torch.Tensor:
        """Chains from SMILES (a data file under a `smiles` header, for `--offline`): a molecule
        that several chains assemble to is read as the first of them in the table's order."""
        if column != "smiles":
            return super().objects_from_descriptions(column, values)
        if self._first_chain is None:  # canonical SMILES -> the first chain that makes it
            molecules, first = np.unique(self.table.molecule, return_index=True)
            self._first_chain = dict(zip(self.table.smiles[molecules].tolist(), first.tolist()))
        chains = []
        for r, (text, smiles) in enumerate(zip(values, canonical_smiles(values)), start=1):
            if smiles is None:
                raise DataError(f"row {r}: {shown(text)} is not a valid SMILES")
            if smiles not in self._first_chain:
                raise DataError(f"row {r}: {text} is none of the {self.n_molecules} molecules that chains of "
                                f"{self.max_length} of these {self.vocab_size} fragments make")
            chains.append(self._first_chain[smiles])
        digits = (torch.tensor(chains)[:, None] // self._powers) % self.vocab_size
        return self.objects_from_rows(self.objects_to_rows(digits))

    # ------------------------------------------------------------------ metrics and plots
    def exact_metrics(self, graph: Any, learned: torch.Tensor) -> dict[str, float]:
        """`l1_molecules`: the L1 distance between the learned and target distributions over
        molecules (chains that assemble to one molecule pooled); `expected_score` under the
        learned distribution and under the target; `n_molecules`, the distinct molecules."""
        ids = torch.as_tensor(self.molecule_ids(graph.terminal_states), device=learned.device)
        n = self.n_molecules
        pooled = torch.zeros(n, dtype=torch.float64, device=learned.device).index_add_(0, ids, learned.double())
        target = torch.zeros(n, dtype=torch.float64, device=learned.device).index_add_(0, ids, graph.target.double())
        scores = self.scores(graph.terminal_states, graph.log_rewards).to(learned.device)
        return {"l1_molecules": float((pooled - target).abs().sum()),
                "expected_score": float((learned.double() * scores).sum()),
                "expected_score_target": float((graph.target.double() * scores).sum()),
                "n_molecules": float(n)}

    def sample_metrics(self, objects: torch.Tensor, log_rewards: torch.Tensor) -> dict[str, float]:
        """The sequence metrics (top-k reward and score, Hamming diversity, uniqueness of
        chains), and of the molecules: `molecule_uniqueness` (distinct molecules / samples),
        `top{k}_tanimoto_diversity` (mean pairwise Tanimoto distance of the k best-scoring
        distinct molecules), `molecule_modes` (molecules of score >= mode_threshold, pairwise
        Tanimoto similarity < 0.7) and, with a reference set, `molecule_novelty`."""
        out = super().sample_metrics(objects, log_rewards)
        if len(objects) == 0:
            return out
        ids = np.unique(self.molecule_ids(objects))
        scores = self.table.scores[ids]
        best = ids[np.argsort(-scores, kind="stable")[:self.top_k]]  # parse only these, not every sample
        above = ids[scores >= self.config.mode_threshold]
        out["molecule_uniqueness"] = len(ids) / len(objects)
        out[f"top{self.top_k}_tanimoto_diversity"] = tanimoto_diversity(self.table.smiles[best].tolist())
        out["molecule_modes"] = float(count_modes(self.table.smiles[above].tolist(), self.table.scores[above],
                                                  self.config.mode_threshold))
        if self.reference is not None:
            out["molecule_novelty"] = float(np.isin(ids, self.molecule_ids(self.reference), invert=True).mean())
        return out

    def extra_plots(self, run: Any, folder: Path) -> list[Path]:
        """plots/top_molecules.png: the 16 best distinct molecules among 1000 samples of the
        learned sampler; plots/best_molecules.png: the 16 best of all chains, for comparison."""
        generator = torch.Generator(device=self.device).manual_seed(run.config.seed)
        objects = run.sample_objects(1000, generator)
        label = self.molecular_reward.spec
        sampled = draw_top_molecules(self.smiles(objects), self.chain_scores[self.chain_index(objects)].cpu().numpy(),
                                     Path(folder) / "top_molecules.png", label=label)
        best = np.argsort(-self.table.scores, kind="stable")[:16]
        overall = draw_top_molecules(self.table.smiles[best].tolist(), self.table.scores[best],
                                     Path(folder) / "best_molecules.png", label=label)
        return [sampled, overall]
