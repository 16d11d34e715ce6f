"""What the molecule-building environments (`atoms`, `fragments`) share: the layout of a graph's
actions that a graph policy reads (`GraphLayout`, `GraphInputs`), and `MoleculeEnv`, the base
that turns a state into a canonical SMILES (`_molecule_smiles`, the one method a subclass
writes) and from there into a reward, molecule metrics, plots and the SMILES column of sampled
objects. RDKit runs only on the reward path, each distinct state and molecule once (cached)."""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from gflownets.chemistry.metrics import draw_top_molecules, molecule_metrics
from gflownets.chemistry.molecules import parse_smiles, rdkit_quiet
from gflownets.chemistry.rewards import SmilesScorer, check_score_options, log_rewards_of_scores, parse_reward
from gflownets.envs.base import DiscreteEnv, EnvConfig
from gflownets.errors import DataError
from gflownets.textfiles import shown

#: distinct molecules whose SMILES and scores are kept in memory (RDKit's construction, and
#: above all QED, cost far more than a dictionary lookup)
CACHE_SIZE = 200_000


def _field(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass
class MoleculeConfig(EnvConfig):
    """The reward options every molecule environment takes (a subclass may change a default by
    declaring the field again, and calls `super().validate()`)."""

    score: str = _field("qed", "molecular score, a product of: qed, sa, logp(lo,hi), mw(lo,hi), tpsa(lo,hi), "
                               "tanimoto(SMILES), module:function; joined by '*' or ','")
    beta: float = _field(16.0, "reward temperature: R = score^beta (or exp(beta * score))")
    transform: str = _field("power", "power: R = score^beta | exp: R = exp(beta * score)")
    floor: float = _field(1e-40, "reward floor (> 0): a score of 0 gets this reward")
    mode_threshold: float = _field(0.8, "score above which sampled molecules count towards the modes metric "
                                        "(pairwise Tanimoto < 0.7)")

    def validate(self) -> None:
        check_score_options(self.score, self.beta, self.transform, self.floor, self.mode_threshold)


# ---------------------------------------------------------------------- the graph interface
@dataclasses.dataclass(frozen=True)
class GraphLayout:
    """How a graph-valued environment lays out its actions, for a graph policy
    (`gflownets.policies.graph.GraphPolicy`). Forward actions are, in this order:
    a node block (`node_actions` per node slot: action i * node_actions + k), a pair block
    (`pair_actions` per unordered pair p of `torch.triu_indices(max_nodes, max_nodes, 1)`:
    offset + p * pair_actions + k), a block of `graph_actions` whole-graph actions, and exit.
    Backward action a undoes forward action a, so the backward actions are the same blocks
    without exit. The environment's `graph_inputs(states)` gives the network's input."""

    max_nodes: int
    #: width of each node's feature vector in `graph_inputs`
    node_features: int
    #: adjacency channels (edge types: here one per bond order)
    edge_types: int
    node_actions: int
    pair_actions: int
    graph_actions: int

    @property
    def n_pairs(self) -> int:
        return self.max_nodes * (self.max_nodes - 1) // 2

    @property
    def n_actions(self) -> int:
        """Forward actions, exit included."""
        return (self.max_nodes * self.node_actions + self.n_pairs * self.pair_actions
                + self.graph_actions + 1)


class GraphInputs(NamedTuple):
    """A batch of padded graphs: what a graph policy reads."""

    #: (B, N, node_features) float features of the node slots (zeros where empty)
    nodes: torch.Tensor
    #: (B, N) bool: which slots hold a node
    mask: torch.Tensor
    #: (B, edge_types, N, N) float 0/1 symmetric adjacency per edge type
    adjacency: torch.Tensor


class LRUCache:
    """A bounded least-recently-used cache. Not a dict, so that `DiscreteEnv.to` (which rebuilds
    dicts it finds on the environment) leaves it as it is."""

    def __init__(self, size: int):
        self.size = size
        self.data: collections.OrderedDict[Any, Any] = collections.OrderedDict()

    def get(self, key: Any, default: Any = None) -> Any:
        if key in self.data:
            self.data.move_to_end(key)
            return self.data[key]
        return default

    def __contains__(self, key: Any) -> bool:
        return key in self.data

    def put(self, key: Any, value: Any) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.size:
            self.data.popitem(last=False)


class MoleculeEnv(DiscreteEnv):
    """A discrete environment whose objects are molecules: subclasses define
    `_molecule_smiles(row)` (a state row's canonical SMILES, None where there is no molecule)
    and call `setup_molecules(config)` from `setup`; their Config has the fields `score`,
    `beta`, `transform`, `floor` and `mode_threshold`."""

    #: exact evaluation builds every finished state's molecule with RDKit (~50 us each) and scores
    #: each distinct molecule (QED: ~1 ms), so fewer states than elsewhere are enumerated
    max_enumerable_states = 500_000
    #: the reward builds each molecule with RDKit: a compiled rollout computes it after its graph
    reward_compiles = False

    def __init__(self, config: EnvConfig | None = None, *, reward_floor: float | None = None, **kwargs: Any):
        """As `DiscreteEnv`'s, except that `reward_floor` defaults to the config's `floor`."""
        super().__init__(config, reward_floor=0.0 if reward_floor is None else reward_floor, **kwargs)
        if reward_floor is None:
            self.reward_floor = float(self.config.floor)

    def setup_molecules(self, config: Any) -> None:
        """The reward (`score` tempered by `beta`) and the caches of SMILES and scores."""
        self.molecular_reward = parse_reward(config.score, config.beta, config.transform)
        #: the RDKit scores of new SMILES, the costly part of the reward (`reward_workers` serve it)
        self.score_smiles = SmilesScorer(config.score, self.molecular_reward)
        self._smiles_cache = LRUCache(CACHE_SIZE)   # state row bytes -> canonical SMILES (None: none)
        self._score_cache = LRUCache(CACHE_SIZE)    # canonical SMILES -> composite score

    def _molecule_smiles(self, row: np.ndarray) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError

    #: `gflownets sample` writes each molecule's canonical SMILES after its log-reward
    description_columns = ("smiles",)
    costly_reward = "score_smiles"

    def describe_objects(self, states: torch.Tensor) -> list[tuple[str, ...]]:
        return [(smiles or "",) for smiles in self.smiles(states)]

    def objects_from_descriptions(self, column: str, values: list[str]) -> torch.Tensor:
        """Finished states from SMILES (a data file under a `smiles` header, for `--offline`):
        each molecule's state as `_row_of_molecule` builds it, checked to give back the same
        canonical SMILES; a DataError naming the row and the SMILES of one that is not a molecule
        of this environment."""
        if column != "smiles":
            return super().objects_from_descriptions(column, values)
        from rdkit import Chem

        rows = []
        with rdkit_quiet():
            for r, (text, mol) in enumerate(zip(values, parse_smiles(values)), start=1):
                if mol is None:
                    raise DataError(f"row {r}: {shown(text)} is not a valid SMILES")
                try:
                    row = self._row_of_molecule(mol)
                except DataError as err:
                    raise DataError(f"row {r}: {text}: {err}") from None
                if self._molecule_smiles(row) != Chem.MolToSmiles(mol):  # a safeguard of the construction
                    raise DataError(f"row {r}: {text}: its state builds {self._molecule_smiles(row)} instead")
                rows.append(row)
        return self.objects_from_rows(np.stack(rows))

    def _row_of_molecule(self, mol: Any) -> np.ndarray:  # pragma: no cover - abstract
        """One finished state row of the sanitised RDKit molecule `mol`; DataError saying why
        where the environment cannot build it."""
        raise NotImplementedError

    def smiles(self, objects: torch.Tensor) -> list[str | None]:
        """Canonical SMILES of each state (a molecule; None where RDKit refuses it). RDKit builds
        each distinct row once (cached); this is the reward path, never the sampling loop."""
        rows = np.ascontiguousarray(objects.cpu().numpy().astype(np.int64))
        out: list[str | None] = []
        with rdkit_quiet():
            for row in rows:
                key = row.tobytes()
                if key in self._smiles_cache:
                    out.append(self._smiles_cache.get(key))
                else:
                    smiles = self._molecule_smiles(row)
                    self._smiles_cache.put(key, smiles)
                    out.append(smiles)
        return out

    def _scores_of_smiles(self, smiles: list[str | None]) -> np.ndarray:
        """Composite scores (NaN where the molecule is invalid: RDKit refused it, or cannot re-read
        its SMILES), each distinct SMILES scored once and cached; the scores run in one call per
        batch, on the molecules not seen before."""
        new = sorted({s for s in smiles if s is not None and s not in self._score_cache})
        fresh: dict[str, float] = {}  # this batch's scores, whatever the cache evicts meanwhile
        if new:
            values = np.asarray(self.score_smiles(new), dtype=np.float64)
            for s, value in zip(new, values):
                fresh[s] = float(value)
                self._score_cache.put(s, fresh[s])
        return np.array([np.nan if s is None else fresh[s] if s in fresh else self._score_cache.get(s)
                         for s in smiles], dtype=np.float64)

    def scores(self, objects: torch.Tensor, log_rewards: torch.Tensor | None = None) -> torch.Tensor:
        """The molecular score (QED, ...) of each molecule, float64; 0 for an invalid one (as
        `MolecularReward` scores an invalid SMILES). Read by the top-k score metrics."""
        scores = np.nan_to_num(self._scores_of_smiles(self.smiles(objects)), nan=0.0)
        return torch.from_numpy(scores).to(objects.device)

    def default_log_reward(self, states: torch.Tensor) -> torch.Tensor:
        scores = self._scores_of_smiles(self.smiles(states))
        invalid = np.isnan(scores)
        log_r = log_rewards_of_scores(np.where(invalid, 0.0, scores), self.config.beta, self.config.transform)
        log_r[invalid] = -np.inf
        return torch.from_numpy(log_r).to(states.device)

    # ------------------------------------------------------------------ metrics and plots
    def exact_metrics(self, graph: Any, learned: torch.Tensor) -> dict[str, float]:
        """`l1_molecules`: the L1 distance between the learned and target distributions over
        molecules (the labelled forms of one molecule pooled); `expected_score` under the learned
        distribution and the target; `n_molecules`, the distinct molecules."""
        smiles = [s or "" for s in self.smiles(graph.terminal_states)]
        names, ids = np.unique(np.array(smiles, dtype=object), return_inverse=True)
        ids = torch.as_tensor(ids, device=learned.device)
        pooled = torch.zeros(len(names), dtype=torch.float64, device=learned.device)
        pooled = pooled.index_add(0, ids, learned.double())
        target = torch.zeros_like(pooled).index_add(0, ids, graph.target.double().to(learned.device))
        scores = self.scores(graph.terminal_states).to(learned.device)
        return {"l1_molecules": float((pooled - target).abs().sum()),
                "expected_score": float((learned.double() * scores).sum()),
                "expected_score_target": float((graph.target.double().to(learned.device) * scores).sum()),
                "n_molecules": float(len(names))}

    def sample_metrics(self, objects: torch.Tensor, log_rewards: torch.Tensor) -> dict[str, float]:
        """Of the sampled molecules: `molecule_validity` (the fraction RDKit sanitises: 1 by
        construction), `molecule_uniqueness` (distinct / valid), `top100_score` and
        `top100_tanimoto_diversity` (of the 100 best distinct ones) and `molecule_modes`
        (score >= mode_threshold, pairwise Tanimoto similarity < 0.7)."""
        if len(objects) == 0:
            return {}
        smiles = self.smiles(objects)
        scores = np.nan_to_num(self._scores_of_smiles(smiles), nan=0.0)
        m = molecule_metrics([s or "" for s in smiles], scores, k=100, threshold=self.config.mode_threshold)
        return {"molecule_validity": m["validity"], "molecule_uniqueness": m["uniqueness"],
                "top100_score": m["top100_reward"], "top100_tanimoto_diversity": m["top100_diversity"],
                "molecule_modes": m["modes"]}

    def extra_plots(self, run: Any, folder: Path) -> list[Path]:
        """plots/top_molecules.png: the 16 best distinct molecules among 1000 samples of the
        learned sampler, captioned with their score."""
        generator = torch.Generator(device=self.device).manual_seed(run.config.seed)
        objects = run.sample_objects(1000, generator)
        smiles = self.smiles(objects)
        scores = np.nan_to_num(self._scores_of_smiles(smiles), nan=0.0)
        return [draw_top_molecules([s or "" for s in smiles], scores, Path(folder) / "top_molecules.png",
                                   label=self.molecular_reward.spec)]
