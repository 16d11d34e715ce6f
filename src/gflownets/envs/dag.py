"""DAG (issue 4): Bayesian structure learning with a DAG-GFlowNet (Deleu et al. 2022).

Start from the graph with no edges and add one edge i -> j per step; every graph is a finished
object (exit is always allowed), and its reward is the posterior up to a constant,
R(G) = p(D | G) p(G), with a BGe (continuous data) or BDe (discrete data) marginal likelihood.
The acyclicity mask is kept cheap by carrying the transitive closure in the state.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gflownets.envs.base import DiscreteEnv, EnvConfig
from gflownets.envs.dag_data import (erdos_renyi_dag, read_data_csv, sample_discrete,
                                     sample_linear_gaussian)
from gflownets.envs.dag_scores import BDeScore, BGeScore, GraphPrior, LocalScore, parent_masks
from gflownets.errors import ConfigError, DataError, TooManyStates
from gflownets.envs.limits import check_seed, require_at_most
from gflownets.measures.structure import auroc, edge_marginals, expected_shd


#: the most synthetic data samples: the data set (samples x nodes) is generated and scored in memory
MAX_DATA_SAMPLES = 10_000_000
#: the most values of a discrete node: a node's counts and synthetic probability tables have a
#: column per value
MAX_ARITY = 1000


def _field(default, help: str):
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass
class DAGConfig(EnvConfig):
    nodes: int = _field(5, "number of nodes d of the synthetic graph (ignored with --data: "
                           "the CSV's columns are the nodes)")
    samples: int = _field(100, "number of synthetic data samples")
    score: str = _field("bge", "bge (linear-Gaussian, continuous data) | bde (BDeu, discrete data)")
    data: str = _field("", "CSV file of observations (header = node names); empty: synthetic data")
    data_seed: int = _field(0, "seed of the synthetic graph and data")
    edges_per_node: float = _field(1.0, "expected edges per node of the synthetic Erdos-Renyi graph")
    noise_std: float = _field(1.0, "bge synthetic data: standard deviation of the Gaussian noise")
    arity: int = _field(2, "bde synthetic data: number of values of each node")
    ess: float = _field(1.0, "bde: equivalent sample size of the BDeu prior")
    prior: str = _field("uniform", "prior over graphs: uniform | erdos_renyi")
    prior_edges_per_node: float = _field(1.0, "erdos_renyi prior: expected edges per node")
    max_parents: int = _field(0, "most parents of a node (0: no limit)")

    def validate(self) -> None:
        if not self.data and not 1 <= self.nodes <= 30:
            raise ConfigError(f"nodes must be in [1, 30], got {self.nodes}")
        if self.samples < 1:
            raise ConfigError(f"samples must be >= 1, got {self.samples}")
        check_seed("data_seed", self.data_seed)
        require_at_most("samples", self.samples, MAX_DATA_SAMPLES,
                        "the synthetic data is generated and scored in memory")
        if self.score not in ("bge", "bde"):
            raise ConfigError(f"score must be 'bge' or 'bde', got {self.score!r}")
        if self.data and not Path(self.data).is_file():
            raise ConfigError(f"data file not found: {self.data}")
        if self.prior not in ("uniform", "erdos_renyi"):
            raise ConfigError(f"prior must be 'uniform' or 'erdos_renyi', got {self.prior!r}")
        for name in ("edges_per_node", "prior_edges_per_node"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.noise_std > 0:
            raise ConfigError(f"noise_std must be > 0, got {self.noise_std}")
        if self.arity < 2:
            raise ConfigError(f"arity must be >= 2, got {self.arity}")
        require_at_most("arity", self.arity, MAX_ARITY, "each node's tables have a column per value")
        if not self.ess > 0:
            raise ConfigError(f"ess must be > 0, got {self.ess}")
        if self.max_parents < 0:
            raise ConfigError(f"max_parents must be >= 0, got {self.max_parents}")


class DAG(DiscreteEnv):
    """Directed acyclic graphs over d nodes, built one edge at a time; reward = p(D | G) p(G).

    State: one flat int tensor (2 d d,): the adjacency A (A[i, j] = 1: edge i -> j) then its
    transitive closure C (C[i, j] = 1: a directed path from i to j). Action i * d + j adds
    i -> j; it is allowed when i != j, A[i, j] = 0 and C[j, i] = 0 (no path back, so no
    cycle), and j has fewer than max_parents parents. Action d * d is exit, always allowed.
    Adding i -> j updates C by one outer product (ancestors of i and i) x (j and descendants
    of j); removing an edge recomputes C by repeated boolean squaring (log2 d products).
    """

    name = "dag"
    Config = DAGConfig
    compilable = True
    #: up to 9 nodes the local scores are one tensor (dag_scores.MAX_DENSE_LOCAL_SCORES) and the
    #: reward traces into a compiled rollout; beyond, `setup` sets False: a NumPy table filled on demand
    reward_compiles = True
    #: RunConfig values that `gflownets train dag` starts from (before --config and options):
    #: the settings tuned in bench/dag.py. One torch thread: the network is small, and two
    #: threads on a busy 2-core machine were much slower (bench/NOTES.md).
    run_defaults = {"objective": "mdb", "backward_policy": "uniform", "iters": 8000,
                    "batch_size": 32, "lr": 1e-3, "exploration": 0.1, "replay_size": 10000,
                    "replay_batch": 32, "target_decay": 0.99, "eval_every": 1000, "threads": 1}

    def setup(self, config: DAGConfig) -> None:
        discrete = config.score == "bde"
        rng = np.random.default_rng(config.data_seed)
        if config.data:
            self.names, self.data = read_data_csv(config.data, discrete)
            self.true_graph: np.ndarray | None = None
            self.weights = None
        else:
            d = config.nodes
            self.names = [f"X{i}" for i in range(d)]
            self.true_graph = erdos_renyi_dag(d, config.edges_per_node * d, rng)
            if discrete:
                self.data, self.weights = sample_discrete(self.true_graph, config.samples, rng, config.arity), None
            else:
                self.data, self.weights = sample_linear_gaussian(self.true_graph, config.samples, rng,
                                                                 config.noise_std)
        self.d = d = len(self.names)
        if d > 30:
            raise ConfigError(f"dag: at most 30 nodes (parent sets are bitmasks), got {d}")
        if discrete:  # synthetic data: every node has `arity` values, observed or not
            arities = None if config.data else [config.arity] * d
            self.scorer: LocalScore = BDeScore(self.data, arities=arities, ess=config.ess)
        else:
            self.scorer = BGeScore(self.data)
        self.graph_prior = GraphPrior(config.prior, d, config.prior_edges_per_node * d)
        #: every local score up front where the table is small: the reward is then pure torch
        self.local_scores = self.scorer.dense_table().to(self.device) if self.scorer.dense else None
        self.reward_compiles = self.local_scores is not None
        self.max_parents = config.max_parents if config.max_parents else d - 1
        self.n_actions = d * d + 1
        self.state_shape = (2 * d * d,)
        # the most edges: the k-th node of a topological order has at most min(k, max_parents) parents
        self.max_edges = sum(min(k, self.max_parents) for k in range(d))
        self.max_steps = self.max_edges + 1
        self.feature_dim = 2 * d * d
        self._off_diagonal = ~torch.eye(d, dtype=torch.bool)

    # ------------------------------------------------------------------ state layout
    def adjacency(self, states: torch.Tensor) -> torch.Tensor:
        """(B, d, d) adjacency of a batch of states."""
        return states[:, :self.d * self.d].reshape(-1, self.d, self.d)

    def closure(self, states: torch.Tensor) -> torch.Tensor:
        return states[:, self.d * self.d:].reshape(-1, self.d, self.d)

    def _pack(self, adjacency: torch.Tensor, closure: torch.Tensor) -> torch.Tensor:
        return torch.cat([adjacency.flatten(1), closure.flatten(1)], dim=1).long()

    def transitive_closure(self, adjacency: torch.Tensor) -> torch.Tensor:
        """(B, d, d) 0/1 reachability by paths of length >= 1: C <- C or C C, ceil(log2 d) times."""
        reach = adjacency.float()
        for _ in range(max(1, math.ceil(math.log2(max(self.d, 2))))):
            reach = ((reach + reach @ reach) > 0).float()
        return reach.long()

    def states_from_adjacency(self, adjacency: torch.Tensor) -> torch.Tensor:
        adjacency = adjacency.long()
        return self._pack(adjacency, self.transitive_closure(adjacency))

    # ------------------------------------------------------------------ interface
    @property
    def initial_state(self) -> torch.Tensor:
        return torch.zeros(2 * self.d * self.d, dtype=torch.long, device=self.device)

    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        a, c = self.adjacency(states).bool(), self.closure(states).bool()
        allowed = ~a & ~c.transpose(1, 2) & self._off_diagonal
        if self.max_parents < self.d - 1:
            allowed &= (a.sum(dim=1) < self.max_parents)[:, None, :]
        exit_ = torch.ones(states.shape[0], 1, dtype=torch.bool, device=states.device)
        return torch.cat([allowed.flatten(1), exit_], dim=1)

    def backward_mask(self, states: torch.Tensor) -> torch.Tensor:
        return states[:, :self.d * self.d].bool()

    def _step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        d = self.d
        rows = torch.arange(states.shape[0], device=states.device)
        src, dst = actions // d, actions % d
        a, c = self.adjacency(states).clone(), self.closure(states)
        a[rows, src, dst] = 1
        # new paths: (ancestors of src, and src) -> (dst, and descendants of dst)
        before = c[rows, :, src].clone()
        before[rows, src] = 1
        after = c[rows, dst, :].clone()
        after[rows, dst] = 1
        c = c | (before[:, :, None] & after[:, None, :])
        return self._pack(a, c)

    def _backward_step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        a = self.adjacency(states).clone()
        a[torch.arange(states.shape[0], device=states.device), actions // self.d, actions % self.d] = 0
        return self.states_from_adjacency(a)

    def default_log_reward(self, states: torch.Tensor) -> torch.Tensor:
        a = self.adjacency(states)
        if self.local_scores is None:
            score = self.scorer.score(a)
        else:
            score = self.local_scores[torch.arange(self.d, device=a.device), parent_masks(a)].sum(dim=1)
        return score + self.graph_prior.log_prob(a.sum(dim=(1, 2)))

    def log_reward_change(self, states: torch.Tensor, actions: torch.Tensor,
                          children: torch.Tensor) -> torch.Tensor:
        """log R(child) - log R(state) from the local scores of the one node whose parents change."""
        if self.reward_fn is not None or self.log_reward_fn is not None or self.reward_floor > 0:
            return super().log_reward_change(states, actions, children)
        sources, targets = actions // self.d, actions % self.d
        if self.local_scores is None:
            delta = self.scorer.delta(self.adjacency(states), sources, targets)
        else:
            masks = parent_masks(self.adjacency(states)).gather(1, targets[:, None]).squeeze(1)
            delta = self.local_scores[targets, masks | (1 << sources)] - self.local_scores[targets, masks]
        return delta + self.graph_prior.delta

    def features(self, states: torch.Tensor) -> torch.Tensor:
        return states.float()

    def _enumerate(self) -> torch.Tensor:
        """Level by level: every child of a graph with k edges has k + 1 edges, so each level is
        the unique children of the previous one (no search for already seen states)."""
        if self.d > 6:
            raise TooManyStates(f"dag: {self.d} nodes, too many DAGs to enumerate (at most 6 nodes)")
        levels = [self.initial_states(1)]
        while True:
            frontier = levels[-1]
            rows, actions = self.forward_mask(frontier)[:, :-1].nonzero(as_tuple=True)
            if len(rows) == 0:
                break
            levels.append(torch.unique(self._step(frontier[rows], actions), dim=0))
        return torch.cat(levels)

    # ------------------------------------------------------------------ objects
    @property
    def object_columns(self) -> list[str]:
        return [f"{self.names[i]}->{self.names[j]}" for i in range(self.d) for j in range(self.d) if i != j]

    def objects_to_rows(self, states: torch.Tensor) -> np.ndarray:
        a = self.adjacency(states)
        return a[:, self._off_diagonal].cpu().numpy().astype(np.int64)

    def objects_from_rows(self, rows: np.ndarray) -> torch.Tensor:
        width = self.d * (self.d - 1)
        if rows.ndim != 2 or rows.shape[1] != width:
            raise DataError(f"dag objects need {width} edge columns, got {rows.shape[-1]}")
        bad = (rows != 0) & (rows != 1)
        if bad.any():
            r, col = np.argwhere(bad)[0]
            raise DataError(f"row {r + 1}: edge {self.object_columns[col]} is {rows[r, col]}, not 0 or 1")
        a = torch.zeros(len(rows), self.d, self.d, dtype=torch.long, device=self.device)
        a[:, self._off_diagonal] = torch.as_tensor(rows.astype(np.int64), device=self.device)
        states = self.states_from_adjacency(a)
        cyclic = self.closure(states).diagonal(dim1=1, dim2=2).any(dim=1)
        if cyclic.any():
            raise DataError(f"row {int(cyclic.nonzero()[0]) + 1}: the graph has a cycle")
        too_many = (a.sum(dim=1) > self.max_parents).any(dim=1)
        if too_many.any():
            raise DataError(f"row {int(too_many.nonzero()[0]) + 1}: a node has more than "
                            f"{self.max_parents} parents")
        return states

    # ------------------------------------------------------------------ evaluation
    def _graph_metrics(self, adjacency: torch.Tensor, probs: torch.Tensor | None) -> dict[str, float]:
        marginals = edge_marginals(adjacency, probs)
        out: dict[str, float] = {}
        if self.true_graph is not None:
            out["expected_shd"] = expected_shd(adjacency, self.true_graph, probs)
            area = auroc(marginals, self.true_graph)
            if area is not None:
                out["auroc"] = area
        return out

    def data_files(self) -> list[str]:
        return [self.config.data] if self.config.data else []

    def exact_metrics(self, graph: Any, learned: torch.Tensor) -> dict[str, float]:
        """Against the exact posterior: edge_marginal_mae (mean over the d (d - 1) ordered pairs);
        against the true graph, when known: expected_shd and auroc of the learned distribution,
        and the same of the exact posterior (`_posterior`), the best a sampler can do.
        `graph`: the StateGraph of this environment."""
        adjacency = self.adjacency(graph.terminal_states)
        error = np.abs(edge_marginals(adjacency, learned) - edge_marginals(adjacency, graph.target))
        out = {"edge_marginal_mae": float(error[self._off_diagonal.cpu().numpy()].mean())}
        out.update(self._graph_metrics(adjacency, learned))
        out.update({f"{k}_posterior": v for k, v in self._graph_metrics(adjacency, graph.target).items()})
        return out

    def sample_metrics(self, objects: torch.Tensor, log_rewards: torch.Tensor) -> dict[str, float]:
        """expected_shd and auroc of the empirical distribution of samples (any d)."""
        return self._graph_metrics(self.adjacency(objects), None)

    def extra_plots(self, run, folder: Path) -> list[Path]:
        """plots/edge_marginals.png: learned vs exact (or sampled) edge marginals and the true graph."""
        from gflownets.figures import plot_matrices  # matplotlib: only when plotting

        panels = []
        graph = run.graph
        if graph is not None:
            adjacency = self.adjacency(graph.terminal_states)
            panels.append(("exact posterior P(i -> j | D)", edge_marginals(adjacency, graph.target)))
            learned = graph.terminal_distribution(run.eval_policy)
            panels.append(("learned P(i -> j)", edge_marginals(adjacency, learned)))
        else:
            generator = torch.Generator(device=self.device).manual_seed(run.config.seed)
            objects = run.sample_objects(2000, generator)
            panels.append(("learned P(i -> j), 2000 samples", edge_marginals(self.adjacency(objects))))
        if self.true_graph is not None:
            panels.append(("true graph", self.true_graph.astype(float)))
        return [plot_matrices(panels, self.names, folder / "edge_marginals.png")]
