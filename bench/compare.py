"""GFlowNet vs MCMC vs random search on the first GFlowNet paper's hypergrid, at equal reward calls
(`gflownets.comparison`, the engine of `gflownets compare`).

    python bench/compare.py [--heights 8] [--r0 0.1 0.01 0.001] [--budget 200000]

For each side H and base reward R0 (4-D grid, R1 = 0.5, R2 = 2): trajectory balance (MLP
2 x 256, batch 16, seed 0), 16 Metropolis chains with the grid's +-1 moves, and uniform
rollouts in batches of 16, each until `--budget` reward calls. Reported per method: the L1
between the empirical distribution of the last 200k visited objects and the exact target, the
GFlowNet's exact learned L1, and modes found (cells of maximal reward visited at least once).
PPO, SAC and MCTS are not in the library yet (#17). Prints the
tables and writes bench/results/compare-hypergrid-H<H>-r0<R0>/ (comparison.json, .csv, .md,
plots) and bench/results/compare-hypergrid.json.
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
    parser.add_argument("--methods", default="gfn,mcmc,random")
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
    (RESULTS / "compare-hypergrid.json").write_text(json.dumps({"args": vars(args), "machine": machine(),
                                                                 "points": tables}, indent=2) + "\n")


if __name__ == "__main__":
    main()
