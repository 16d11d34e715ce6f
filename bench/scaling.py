"""Scaling of our trainer with the batch size on each speed benchmark's task: iterations/s,
trajectories/s and the network's achieved GFLOP/s against this machine's matmul rate, measured
in the same run.

    python bench/scaling.py [--tasks hypergrid bitseq dag ising sets] [--dims 2 4 8] [--heights 8 16 32]
                            [--batches 16 256 1024 4096] [--seconds 3] [--compile]
                            [--out bench/results/scaling.json]

Tasks, with the settings of their speed benchmarks: `hypergrid` (bench/hypergrid.py: TB, learned
P_B; one cell per --dims x --heights), `bitseq` (bench/bitseq_speed.py: 120 bits as 15 tokens of 8,
append-only, TB, uniform P_B), `dag` (bench/dag_speed.py: d = 5, BGe, modified DB, uniform P_B,
epsilon 0.1), `ising` (bench/ising_speed.py: bits D = 9 on a ring, TB, uniform P_B) and `sets`
(bench/sets_speed.py: 4 of 10 items, TB, uniform P_B); MLP 2 x 256, Adam 1e-3 for all. Each cell trains from scratch with the same
`train_step` a CLI run takes, for `--seconds` after 3 warm-up iterations (with `--compile`, the
compiled rollout; its compilation falls in the warm-up). The network's FLOPs are counted from the
states actually visited: every state of a trajectory is evaluated once in the rollout (no grad)
and once in the training pass, whose backward costs about twice its forward, so FLOPs = 4 x rows
x (2 x sum of fan_in x fan_out of the dense layers; bit sequences' one-hot first layer is a
gather, not a matmul, and is not counted). Trajectories lengthen as training progresses, so a
cell's speed depends on its budget: compare cells of one run."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, table, write_json  # noqa: E402

from gflownets.training.config import RunConfig  # noqa: E402
from gflownets.training.trainer import Trainer  # noqa: E402


def matmul_gflops(m: int, k: int, n: int, seconds: float = 1.0) -> float:
    """Achieved GFLOP/s of torch.mm (m x k) @ (k x n) with the current thread count."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
    return 2 * m * k * n * count / (time.perf_counter() - started) / 1e9


def forward_flops_per_state(trainer: Trainer) -> int:
    """2 x sum over the MLP's linear layers of fan_in x fan_out (biases and activations ignored)."""
    return sum(2 * m.in_features * m.out_features for m in trainer.policy.modules()
               if isinstance(m, torch.nn.Linear))


#: RunConfig settings of each task (as its speed benchmark runs it), apart from the batch size
TASKS = {
    "hypergrid": {"env": "hypergrid", "objective": "tb"},
    "bitseq": {"env": "bitseq", "objective": "tb", "backward_policy": "uniform", "lr_logz": 0.5, "exploration": 0.0,
               "env_args": {"length": 120, "token_bits": 8, "num_modes": 60, "mode_seed": 0, "beta": 240.0,
                            "prepend": False}},
    "dag": {"env": "dag", "objective": "mdb", "backward_policy": "uniform", "exploration": 0.1, "replay_size": 0,
            "replay_batch": 0, "target_decay": 0.0,
            "env_args": {"nodes": 5, "samples": 100, "score": "bge", "edges_per_node": 1.0, "prior": "uniform"}},
    "ising": {"env": "bits", "objective": "tb", "backward_policy": "uniform", "lr_logz": 0.1, "exploration": 0.0,
              "env_args": {"dim": 9, "coupling": 0.5, "field": 0.1}},
    "sets": {"env": "sets", "objective": "tb", "backward_policy": "uniform", "lr_logz": 0.1, "exploration": 0.0,
             "env_args": {"n_items": 10, "set_size": 4}},
}


def task_config(task: str, batch: int, threads: int, compile_: bool | None, env_args: dict | None = None) -> RunConfig:
    """The RunConfig of `task` as its speed benchmark runs it (MLP 2 x 256, Adam 1e-3), at `batch`,
    without evaluation or checkpoints."""
    settings = dict(TASKS[task])
    settings["env_args"] = {**settings.get("env_args", {}), **(env_args or {})}
    return RunConfig(**settings, batch_size=batch, hidden=256, layers=2, lr=1e-3, eval_every=0,
                     checkpoint_every=0, threads=threads, compile=compile_)


def measure(task: str, batch: int, seconds: float, threads: int, compile_: bool, env_args: dict | None = None) -> dict:
    trainer = Trainer(task_config(task, batch, threads, compile_, env_args), progress=False)
    for _ in range(3):
        trainer.train_step()
    iters = rows = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or iters < 3:
        trainer.train_step()
        rows += int(trainer.last_batch.lengths.sum())
        iters += 1
    elapsed = time.perf_counter() - started
    flops = 4 * rows * forward_flops_per_state(trainer)
    return {"task": task, **(env_args or {}), "batch": batch, "iterations": iters, "seconds": elapsed,
            "iters_per_s": iters / elapsed, "trajectories_per_s": iters * batch / elapsed,
            "states_per_trajectory": rows / (iters * batch), "network_gflops": flops / elapsed / 1e9}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 4, 8], help="hypergrid")
    parser.add_argument("--heights", type=int, nargs="+", default=[8, 16, 32], help="hypergrid")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 256, 1024, 4096])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed training per cell")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--compile", action="store_true", help="the compiled rollout (default: eager)")
    parser.add_argument("--out", default="scaling.json", help="file name under bench/results/, or a path")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    # the machine's rate: a large square product (the best case) and the shape of a batch-1024 layer
    peak = matmul_gflops(2048, 2048, 2048)
    layer = matmul_gflops(1024, 256, 256)
    print(f"matmul: 2048^3 {peak:.1f} GFLOP/s, 1024x256x256 {layer:.1f} GFLOP/s "
          f"({torch.get_num_threads()} threads)", flush=True)
    shapes = {task: [None] for task in args.tasks}
    if "hypergrid" in shapes:
        shapes["hypergrid"] = [{"ndim": dim, "height": height} for dim in args.dims for height in args.heights]
    cells = []
    for task, shape_list in shapes.items():
        for env_args in shape_list:
            for batch in args.batches:
                cell = measure(task, batch, args.seconds, args.threads, args.compile, env_args)
                cell["fraction_of_matmul_peak"] = cell["network_gflops"] / peak
                cells.append(cell)
                print(f"{task} {env_args or ''} batch={batch}: {cell['iters_per_s']:.1f} it/s, "
                      f"{cell['trajectories_per_s']:.0f} traj/s, {cell['network_gflops']:.1f} GFLOP/s "
                      f"({100 * cell['fraction_of_matmul_peak']:.0f}% of peak)", flush=True)
    keys = ["task", "ndim", "height", "batch", "iters_per_s", "trajectories_per_s", "states_per_trajectory",
            "network_gflops", "fraction_of_matmul_peak"]
    print(table(cells, keys))
    path = write_json(args.out, {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                 "machine": {**machine(), "matmul_gflops_2048": peak,
                                             "matmul_gflops_1024x256x256": layer},
                                 "settings": {"seconds": args.seconds, "hidden": 256, "layers": 2,
                                              "compile": args.compile, "tasks": TASKS},
                                 "cells": cells})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
