"""Data-parallel training under torchrun: iterations per second of one optimiser step on a total
batch of 256 trajectories, on 1 process and on 2 ranks (gloo), each rank with one thread; and,
for an equal use of the cores, 1 process with 2 threads. Each run is the user's command,
`gflownets train` (under `torchrun --standalone --nproc_per_node N -m gflownets train` for the
ranks), on the 4-D hypergrid of side 8 with TB and the default MLP 2 x 256; the figure is the
run's own `iterations_per_second` (its training loop, evaluation excluded).

    python bench/distributed.py [--iters 300] [--batch 256] [--repeats 2]

Prints a table and writes bench/results/distributed-batchB.json."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import machine, table, write_json

BIN = Path(sys.executable).parent


def train(ranks: int, threads: int, iters: int, batch: int, out: Path) -> dict:
    args = ["train", "hypergrid", "--ndim", "4", "--height", "8", "--iters", str(iters), "--batch-size",
            str(batch), "--threads", str(threads), "--eval-every", "0", "--no-exact", "--quiet", "--out", str(out)]
    command = ([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", str(ranks), "-m", "gflownets", *args]
               if ranks > 1 else [str(BIN / "gflownets"), *args])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return json.loads((out / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repetitions; the best is kept")
    args = parser.parse_args()
    settings = [(1, 1), (2, 1), (1, 2)]  # (ranks, threads per rank)
    best: dict[tuple[int, int], float] = {}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            for ranks, threads in settings:  # interleaved, so that a slow phase of the machine hits all
                out = Path(folder) / f"r{ranks}t{threads}-{repeat}"
                speed = train(ranks, threads, args.iters, args.batch, out)["iterations_per_second"]
                best[ranks, threads] = max(best.get((ranks, threads), 0.0), speed)
                print(f"ranks={ranks} threads/rank={threads} repeat={repeat}: {speed:.1f} it/s", flush=True)
    base = best[1, 1]
    rows = [{"ranks": r, "threads_per_rank": t, "it_per_s": round(best[r, t], 1),
             "trajectories_per_s": round(best[r, t] * args.batch), "speedup_vs_1_rank": round(best[r, t] / base, 2)}
            for r, t in settings]
    print(table(rows, list(rows[0])))
    result = {"env": "hypergrid ndim=4 height=8", "objective": "tb", "batch_size": args.batch, "iters": args.iters,
              "rows": rows, "machine": machine(), "cores": os.cpu_count()}
    path = write_json(f"distributed-batch{args.batch}.json", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
