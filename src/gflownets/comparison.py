"""A GFlowNet and the baselines side by side on one enumerable environment, at equal reward calls,
measured as the first GFlowNet paper did: the L1 distance between the empirical distribution of
the last `window` objects each method visited and the exact target, and the modes it has found,
against the reward calls spent; the exact L1 of what each learning method has learned to sample
(the GFlowNet, PPO and soft Q-learning policies, MCTS's visit counts); and the mean reward and
diversity of the k best distinct objects found so far."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gflownets.baselines import BASELINES, make_baseline
from gflownets.envs.base import DiscreteEnv
from gflownets.errors import ConfigError
from gflownets.evaluation.exact import StateGraph
from gflownets.evaluation.metrics import distribution_metrics
from gflownets.measures.distances import hamming_matrix
from gflownets.measures.diversity import mean_pairwise_distance
from gflownets.training import RunConfig, Trainer


def methods() -> tuple[str, ...]:
    """The methods `compare` knows: the GFlowNet and every registered baseline."""
    return ("gfn", *BASELINES)


def baseline_options(method: str, config: RunConfig, n_chains: int) -> dict[str, Any]:
    """What each baseline takes from the comparison's settings: the GFlowNet's network (width,
    depth, seed) for the learning methods, its batch of rollouts for random search and soft
    Q-learning; PPO keeps its own rollout size, MCMC runs `n_chains` chains."""
    network = {"hidden": config.hidden, "layers": config.layers, "seed": config.seed}
    return {"random": {"batch_size": config.batch_size}, "mcmc": {"n_chains": n_chains},
            "ppo": network, "soft-q": {**network, "rollout": config.batch_size},
            "mcts": {"simulations": config.batch_size}}.get(method, {})


class VisitWindow:
    """Counts of the last `size` visited objects over the graph's terminal states (a ring of
    their positions, so each visit is added and the one it pushes out subtracted), and every
    object seen so far (for modes found and the k best)."""

    def __init__(self, graph: StateGraph, size: int):
        self.graph, self.size = graph, size
        n = len(graph.terminal_ids)
        self.ring = torch.full((size,), -1, dtype=torch.long)
        self.next = 0  # the ring slot the next visit overwrites
        self.counts = torch.zeros(n, dtype=torch.long)
        self.seen = torch.zeros(n, dtype=torch.bool)

    def add(self, objects: torch.Tensor) -> None:
        positions = self.graph.terminal_positions(objects).cpu()
        if (positions < 0).any():
            raise ValueError("a visited object is not a terminal state of the environment")
        self.seen[positions] = True
        positions = positions[-self.size:]
        slots = (self.next + torch.arange(len(positions))) % self.size
        evicted = self.ring[slots]
        evicted = evicted[evicted >= 0]
        self.counts.index_add_(0, evicted, torch.full_like(evicted, -1))
        self.counts.index_add_(0, positions, torch.ones_like(positions))
        self.ring[slots] = positions
        self.next = int((self.next + len(positions)) % self.size)

    def distribution(self) -> torch.Tensor:
        counts = self.counts.double()
        return counts / counts.sum()

    def l1(self) -> float:
        return distribution_metrics(self.distribution(), self.graph.target.cpu())["l1"]

    @property
    def modes_found(self) -> int:
        return int((self.seen & self.graph.mode_mask.cpu()).sum())

    def top_k(self, k: int, env: DiscreteEnv) -> tuple[float, float]:
        """Mean reward and diversity (mean pairwise `env.distance_matrix`, Hamming on the state
        entries where the environment has none) of the k best distinct objects seen."""
        seen = self.seen.nonzero().squeeze(1)
        log_rewards = self.graph.log_rewards.cpu()[seen]
        best = seen[log_rewards.argsort(descending=True, stable=True)[:k]]
        objects = self.graph.terminal_states.cpu()[best]
        distance = getattr(env, "distance_matrix", hamming_matrix)
        return (float(self.graph.log_rewards.cpu()[best].exp().mean()),
                mean_pairwise_distance(objects.reshape(len(objects), -1) if distance is hamming_matrix else objects,
                                       distance))


def compare(config: RunConfig, methods_to_run: list[str], budget: int, every: int, window: int = 200_000,
            n_chains: int = 16, graph: StateGraph | None = None, top_k: int = 100,
            final: dict[str, dict[str, torch.Tensor]] | None = None) -> list[dict[str, Any]]:
    """Run each method until `budget` reward calls; every `every` calls a point {method,
    reward_calls, l1_visited, modes_found, n_modes, top{k}_reward, top{k}_diversity, seconds}
    and, for the methods that learn a sampler, `l1_learned`. `config`: a RunConfig for the
    GFlowNet (environment, objective, batch size, network), whose settings the baselines share
    (`baseline_options`). `final`, if given, receives each method's last visited and learned
    distributions (over `graph.terminal_states`)."""
    unknown = sorted(set(methods_to_run) - set(methods()))
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(methods())}")
    if budget < 1 or every < 1 or top_k < 1:
        raise ConfigError(f"budget, every and top_k must be >= 1, got {budget}, {every} and {top_k}")
    env = config.build_env()
    graph = StateGraph(env) if graph is None else graph
    points: list[dict[str, Any]] = []
    for method in methods_to_run:
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

            def learned() -> torch.Tensor | None:
                return trainer_graph.terminal_distribution(trainer.eval_policy)
        else:
            sampler = make_baseline(method, env, **baseline_options(method, config, n_chains))

            def step() -> tuple[torch.Tensor, int]:
                before = sampler.reward_calls
                objects = sampler.step(generator)
                return objects, sampler.reward_calls - before

            def learned() -> torch.Tensor | None:
                return sampler.learned_distribution(graph)
        calls, next_point, started, measuring = 0, every, time.perf_counter(), 0.0
        while calls < budget:
            objects, cost = step()
            calls += cost
            visits.add(objects)
            if calls >= next_point or calls >= budget:
                measured_at = time.perf_counter()
                seconds = measured_at - started - measuring  # the method's own time, not the measurements'
                top_reward, top_diversity = visits.top_k(top_k, env)
                point = {"method": method, "reward_calls": calls, "l1_visited": visits.l1(),
                         "modes_found": visits.modes_found, "n_modes": graph.n_modes,
                         f"top{top_k}_reward": top_reward, f"top{top_k}_diversity": top_diversity,
                         "seconds": seconds}
                distribution = learned()
                if distribution is not None:
                    point["l1_learned"] = distribution_metrics(distribution.cpu(), graph.target.cpu())["l1"]
                points.append(point)
                next_point += every
                measuring += time.perf_counter() - measured_at
        if final is not None:
            final[method] = {"visited": visits.distribution(), "learned": learned()}
    return points


def table_columns(top_k: int) -> tuple[str, ...]:
    """The columns of the comparison table (each method's last point)."""
    return ("method", "reward_calls", "l1_visited", "l1_learned", "modes_found", "n_modes", f"top{top_k}_reward",
            f"top{top_k}_diversity", "seconds")


def write_comparison(config: RunConfig, methods_to_run: list[str], budget: int, every: int, window: int,
                     n_chains: int, out: Path, top_k: int = 100) -> str:
    """`compare`, then write out/comparison.json (every point), comparison.csv and .md (each
    method's last point) and plots against reward calls (plots/l1.png, modes.png, top_k.png)
    and of the final distributions (plots/distributions.png: heatmaps side by side on a 2-D
    grid, otherwise each method's probabilities against the objects ranked by target); returns
    the Markdown table."""
    from gflownets.figures import plot_curves, plot_grid_panels, skipped_plots
    from gflownets.training.io import atomic_write_json, atomic_write_text

    env = config.build_env()
    graph = StateGraph(env)
    final: dict[str, dict[str, torch.Tensor]] = {}
    points = compare(config, methods_to_run, budget, every, window, n_chains, graph, top_k, final)
    last = [[p for p in points if p["method"] == m][-1] for m in methods_to_run]
    # where a perfect sampler of trajectories in proportion to R (maximum-entropy RL's optimum) would be
    trajectory_level_l1 = distribution_metrics(graph.trajectory_level_distribution(), graph.target)["l1"]
    (out / "plots").mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "comparison.json", {"env": config.env, "env_args": config.env_args, "budget": budget,
                                                "window": window, "chains": n_chains, "top_k": top_k,
                                                "l1_trajectory_level_optimum": trajectory_level_l1, "points": points})

    def cell(value: Any) -> str:
        return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)

    columns = table_columns(top_k)
    atomic_write_text(out / "comparison.csv", "\n".join(",".join(cell(row.get(c)) for c in columns)
                                                          for row in [dict(zip(columns, columns)), *last]) + "\n")
    markdown = "\n".join(["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns),
                          *("| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in last)])
    markdown += (f"\n\nA perfect sampler of trajectories in proportion to R (maximum-entropy RL's optimum) would "
                 f"stand at L1 {trajectory_level_l1:.4g}: it counts each object once per construction path.")
    atomic_write_text(out / "comparison.md", markdown + "\n")
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {"l1": {}, "modes": {}, "top_k": {}}
    for method in methods_to_run:
        rows = [p for p in points if p["method"] == method]
        calls = np.array([p["reward_calls"] for p in rows])
        curves["l1"][f"{method}: last visited"] = (calls, np.array([p["l1_visited"] for p in rows]))
        if "l1_learned" in rows[-1]:
            curves["l1"][f"{method}: learned (exact)"] = (calls, np.array([p["l1_learned"] for p in rows]))
        curves["modes"][method] = (calls, np.array([p["modes_found"] for p in rows]))
        curves["top_k"][method] = (calls, np.array([p[f"top{top_k}_reward"] for p in rows]))
    for name, ylabel, title in (("l1", "L1 to the exact target", "L1 against reward calls"),
                                ("modes", "modes found", f"modes found (of {graph.n_modes})"),
                                ("top_k", f"mean reward of the top {top_k}", f"top-{top_k} reward found")):
        with skipped_plots():
            plot_curves(curves[name], out / "plots" / f"{name}.png", "reward calls", ylabel, f"{config.env}: {title}")
    panels = [("target R(x)/Z", graph.target.cpu().numpy())]
    for method in methods_to_run:
        panels.append((f"{method}: last visited", final[method]["visited"].numpy()))
        if final[method]["learned"] is not None:
            panels.append((f"{method}: learned", final[method]["learned"].cpu().numpy()))
    with skipped_plots():
        if env.name == "hypergrid" and graph.terminal_states.shape[1] == 2:
            plot_grid_panels(graph.terminal_states.cpu().numpy(), panels, out / "plots" / "distributions.png",
                             height=env.config.height)
        else:
            order = np.argsort(-panels[0][1], kind="stable")
            ranks = np.arange(1, len(order) + 1)
            plot_curves({title: (ranks, values[order]) for title, values in panels},
                        out / "plots" / "distributions.png", "objects ranked by target probability", "probability",
                        f"{config.env}: final distributions")
    return markdown
