"""The command line, training clock, evaluations and outputs shared by the torch peers of
bench/table_bench.py's tasks (torchgfn_dag.py, torchgfn_ising.py, torchgfn_sets.py): each
script brings one training iteration and a function that tables its log P_F on every task
state; this module times the iterations, evaluates outside the clock, and writes what the
harness reads. NumPy and the standard library only."""

import argparse
import json
import time
from collections.abc import Callable

import numpy as np

from peak_rss import peak_mb


def parse_args(task: str, batch_size: int, exploration: float, exploration_help: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", required=True, help=f".npz of the {task} task (bench/table_bench.py)")
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--eval-every", type=int, default=0, help="evaluate every N iterations (0: at the end only)")
    parser.add_argument("--evals-out", required=True, help=".npz: iterations, seconds, log_probs")
    parser.add_argument("--exploration", type=float, default=exploration, help=exploration_help)
    return parser.parse_args()


def train_and_evaluate(args: argparse.Namespace, step: Callable[[], None], log_prob_table: Callable[[], np.ndarray],
                       extra: Callable[[], dict] = dict) -> None:
    """`args.iters` timed calls of `step()`; at --eval-every and at the end, outside the clock,
    `log_prob_table()` ((N, actions) log P_F in the harness's numbering); then the evals file and
    the JSON line, with `extra()`'s fields."""
    iterations, seconds_at, tables = [], [], []
    peak_rss_mb = None
    seconds = 0.0
    for iteration in range(1, args.iters + 1):
        start = time.perf_counter()
        step()
        seconds += time.perf_counter() - start
        if iteration == args.iters or (args.eval_every and iteration % args.eval_every == 0):
            if peak_rss_mb is None:  # training's, not evaluation's
                peak_rss_mb = peak_mb()
            iterations.append(iteration)
            seconds_at.append(seconds)
            tables.append(log_prob_table())
    np.savez(args.evals_out, iterations=np.array(iterations, dtype=np.int64),
             seconds=np.array(seconds_at, dtype=np.float64), log_probs=np.stack(tables).astype(np.float32))
    print(json.dumps({"iterations": args.iters, "seconds": seconds, "iters_per_s": args.iters / seconds,
                      "trajectories_per_s": args.batch_size * args.iters / seconds, "compile_seconds": 0.0,
                      "peak_rss_mb": peak_rss_mb, **extra()}))
