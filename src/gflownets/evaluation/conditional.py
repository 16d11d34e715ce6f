"""Exact evaluation of a conditional GFlowNet, one context at a time: with the context fixed the
environment is an ordinary one (`ConditionalEnv.fixed`), so its state graph gives the learned
distribution of that context by dynamic programming and compares it with that context's exact
target R(x | c) / Z(c). Contexts never drawn in training (every beta of a continuous range is,
almost surely) are evaluated the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from gflownets.envs.conditional import ConditionalEnv, Preference, Temperature
from gflownets.errors import ConfigError, TooManyStates
from gflownets.evaluation.evaluator import sample_objects
from gflownets.evaluation.exact import StateGraph
from gflownets.evaluation.metrics import distribution_metrics
from gflownets.measures.diversity import mean_pairwise_distance
from gflownets.measures.pareto import hypervolume, pareto_mask, r2_indicator
from gflownets.policies.base import Policy

#: contexts of the default evaluation grid
N_DEFAULT_CONTEXTS = 5
#: objects drawn (each under its own preference from the training distribution) for the
#: multi-objective metrics of a preference-conditioned run
PARETO_SAMPLES = 1000


def default_contexts(env: ConditionalEnv) -> list[torch.Tensor]:
    """Five contexts spread over the trained family: betas geometrically from low to high;
    preferences from one objective's vertex to the other's (two objectives), or each vertex and
    the centre (more)."""
    condition = env.condition
    if isinstance(condition, Temperature):
        betas = np.geomspace(condition.low, condition.high, N_DEFAULT_CONTEXTS)
        return [torch.tensor([b], dtype=torch.float64) for b in betas]
    if isinstance(condition, Preference):
        m = condition.n_objectives
        if m == 2:
            return [torch.tensor([w, 1 - w], dtype=torch.float64) for w in np.linspace(1, 0, N_DEFAULT_CONTEXTS)]
        return [torch.eye(m, dtype=torch.float64)[i] for i in range(m)] + [torch.full((m,), 1 / m, dtype=torch.float64)]
    raise ConfigError(f"no default contexts for {type(condition).__name__}")


def parse_contexts(env: ConditionalEnv, text: str) -> list[torch.Tensor]:
    """'1;4;16' (betas) or '0.3,0.7;0.5,0.5' (preferences): each checked against the condition."""
    contexts = []
    for part in (p.strip() for p in text.split(";") if p.strip()):
        try:
            values = torch.tensor([float(v) for v in part.split(",")], dtype=torch.float64)
        except ValueError:
            raise ConfigError(f"context {part!r} is not a comma-separated list of numbers") from None
        env.fixed(values)  # checks its width and range
        contexts.append(values)
    if not contexts:
        raise ConfigError(f"no contexts in {text!r}")
    return contexts


class ContextEvaluator:
    """The per-context state graphs of a conditional run (built once, on first use) and the
    exact metrics of a policy on each."""

    def __init__(self, env: ConditionalEnv, contexts: list[torch.Tensor]):
        self.env = env
        self.contexts = contexts
        self._graphs: list[StateGraph | None] | None = None
        self.refusal: str | None = None
        self._front: np.ndarray | None | bool = False  # False: not computed yet; None: not enumerable
        self.last_samples: tuple[np.ndarray, np.ndarray] | None = None  # (objective values, preferences)

    @property
    def graphs(self) -> list[StateGraph | None]:
        if self._graphs is None:
            graphs: list[StateGraph | None] = []
            for context in self.contexts:
                try:
                    graphs.append(StateGraph(self.env.fixed(context).to(self.env.device)))
                except TooManyStates as refusal:
                    self.refusal = str(refusal)
                    graphs.append(None)
            self._graphs = graphs
        return self._graphs

    @property
    def front(self) -> np.ndarray | None:
        """The exact Pareto front of the base environment's objects (None where it is too large
        to enumerate)."""
        if self._front is False:
            try:
                states = self.env.base.enumerate_states()
                values = self.env.base.objective_values(states[self.env.base.is_terminal(states)]).cpu().numpy()
                self._front = np.unique(values[pareto_mask(values)], axis=0)
            except TooManyStates:
                self._front = None
        return self._front

    @torch.no_grad()
    def pareto_metrics(self, policy: Policy, generator: torch.Generator | None) -> dict[str, Any]:
        """Multi-objective measures of PARETO_SAMPLES objects, each drawn under a preference from
        the training distribution: hypervolume (reference 0) and R2 of their objective values,
        their diversity (mean pairwise Hamming distance between the objects) and, where the
        base environment is enumerable, the exact front's hypervolume and how many of its points
        the samples hit."""
        objects = sample_objects(self.env, policy, PARETO_SAMPLES, generator)
        values = self.env.objective_values(objects).cpu().numpy()
        self.last_samples = (values, self.env.contexts(objects).cpu().numpy())
        base = self.env.base_states(objects).reshape(len(objects), -1)
        out = {"hypervolume_samples": hypervolume(values), "r2_samples": r2_indicator(values),
               "diversity_samples": mean_pairwise_distance(base),
               "distinct_samples": len(torch.unique(base, dim=0)), "n_pareto_samples": len(objects)}
        front = self.front
        if front is not None:
            hit = {tuple(v) for v in np.round(values, 12)} & {tuple(v) for v in np.round(front, 12)}
            out.update(hypervolume_front=hypervolume(front), r2_front=r2_indicator(front), front_size=len(front),
                       front_found_samples=len(hit))
        return out

    @torch.no_grad()
    def evaluate(self, policy: Policy, log_z_at, generator: torch.Generator | None = None) -> dict[str, Any]:
        """{"contexts": [per-context metrics], "l1_contexts_mean", "l1_contexts_max"}; the
        per-context entries hold the context, the learned log Z(c) (`log_z_at(policy, s0)`)
        and, where the fixed environment is enumerable, the exact metrics and log Z(c)."""
        entries = []
        for context, graph in zip(self.contexts, self.graphs):
            fixed = self.env.fixed(context).to(self.env.device)
            entry: dict[str, Any] = {name: float(v) for name, v in zip(self.env.condition.columns, context)}
            entry["log_z"] = log_z_at(policy, fixed.initial_states(1))
            if graph is not None:
                learned = graph.terminal_distribution(policy)
                entry.update(distribution_metrics(learned, graph.target))
                entry["log_z_true"] = float(graph.log_z)
            entries.append(entry)
        out: dict[str, Any] = {"contexts": entries}
        l1 = [e["l1"] for e in entries if "l1" in e]
        if l1:
            out["l1_contexts_mean"] = sum(l1) / len(l1)
            out["l1_contexts_max"] = max(l1)
        if isinstance(self.env.condition, Preference):
            out.update(self.pareto_metrics(policy, generator))
        return out

    def plots(self, policy: Policy, folder: Path) -> list[Path]:
        """One figure per context: learned vs target as side-by-side heatmaps on a 2-D grid
        (base states of two coordinates, with a `height`), else the learned-vs-target scatter."""
        from gflownets import figures  # matplotlib: only when plotting

        written = []
        if self.last_samples is not None and self.front is not None and self.front.shape[1] == 2:
            values, preferences = self.last_samples
            with figures.skipped_plots():
                written.append(figures.plot_pareto([(f"{len(values)} samples, each its own preference", values)],
                                                   self.front, folder / "pareto.png", colours=[preferences[:, 0]]))
        base = self.env.base
        grid = tuple(base.state_shape) == (2,) and hasattr(base, "height")
        for context, graph in zip(self.contexts, self.graphs):
            if graph is None:
                continue
            label = self.env.condition.label(context).replace(",", "_")
            out = folder / f"distribution-{label}.png"
            with figures.skipped_plots():
                learned = graph.terminal_distribution(policy).cpu().numpy()
                target = graph.target.cpu().numpy()
                if grid:
                    figures.check_heatmap(out, base.height)
                    coords = self.env.base_states(graph.terminal_states).cpu().numpy()
                    written.append(figures.plot_grid_distributions(coords, learned, target, out, height=base.height))
                else:
                    written.append(figures.plot_distribution_scatter(learned, target, out))
        return written


def contexts_for(env: ConditionalEnv, text: str) -> list[torch.Tensor]:
    return parse_contexts(env, text) if text.strip() else default_contexts(env)
