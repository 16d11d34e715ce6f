"""GFlowNet vs MCMC, PPO, soft Q-learning, MCTS and random search on the first GFlowNet paper's
hypergrid, at equal reward calls (`gflownets.comparison`, the engine of `gflownets compare`).

    python bench/compare.py [--heights 8] [--r0 0.1 0.01 0.001] [--budget 200000] [--methods ...]

For each side H and base reward R0 (4-D grid, R1 = 0.5, R2 = 2), each method until `--budget`
reward calls, seed 0, one thread: trajectory balance (MLP 2 x 256, batch 16); 16 Metropolis
chains with the grid's +-1 moves; uniform rollouts in batches of 16; PPO on R(x) (the same MLP
with a value head on the shared trunk, 64 trajectories per rollout, 4 epochs of minibatches of
64 steps, clip 0.2, entropy 0.01, GAE 0.95: stable-baselines3's settings); soft Q-learning on
log R (the same MLP, 16 trajectories and 4 updates of 256 transitions per step, Polyak 0.01);
maximum-entropy MCTS (16 simulations per step). Reported per method: the L1 between the
empirical distribution of the last 200k visited objects and the exact target; the exact L1 of
what it learned to sample (GFlowNet, PPO, soft Q, MCTS's visit counts); modes found (cells of
maximal reward visited at least once); the mean reward and diversity of the 100 best distinct
objects found. Prints the tables and writes bench/results/compare-hypergrid-H<H>-r0<R0>/
(comparison.json, .csv, .md, plots) and bench/results/compare-hypergrid.json.
"""

from __future__ import annotations

import argparse
import json

import torch

from common import RESULTS, machine
from gflownets.comparison import write_comparison
from gflownets.training import RunConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heights", type=int, nargs="+", default=[8])
    parser.add_argument("--r0", type=float, nargs="+", default=[0.1, 0.01, 0.001])
    parser.add_argument("--budget", type=int, default=200_000)
    parser.add_argument("--methods", default="gfn,mcmc,ppo,soft-q,mcts,random")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tables = {}
    for height in args.heights:
        for r0 in args.r0:
            config = RunConfig(env="hypergrid", env_args={"ndim": 4, "height": height, "r0": r0}, iters=10 ** 9,
                               batch_size=16, hidden=256, eval_every=0, seed=0, threads=1)
            out = RESULTS / f"compare-hypergrid-H{height}-r0{r0:g}"
            table = write_comparison(config, args.methods.split(","), args.budget, max(1, args.budget // 20),
                                     200_000, 16, out)
            print(f"\n4-D hypergrid, H = {height}, R0 = {r0:g}, {args.budget} reward calls\n{table}", flush=True)
            tables[f"H{height}-r0{r0:g}"] = json.loads((out / "comparison.json").read_text())["points"]
    name = "compare-hypergrid" + ("" if args.heights == [8] else "-H" + "-".join(map(str, args.heights)))
    (RESULTS / f"{name}.json").write_text(json.dumps({"args": vars(args), "machine": machine(), "points": tables},
                                                     indent=2) + "\n")


if __name__ == "__main__":
    main()
