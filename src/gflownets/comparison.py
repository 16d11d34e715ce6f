"""A GFlowNet and the baselines side by side on one environment, at equal reward calls. Where the
environment is enumerable, as the first GFlowNet paper measured: the L1 distance between the
empirical distribution of the last `window` objects each method visited and the exact target,
and the modes (objects of maximal reward) it has found, against the reward calls spent; and the
exact L1 of what each learning method has learned to sample (the GFlowNet, PPO and soft
Q-learning policies, MCTS's visit counts). On every environment: the mean reward and diversity
of the k best distinct objects found so far, and, where the environment knows its modes
(`modes_hit`), the modes found."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gflownets.baselines import BASELINES, make_baseline
from gflownets.envs.base import DiscreteEnv
from gflownets.errors import ConfigError
from gflownets.evaluation.evaluator import mode_tracker
from gflownets.evaluation.exact import StateGraph, try_state_graph
from gflownets.evaluation.metrics import distribution_metrics
from gflownets.measures.distances import hamming_matrix
from gflownets.measures.diversity import mean_pairwise_distance
from gflownets.sources.replay import ReplayBuffer
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

    @property
    def n_modes(self) -> int:
        return self.graph.n_modes

    def top_k(self, k: int, env: DiscreteEnv) -> tuple[float, float]:
        """Mean reward and diversity of the k best distinct objects seen (`reward_and_diversity`)."""
        seen = self.seen.nonzero().squeeze(1)
        best = seen[self.graph.log_rewards.cpu()[seen].argsort(descending=True, stable=True)[:k]]
        return reward_and_diversity(env, self.graph.terminal_states[best], self.graph.log_rewards[best])


class BestObjects:
    """What is measured where the environment is too large to enumerate: the k best distinct
    objects visited (a reward-prioritised replay buffer of capacity k; visited objects are scored
    again for it, calls that are the measurement's and not charged to the method) and the
    environment's known modes hit, where it knows them (`modes_hit`)."""

    def __init__(self, env: DiscreteEnv, k: int):
        self.env = env
        self.best = ReplayBuffer(k, env.state_shape, keep="best", device=env.device)
        self.modes = mode_tracker(env, None)

    def add(self, objects: torch.Tensor) -> None:
        self.best.add(objects, self.env.log_reward(objects))
        if self.modes is not None:
            self.modes.add(objects)

    @property
    def modes_found(self) -> int | None:
        return None if self.modes is None else self.modes.n_found

    @property
    def n_modes(self) -> int | None:
        return None if self.modes is None else self.modes.n_modes

    def top_k(self, k: int, env: DiscreteEnv) -> tuple[float, float]:
        return reward_and_diversity(env, self.best.objects[:self.best.size], self.best.log_rewards[:self.best.size])


def reward_and_diversity(env: DiscreteEnv, objects: torch.Tensor, log_rewards: torch.Tensor) -> tuple[float, float]:
    """Mean reward and diversity of distinct objects: their mean pairwise `env.distance_matrix`
    (edit or Hamming distance of sequences), or the number of state entries in which they differ
    where the environment defines no distance."""
    distance = getattr(env, "distance_matrix", None)
    if distance is None:
        objects, distance = objects.reshape(len(objects), -1), hamming_matrix
    return float(log_rewards.double().exp().mean()), mean_pairwise_distance(objects, distance)


def compare(config: RunConfig, methods_to_run: list[str], budget: int, every: int, window: int = 200_000,
            n_chains: int = 16, graph: StateGraph | None = None, top_k: int = 100,
            final: dict[str, dict[str, torch.Tensor]] | None = None) -> list[dict[str, Any]]:
    """Run each method until `budget` reward calls; every `every` calls a point {method,
    reward_calls, l1_visited, modes_found, n_modes, top{k}_reward, top{k}_diversity, seconds}
    and, for the methods that learn a sampler, `l1_learned`; on an environment too large to
    enumerate (no `graph`), no L1, and modes only where the environment knows them. `config`: a
    RunConfig for the GFlowNet (environment, objective, batch size, network), whose settings
    the baselines share (`baseline_options`). `final`, if given, receives each enumerable
    method's last visited and learned distributions (over `graph.terminal_states`)."""
    unknown = sorted(set(methods_to_run) - set(methods()))
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(methods())}")
    if budget < 1 or every < 1 or top_k < 1:
        raise ConfigError(f"budget, every and top_k must be >= 1, got {budget}, {every} and {top_k}")
    env = config.build_env()
    graph = try_state_graph(env) if graph is None else graph
    points: list[dict[str, Any]] = []
    for method in methods_to_run:
        generator = torch.Generator().manual_seed(config.seed)
        visits = VisitWindow(graph, window) if graph is not None else BestObjects(env, top_k)
        if method == "gfn":
            # the comparison's graph measures the GFlowNet too: the trainer need not enumerate it again;
            # it runs for the budget, not for config.iters, so the budget decides its path
            gfn_config = dataclasses.replace(config, exact=False)
            if gfn_config.compile is None:
                from gflownets.fast.auto import choose_path

                use, _ = choose_path(gfn_config, env, iterations=budget // config.batch_size)
                gfn_config = dataclasses.replace(gfn_config, compile=use)
            trainer = Trainer(gfn_config, progress=False)

            def step() -> tuple[torch.Tensor, int]:
                # charged what the environment scored: fresh samples, local search's and mutation
                # chains' candidates, not replayed objects
                before = trainer.env.reward_calls
                trainer.train_step()
                trainer.step += 1
                return trainer.last_batch.terminal_states, trainer.env.reward_calls - before

            def learned() -> torch.Tensor | None:
                return None if graph is None else graph.terminal_distribution(trainer.eval_policy)
        else:
            sampler = make_baseline(method, env, **baseline_options(method, config, n_chains))

            def step() -> tuple[torch.Tensor, int]:
                before = sampler.reward_calls
                objects = sampler.step(generator)
                return objects, sampler.reward_calls - before

            def learned() -> torch.Tensor | None:
                return None if graph is None else sampler.learned_distribution(graph)
        calls, next_point, started, measuring = 0, every, time.perf_counter(), 0.0
        while calls < budget:
            objects, cost = step()
            calls += cost
            visits.add(objects)
            if calls >= next_point or calls >= budget:
                measured_at = time.perf_counter()
                seconds = measured_at - started - measuring  # the method's own time, not the measurements'
                top_reward, top_diversity = visits.top_k(top_k, env)
                point = {"method": method, "reward_calls": calls,
                         **({"l1_visited": visits.l1()} if graph is not None else {}),
                         **({"modes_found": visits.modes_found, "n_modes": visits.n_modes}
                            if visits.n_modes is not None else {}),
                         f"top{top_k}_reward": top_reward, f"top{top_k}_diversity": top_diversity,
                         "seconds": seconds}
                distribution = learned()
                if distribution is not None:
                    point["l1_learned"] = distribution_metrics(distribution.cpu(), graph.target.cpu())["l1"]
                points.append(point)
                next_point += every
                measuring += time.perf_counter() - measured_at
        if final is not None and graph is not None:
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
    and, on an enumerable environment, of the final distributions (plots/distributions.png:
    heatmaps side by side on a 2-D grid, otherwise each method's probabilities against the
    objects ranked by target); returns the Markdown table."""
    from gflownets.training.io import atomic_write_json, atomic_write_text

    env = config.build_env()
    graph = try_state_graph(env)
    final: dict[str, dict[str, torch.Tensor]] = {}
    points = compare(config, methods_to_run, budget, every, window, n_chains, graph, top_k, final)
    last = [[p for p in points if p["method"] == m][-1] for m in methods_to_run]
    # where a perfect sampler of trajectories in proportion to R (maximum-entropy RL's optimum) would be
    trajectory_level_l1 = (None if graph is None else
                           distribution_metrics(graph.trajectory_level_distribution(), graph.target)["l1"])
    (out / "plots").mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "comparison.json", {"env": config.env, "env_args": config.env_args, "budget": budget,
                                                "window": window, "chains": n_chains, "top_k": top_k,
                                                "enumerable": graph is not None,
                                                "l1_trajectory_level_optimum": trajectory_level_l1, "points": points})

    def cell(value: Any) -> str:
        return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)

    columns = [c for c in table_columns(top_k) if any(c in row for row in last)]
    atomic_write_text(out / "comparison.csv", "\n".join(",".join(cell(row.get(c)) for c in columns)
                                                          for row in [dict(zip(columns, columns)), *last]) + "\n")
    markdown = "\n".join(["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns),
                          *("| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in last)])
    if trajectory_level_l1 is not None:
        markdown += (f"\n\nA perfect sampler of trajectories in proportion to R (maximum-entropy RL's optimum) "
                     f"would stand at L1 {trajectory_level_l1:.4g}: it counts each object once per construction "
                     "path.")
    atomic_write_text(out / "comparison.md", markdown + "\n")
    plot_comparison_curves(points, methods_to_run, top_k, out / "plots", config.env)
    if graph is not None:
        np.savez_compressed(out / "distributions.npz", target=graph.target.cpu().numpy(),
                            **{f"{m} {kind}": d[kind].cpu().numpy() for m, d in final.items()
                               for kind in ("visited", "learned") if d[kind] is not None})
        plot_final_distributions(env, graph, final, out / "plots" / "distributions.png")
    return markdown


def plot_comparison_curves(points: list[dict[str, Any]], methods_to_run: list[str], top_k: int, folder: Path,
                           env_name: str) -> None:
    """l1.png, modes.png and top_k.png against reward calls, from `compare`'s points (also
    those saved in comparison.json), one colour per method, learned distributions dashed."""
    from gflownets.figures import plot_curves, skipped_plots

    last = [[p for p in points if p["method"] == m][-1] for m in methods_to_run]
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {"l1": {}, "modes": {}, "top_k": {}}
    colors, dashed = method_colors(methods_to_run), []
    for method in methods_to_run:
        rows = [p for p in points if p["method"] == method]
        calls = np.array([p["reward_calls"] for p in rows])
        for key, name, label in (("l1_visited", "l1", f"{method}: last visited"),
                                 ("l1_learned", "l1", f"{method}: learned (exact)"),
                                 ("modes_found", "modes", method), (f"top{top_k}_reward", "top_k", method)):
            if key in rows[-1]:
                curves[name][label] = (calls, np.array([p[key] for p in rows]))
                colors[label] = colors[method]
        dashed.append(f"{method}: learned (exact)")
    n_modes = last[0].get("n_modes")
    for name, ylabel, title in (("l1", "L1 to the exact target", "L1 against reward calls"),
                                ("modes", "modes found", f"modes found (of {n_modes})"),
                                ("top_k", f"mean reward of the top {top_k}", f"top-{top_k} reward found")):
        if curves[name]:
            with skipped_plots():
                plot_curves(curves[name], folder / f"{name}.png", "reward calls", ylabel,
                            f"{env_name}: {title}", colors=colors, dashed=tuple(dashed))


def method_colors(methods_to_run: list[str]) -> dict[str, str]:
    """One colour per method, the same in every plot of a comparison."""
    return {method: f"C{i % 10}" for i, method in enumerate(methods_to_run)}


def plot_final_distributions(env: DiscreteEnv, graph: StateGraph, final: dict[str, dict[str, torch.Tensor]],
                             out: Path) -> None:
    """The target next to each method's last visited (and learned) distribution: heatmaps on a
    2-D grid; otherwise the cumulative probability of the objects ranked by target probability
    (a sampler of the target follows the target's curve; one that collapses jumps to 1 at the
    objects it keeps), on a log scale of ranks."""
    from gflownets.figures import plot_curves, plot_grid_panels, skipped_plots

    target = graph.target.cpu()
    panels = [("target R(x)/Z", graph.target.cpu().numpy())]
    colors = {"target R(x)/Z": "black", **method_colors(list(final))}
    dashed = []
    for method, distributions in final.items():
        for kind, label in (("visited", "last visited"), ("learned", "learned")):
            if distributions[kind] is not None:
                values = distributions[kind].cpu()
                name = f"{method}: {label} (L1 {distribution_metrics(values, target)['l1']:.2f})"
                panels.append((name, values.cpu().numpy()))
                colors[name] = colors[method]
                if kind == "learned":
                    dashed.append(name)
    with skipped_plots():
        if env.name == "hypergrid" and graph.terminal_states.shape[1] == 2:
            plot_grid_panels(graph.terminal_states.cpu().numpy(), panels, out, height=env.config.height)
        else:
            order = np.argsort(-panels[0][1], kind="stable")
            ranks = np.arange(1, len(order) + 1)
            plot_curves({title: (ranks, np.cumsum(values[order])) for title, values in panels}, out,
                        "objects ranked by target probability", "cumulative probability",
                        f"{env.name}: final distributions", xscale="log", colors=colors, dashed=tuple(dashed))
