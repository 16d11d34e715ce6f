"""MCTS's path-counting bias on seed 003's sets with variable sizes (#17), against a GFlowNet.

    python bench/mcts_sets.py [--n-items 8] [--set-size 4] [--min-size 1] [--betas 1 2]
                              [--budget 100000] [--epsilons 0.1 0.01]

Sets of `--min-size` to `--set-size` of `--n-items` items (a set of k items has k! construction
orders), default reward at each inverse temperature of `--betas`. Maximum-entropy MCTS
(`gflownets.baselines.MCTSSampler`, 16 simulations per step, tau = 1) searches the tree of
construction paths for `--budget` reward calls; its visit counts, read as a sampler
(`visit_distribution`, exact), are measured against the exact target R(x) / Z and against the
trajectory-level distribution R(x) paths(x) / sum (the limit of any search that counts paths),
at 1/16, 1/4 and all of the budget, for each exploration strength `--epsilons`; so is the
Boltzmann policy of its soft values (`policy_distribution`: where the visits head once
exploration has decayed). Next to them, trajectory balance (MLP 2 x 256, batch 16, seed 0) for
the same number of reward calls, measured exactly (`StateGraph.terminal_distribution`).

Prints, per beta, a summary and the probability mass per set size with its over-representation
factor (mass / target mass; the trajectory-level factor is k! Z / Z_paths, so any two sizes
differ by k! / j!). Writes bench/results/mcts-sets.json. About 2 minutes on one core.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from common import save_result
from gflownets.baselines import MCTSSampler
from gflownets.envs import Sets
from gflownets.evaluation import StateGraph
from gflownets.evaluation.metrics import distribution_metrics
from gflownets.training import RunConfig, Trainer


def l1(p: torch.Tensor, q: torch.Tensor) -> float:
    return distribution_metrics(p, q)["l1"]


def markdown(rows: list[dict], keys: list[str]) -> str:
    def cell(value) -> str:
        if value is None:
            return "-"
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(keys) + " |", "|" + "|".join("---" for _ in keys) + "|"]
    lines += ["| " + " | ".join(cell(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def run_beta(args, beta: float) -> dict:
    env_args = {"n_items": args.n_items, "set_size": args.set_size, "min_size": args.min_size, "beta": beta}
    env = Sets(**env_args)
    graph = StateGraph(env)
    target, paths_level = graph.target, graph.trajectory_level_distribution()
    sizes = graph.terminal_states.sum(dim=1)
    size_range = range(args.min_size, args.set_size + 1)

    def by_size(p: torch.Tensor) -> list[float]:
        return [float(p[sizes == k].sum()) for k in size_range]

    summary = [{"method": "R x paths (the limit of path counting)", "reward calls": None,
                "L1 to target": l1(paths_level, target), "L1 to R x paths": 0.0}]
    masses = {"target": by_size(target), "R x paths": by_size(paths_level)}
    checkpoints = sorted({max(args.simulations, args.budget // 16), max(args.simulations, args.budget // 4),
                          args.budget})
    curves = {}
    for epsilon in args.epsilons:
        sampler = MCTSSampler(env, simulations=args.simulations, epsilon=epsilon)
        generator = torch.Generator().manual_seed(args.seed)
        started = time.perf_counter()
        curve = []
        for checkpoint in checkpoints:
            while sampler.reward_calls < checkpoint:
                sampler.step(generator)
            visits, policy = sampler.visit_distribution(graph), sampler.policy_distribution(graph)
            curve.append({"reward_calls": sampler.reward_calls, "seconds": round(time.perf_counter() - started, 1),
                          "nodes": sampler.n_nodes, "l1_target": l1(visits, target),
                          "l1_paths": l1(visits, paths_level),
                          "policy_l1_target": l1(policy, target), "policy_l1_paths": l1(policy, paths_level)})
            summary.append({"method": f"MCTS visits, eps {epsilon:g}", "reward calls": sampler.reward_calls,
                            "L1 to target": curve[-1]["l1_target"], "L1 to R x paths": curve[-1]["l1_paths"],
                            "tree nodes": sampler.n_nodes, "seconds": curve[-1]["seconds"]})
            print(f"beta {beta:g} eps {epsilon:g}: {curve[-1]}", flush=True)
        summary.append({"method": f"MCTS soft-value policy, eps {epsilon:g}", "reward calls": sampler.reward_calls,
                        "L1 to target": curve[-1]["policy_l1_target"], "L1 to R x paths": curve[-1]["policy_l1_paths"]})
        masses[f"MCTS eps {epsilon:g}"] = by_size(visits)
        curves[f"{epsilon:g}"] = curve

    config = RunConfig(env="sets", env_args=env_args, iters=max(1, args.budget // 16), batch_size=16, hidden=256,
                       eval_every=0, seed=args.seed, threads=1)
    started = time.perf_counter()
    trainer = Trainer(config, progress=False)
    trainer.run()
    learned = graph.terminal_distribution(trainer.eval_policy)
    summary.append({"method": "GFlowNet (TB), exact", "reward calls": config.iters * config.batch_size,
                    "L1 to target": l1(learned, target), "L1 to R x paths": l1(learned, paths_level),
                    "seconds": round(time.perf_counter() - started, 1)})
    masses["GFlowNet"] = by_size(learned)

    per_size = []
    for i, k in enumerate(size_range):
        row = {"size": k, "paths": math.factorial(k), "sets": math.comb(args.n_items, k)}
        for name, mass in masses.items():
            row[f"mass {name}"] = mass[i]
        for name, mass in masses.items():
            if name != "target":
                row[f"factor {name}"] = mass[i] / masses["target"][i]
        per_size.append(row)
    print(f"\n### Sets of {args.min_size}-{args.set_size} of {args.n_items} items, beta = {beta:g}, "
          f"{len(graph.terminal_ids)} sets\n")
    print(markdown(summary, ["method", "reward calls", "L1 to target", "L1 to R x paths", "tree nodes", "seconds"]))
    print()
    print(markdown(per_size, list(per_size[0])))
    print(flush=True)
    return {"beta": beta, "n_sets": len(graph.terminal_ids), "summary": summary, "per_size": per_size,
            "mcts_curves": curves}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-items", type=int, default=8)
    parser.add_argument("--set-size", type=int, default=4)
    parser.add_argument("--min-size", type=int, default=1)
    parser.add_argument("--betas", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--budget", type=int, default=100_000, help="reward calls of each method")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.1, 0.01], help="MENTS exploration")
    parser.add_argument("--simulations", type=int, default=16, help="MCTS simulations per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON path (default bench/results/mcts-sets.json)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    runs = [run_beta(args, beta) for beta in args.betas]
    save_result({"runs": runs, "seconds": round(time.perf_counter() - started, 1)}, args, "mcts-sets.json")


if __name__ == "__main__":
    main()
