"""Conditional GFlowNets: one sampler for every temperature / preference, checked exactly per
context against one unconditional sampler per context; and Branin-Currin's Pareto front.

    python bench/conditional.py exact [--iters 3000] [--seeds 1 2]
    python bench/conditional.py branin-currin [--iters 6000] [--seed 1]

exact: trajectory balance, MLP 2 x 128, batch 32, the same iterations for every sampler.
- 2-D hypergrid of side 8 (the default reward), beta drawn uniformly from [1, 8] per
  trajectory; evaluated at betas 1, 1.68, 2.83, 4.76, 8 (geometric; a continuous draw never
  hits them exactly, so every one is a context "not seen in training").
- sets (n = 8 items, k = 4), preference-conditioned on its two objectives, weighted sum, reward
  exponent 8, weights from Dirichlet(1); evaluated at w0 = 1, 0.75, 0.5, 0.25, 0.
For each context: the exact L1 of the conditional sampler's distribution to that context's
target, next to the exact L1 of an unconditional sampler (a plain environment whose reward is
that context's, R(x)^beta or s(f(x), w)^8) trained alone with the same budget.

branin-currin: the 32 x 32 grid, preference-conditioned (weighted sum, exponent 8), TB, MLP
2 x 128, batch 64. 1000 objects generated, each under its own Dirichlet(1) preference: their
hypervolume (reference 0, objectives in [0, 1]) and R2 against 1000 uniformly random cells and
the exact Pareto front of the grid, and the same for the first 100 of each (1000 random cells
of 1024 are nearly the whole grid, so at n = 1000 random sampling is close to exhaustive); a plot
of the three. Prints tables, writes
bench/results/conditional-<task>.json and bench/results/conditional-branin-currin.png.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from common import RESULTS, save_result, table
from gflownets.envs import BraninCurrin, Hypergrid, Sets
from gflownets.envs.conditional import SCALARISATIONS
from gflownets.figures import plot_pareto
from gflownets.measures.pareto import hypervolume, pareto_mask, r2_indicator
from gflownets.training import RunConfig, Trainer

BETAS = [1.0, 1.68, 2.83, 4.76, 8.0]
PREFERENCES = [[1.0, 0.0], [0.75, 0.25], [0.5, 0.5], [0.25, 0.75], [0.0, 1.0]]
#: the reward exponent of the preference tasks
EXPONENT = 8.0


def budget(args, seed: int) -> dict:
    return {"iters": args.iters, "batch_size": 32, "hidden": 128, "eval_every": 0, "seed": seed, "threads": 1}


def conditional_l1(task: str, args, seed: int) -> tuple[list[float], float]:
    if task == "grid":
        config = RunConfig(env="hypergrid", env_args={"ndim": 2, "height": 8}, condition="beta", beta_range="1,8",
                           eval_contexts=";".join(map(str, BETAS)), **budget(args, seed))
    else:
        config = RunConfig(env="sets", env_args={"n_items": 8, "set_size": 4}, condition="preference",
                           preference_beta=EXPONENT, eval_contexts=";".join(",".join(map(str, w)) for w in PREFERENCES),
                           **budget(args, seed))
    started = time.perf_counter()
    summary = Trainer(config, progress=args.progress).run()
    return [c["l1"] for c in summary["contexts"]], time.perf_counter() - started


def single_context_l1(task: str, context: list[float], args, seed: int) -> float:
    """An unconditional sampler on a plain environment whose reward is the context's."""
    if task == "grid":
        base = Hypergrid(ndim=2, height=8)
        env = Hypergrid(ndim=2, height=8, log_reward_fn=lambda rows: context[0] * base.default_log_reward(rows))
    else:
        base = Sets(n_items=8, set_size=4)
        weights = torch.tensor([context], dtype=torch.float64)

        def log_reward(rows):
            values = base.objective_values(base.objects_from_rows(rows.numpy()))
            return EXPONENT * SCALARISATIONS["sum"](values, weights).clamp(min=1e-6).log()
        env = Sets(n_items=8, set_size=4, log_reward_fn=log_reward)
    config = RunConfig(env=env.name, **budget(args, seed))
    return Trainer(config, env=env, progress=args.progress).run()["l1"]


def run_exact(args) -> dict:
    rows = []
    for task, contexts in (("grid", [[b] for b in BETAS]), ("sets", PREFERENCES)):
        for seed in args.seeds:
            conditional, seconds = conditional_l1(task, args, seed)
            for context, l1 in zip(contexts, conditional):
                single = None if args.conditional_only else single_context_l1(task, context, args, seed)
                row = {"task": task, "seed": seed, "context": ",".join(f"{v:g}" for v in context),
                       "l1_conditional": l1, "l1_single": single, "conditional_s": round(seconds, 1)}
                rows.append(row)
                print(table([row], list(row)), flush=True)
    print(f"\nexact L1 per context, {args.iters} iterations each (one conditional sampler for all contexts, one "
          "unconditional sampler per context)")
    print(table(rows, ["task", "seed", "context", "l1_conditional", "l1_single"]))
    return {"task": "exact", "runs": rows}


def run_branin_currin(args) -> dict:
    config = RunConfig(env="branin-currin", env_args={"height": 32}, condition="preference",
                       preference_beta=EXPONENT, iters=args.iters, batch_size=64, hidden=128, eval_every=0,
                       seed=args.seeds[0], threads=1)
    started = time.perf_counter()
    trainer = Trainer(config, progress=args.progress)
    summary = trainer.run()
    seconds = time.perf_counter() - started
    env = trainer.env
    generator = torch.Generator().manual_seed(args.seeds[0] + 100)
    objects, _ = trainer.sample(args.n, seed=args.seeds[0] + 100)  # each under its own Dirichlet(1) preference
    preferences = env.contexts(objects)[:, 0].numpy()
    generated = env.objective_values(objects).numpy()
    base = BraninCurrin(height=32)
    cells = base.enumerate_states()
    every = base.objective_values(cells).numpy()
    front = every[pareto_mask(every)]
    random_cells = cells[torch.randint(len(cells), (args.n,), generator=generator)]
    random = base.objective_values(random_cells).numpy()
    found = {tuple(v) for v in np.round(generated[pareto_mask(generated)], 12)} & {tuple(v) for v in np.round(front, 12)}
    rows = [{"set": name, "points": len(points), "hypervolume": hypervolume(points), "r2": r2_indicator(points),
             "hypervolume_first100": hypervolume(points[:100]), "r2_first100": r2_indicator(points[:100]),
             "distinct_cells": len(np.unique(points, axis=0))}
            for name, points in (("gflownet", generated), ("random", random), ("exact front", front))]
    rows[0]["front_cells_found"] = len(found)
    rows[1]["front_cells_found"] = len({tuple(v) for v in np.round(random, 12)} & {tuple(v) for v in np.round(front, 12)})
    print(table(rows, ["set", "points", "hypervolume", "r2", "hypervolume_first100", "r2_first100", "distinct_cells",
                       "front_cells_found"]))
    plot = Path(args.out).with_suffix(".png") if args.out else RESULTS / "conditional-branin-currin.png"
    plot_pareto([(f"GFlowNet, {args.n} samples", generated), (f"random, {args.n} cells", random)], front, plot,
                labels=("Branin (normalised, max)", "Currin (normalised, max)"), colours=[preferences, None])
    return {"task": "branin-currin", "train_seconds": round(seconds, 1), "front_size": len(front), "rows": rows,
            "l1_contexts": summary.get("contexts"), "plot": str(plot)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["exact", "branin-currin"])
    parser.add_argument("--iters", type=int, default=None, help="default 3000 (exact), 6000 (branin-currin)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("-n", type=int, default=1000, help="branin-currin: objects generated")
    parser.add_argument("--conditional-only", action="store_true",
                        help="exact: train only the conditional samplers (e.g. with 5x the iterations, the total "
                             "budget of the five single-context samplers)")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.iters = args.iters or (3000 if args.task == "exact" else 6000)
    result = run_exact(args) if args.task == "exact" else run_branin_currin(args)
    save_result(result, args, f"conditional-{args.task}.json")


if __name__ == "__main__":
    main()
