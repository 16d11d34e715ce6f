"""A GFlowNet and the baselines side by side on one enumerable environment, at equal reward calls,
measured as the first GFlowNet paper did: the L1 distance between the empirical distribution of
the last `window` objects each method visited and the exact target, and the modes it has found,
against the reward calls spent; for the GFlowNet also the exact L1 of its learned distribution."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gflownets.baselines.samplers import MetropolisSampler, RandomSampler
from gflownets.errors import ConfigError
from gflownets.evaluation.exact import StateGraph
from gflownets.evaluation.metrics import distribution_metrics
from gflownets.training import RunConfig, Trainer

#: the methods `compare` knows
METHODS = ("gfn", "mcmc", "random")


class VisitWindow:
    """Counts of the last `size` visited objects over the graph's terminal states (a ring of
    their positions, so each visit is added and the one it pushes out subtracted), and every mode
    seen so far."""

    def __init__(self, graph: StateGraph, size: int):
        self.graph, self.size = graph, size
        n = len(graph.terminal_ids)
        self.ring = torch.full((size,), -1, dtype=torch.long)
        self.next = 0  # the ring slot the next visit overwrites
        self.counts = torch.zeros(n, dtype=torch.long)
        self.modes_seen = torch.zeros(n, dtype=torch.bool)

    def add(self, objects: torch.Tensor) -> None:
        positions = self.graph.terminal_positions(objects).cpu()
        if (positions < 0).any():
            raise ValueError("a visited object is not a terminal state of the environment")
        positions = positions[-self.size:]
        slots = (self.next + torch.arange(len(positions))) % self.size
        evicted = self.ring[slots]
        evicted = evicted[evicted >= 0]
        self.counts.index_add_(0, evicted, torch.full_like(evicted, -1))
        self.counts.index_add_(0, positions, torch.ones_like(positions))
        self.ring[slots] = positions
        self.next = int((self.next + len(positions)) % self.size)
        self.modes_seen[positions] = True

    def l1(self) -> float:
        counts = self.counts.double()
        return distribution_metrics(counts / counts.sum(), self.graph.target.cpu())["l1"]

    @property
    def modes_found(self) -> int:
        return int((self.modes_seen & self.graph.mode_mask.cpu()).sum())


def compare(config: RunConfig, methods: list[str], budget: int, every: int, window: int = 200_000,
            n_chains: int = 16, graph: StateGraph | None = None) -> list[dict[str, Any]]:
    """Run each method until `budget` reward calls; every `every` calls a point {method,
    reward_calls, l1_visited, modes_found, n_modes, seconds} (and `l1_learned` for the GFlowNet).
    `config`: a RunConfig for the GFlowNet (its environment, objective and batch size; the
    random sampler rolls out batches of the same size); `n_chains` MCMC chains."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if budget < 1 or every < 1:
        raise ConfigError(f"budget and every must be >= 1, got {budget} and {every}")
    env = config.build_env()
    graph = StateGraph(env) if graph is None else graph
    points: list[dict[str, Any]] = []
    for method in methods:
        generator = torch.Generator().manual_seed(config.seed)
        visits = VisitWindow(graph, window)
        if method == "gfn":
            trainer = Trainer(config, progress=False)
            trainer_graph = trainer.graph if trainer.graph is not None else StateGraph(trainer.env)

            def step() -> tuple[torch.Tensor, int]:
                trainer.train_step()
                trainer.step += 1
                batch = trainer.last_batch
                return batch.terminal_states, len(batch)
        else:
            sampler = MetropolisSampler(env, n_chains) if method == "mcmc" else RandomSampler(env, config.batch_size)

            def step() -> tuple[torch.Tensor, int]:
                before = sampler.reward_calls
                objects = sampler.step(generator)
                return objects, sampler.reward_calls - before
        calls, next_point, started = 0, every, time.perf_counter()
        while calls < budget:
            objects, cost = step()
            calls += cost
            visits.add(objects)
            if calls >= next_point or calls >= budget:
                point = {"method": method, "reward_calls": calls, "l1_visited": visits.l1(),
                         "modes_found": visits.modes_found, "n_modes": graph.n_modes,
                         "seconds": time.perf_counter() - started}
                if method == "gfn":
                    learned = trainer_graph.terminal_distribution(trainer.eval_policy)
                    point["l1_learned"] = distribution_metrics(learned, trainer_graph.target)["l1"]
                points.append(point)
                next_point += every
    return points


#: the columns of the comparison table (each method's last point)
TABLE_COLUMNS = ("method", "reward_calls", "l1_visited", "l1_learned", "modes_found", "n_modes", "seconds")


def write_comparison(config: RunConfig, methods: list[str], budget: int, every: int, window: int, n_chains: int,
                     out: Path) -> str:
    """`compare`, then write out/comparison.json (every point), comparison.csv and .md (each
    method's last point) and plots/l1.png, plots/modes.png against reward calls; returns the
    Markdown table."""
    from gflownets.figures import plot_curves, skipped_plots
    from gflownets.training.io import atomic_write_json, atomic_write_text

    graph = StateGraph(config.build_env())
    points = compare(config, methods, budget, every, window, n_chains, graph)
    last = [[p for p in points if p["method"] == m][-1] for m in methods]
    # where a perfect sampler of trajectories in proportion to R (maximum-entropy RL's optimum) would be
    trajectory_level_l1 = distribution_metrics(graph.trajectory_level_distribution(), graph.target)["l1"]
    (out / "plots").mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "comparison.json", {"env": config.env, "env_args": config.env_args, "budget": budget,
                                                "window": window, "chains": n_chains,
                                                "l1_trajectory_level_optimum": trajectory_level_l1, "points": points})

    def cell(value: Any) -> str:
        return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)

    atomic_write_text(out / "comparison.csv", "\n".join(",".join(cell(row.get(c)) for c in TABLE_COLUMNS)
                                                          for row in [dict(zip(TABLE_COLUMNS, TABLE_COLUMNS)), *last]) + "\n")
    markdown = "\n".join(["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + " --- |" * len(TABLE_COLUMNS),
                          *("| " + " | ".join(cell(row.get(c)) for c in TABLE_COLUMNS) + " |" for row in last)])
    markdown += (f"\n\nA perfect sampler of trajectories in proportion to R (maximum-entropy RL's optimum) would "
                 f"stand at L1 {trajectory_level_l1:.4g}: it counts each object once per construction path.")
    atomic_write_text(out / "comparison.md", markdown + "\n")
    curves_l1: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    curves_modes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for method in methods:
        rows = [p for p in points if p["method"] == method]
        calls = np.array([p["reward_calls"] for p in rows])
        curves_l1[f"{method}: last visited"] = (calls, np.array([p["l1_visited"] for p in rows]))
        if method == "gfn":
            curves_l1["gfn: learned (exact)"] = (calls, np.array([p["l1_learned"] for p in rows]))
        curves_modes[method] = (calls, np.array([p["modes_found"] for p in rows]))
    with skipped_plots():
        plot_curves(curves_l1, out / "plots" / "l1.png", "reward calls", "L1 to the exact target",
                    f"{config.env}: L1 against reward calls")
    with skipped_plots():
        plot_curves(curves_modes, out / "plots" / "modes.png", "reward calls", "modes found",
                    f"{config.env}: modes found (of {last[0]['n_modes']})")
    return markdown
