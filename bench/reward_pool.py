"""Reward workers (`--reward-workers`) on a slow reward: `sleepy` sleeps 10 ms per object (a
simulator or an oracle, as far as the trainer can tell). Trains the 2-D hypergrid (H = 8, TB,
batches of 64 objects, so one reward call of 64 objects per iteration, exact evaluation off)
with the reward scored in this process (0 workers) and by 1, 2 and 4 workers.

    python bench/reward_pool.py [--workers 0 1 2 4] [--iters 20] [--batch 64]

`seconds` is the training loop once the workers have started (their start, a few seconds as each
imports torch, is `start s`); `same params` checks that every setting trains the parameters of
the in-process run bit for bit. Prints a table and writes bench/results/reward_pool.json."""

from __future__ import annotations

import argparse
import time

import torch

from common import machine, table, write_json
from gflownets.training import RunConfig, Trainer

#: seconds `sleepy` takes per object
SLEEP_PER_OBJECT = 0.010
#: how the trainer (and its workers) import `sleepy`: this file's folder is on the path of a
#: script, and workers inherit the path
SPEC = "reward_pool:sleepy"


def sleepy(objects: torch.Tensor) -> torch.Tensor:
    """R(x) = 1 + |x|^2, after 10 ms per object."""
    time.sleep(SLEEP_PER_OBJECT * len(objects))
    return 1.0 + objects.double().pow(2).sum(dim=1)


def run(workers: int, iters: int, batch: int) -> tuple[dict, torch.Tensor]:
    config = RunConfig(env="hypergrid", env_args={"ndim": 2, "height": 8}, reward=SPEC, reward_workers=workers,
                       iters=iters, batch_size=batch, hidden=64, exact=False, eval_every=0, seed=0, threads=1)
    trainer = Trainer(config, progress=False)
    try:
        started = time.perf_counter()
        trainer.env.log_reward(trainer.env.initial_states(max(workers, 1)))  # one object per worker: all start
        start = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(iters):
            trainer.train_step()
        seconds = time.perf_counter() - started
    finally:
        trainer.close()
    parameters = torch.cat([p.detach().flatten() for p in trainer.policy.parameters()])
    row = {"workers": workers, "start s": round(start, 2), "seconds": round(seconds, 3),
           "objects/s": round(iters * batch / seconds, 1)}
    return row, parameters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", default="reward_pool.json", help="file name under bench/results/")
    args = parser.parse_args()
    rows, reference = [], None
    for workers in args.workers:
        row, parameters = run(workers, args.iters, args.batch)
        reference = parameters if reference is None else reference
        row["same params"] = torch.equal(parameters, reference)  # as the first setting's (in-process)
        rows.append(row)
        print(f"workers={workers}: {row['seconds']} s", flush=True)
    baseline = next((r["seconds"] for r in rows if r["workers"] == 0), None)
    for row in rows:
        row["speed-up"] = round(baseline / row["seconds"], 2) if baseline else None
    print(table(rows, ["workers", "start s", "seconds", "objects/s", "speed-up", "same params"]))
    path = write_json(args.out, {"machine": machine(), "sleep_per_object_s": SLEEP_PER_OBJECT,
                                 "iters": args.iters, "batch": args.batch, "runs": rows})
    print(f"wrote {path}")


if __name__ == "__main__":  # workers are spawned: they import this file without running it
    main()
