"""Where one training iteration of ours goes, piece by piece, on each speed benchmark's task, next
to the floors that no implementation of the same iteration can beat on this machine and to the
per-iteration times the #18 targets ask for (a peer's time / 2 for gfnx, / 7 for torchgfn).

    python bench/iteration_profile.py [--tasks hypergrid2 hypergrid4 bitseq dag ising sets]
                                      [--iters 500] [--warmup 100] [--paths eager compiled]
                                      [--peers-from bench/results]
                                      [--out bench/results/iteration_profile.json]

Pieces (milliseconds per iteration, the trainer's own `train_step`, one thread, after 100 warm-up
iterations; the CPU runs synchronously, so wall time around each call is that call's cost):
`sample` (the rollout and the reward), `gradient` (the loss and its gradient: autograd or the
closed form), `read` (the loss and gradient norm read back, which also checks that they are
finite), `adam` (the optimiser step), `averages` (the moving average of the weights that
evaluation samples with; the peers keep none).

Floors: `matmul floor` is the dense layers' FLOPs on the states the iteration actually visited,
counted as the least any implementation of the iteration must do: one forward pass in the rollout
and the backward pass of the loss on its kept activations (twice the forward: 3 x rows x 2 x sum
fan_in x fan_out; what our closed-form path does; autograd's path adds a second forward), at this
core's measured rate for a layer of the task's shape (one matmul over all of the iteration's
rows, the most favourable shape); `update floor` is the memory an
Adam step, the weights' average and the gradient norm must move (Adam: read weights, gradient and
two moments, write weights and two moments; the average: read two, write one; the norm: read the
gradient: 11 passes over the parameters in float32) at this core's measured bandwidth for
parameter-sized buffers (`torch._foreach_lerp_`, itself a read-read-write pass). Everything
else (masks, sampling, environment steps, the log-probabilities and their derivatives, the
per-operation cost of dispatching small tensors) is above the floors."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, table, write_json  # noqa: E402
from scaling import forward_flops_per_state, matmul_gflops, task_config  # noqa: E402

from gflownets.training.trainer import Trainer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

#: the benchmarks' tasks: scaling's settings, the benchmark's batch size and where its peers' figures are
PROFILES = {
    "hypergrid2": ("hypergrid", {"ndim": 2, "height": 8}, 16, ("hypergrid.json", 2)),
    "hypergrid4": ("hypergrid", {"ndim": 4, "height": 8}, 16, ("hypergrid.json", 4)),
    "bitseq": ("bitseq", {}, 16, ("bitseq_speed.json", None)),
    "dag": ("dag", {}, 32, ("dag_speed.json", None)),
    "ising": ("ising", {}, 16, ("ising_speed.json", None)),
    "sets": ("sets", {}, 16, ("sets_speed.json", None)),
}
PIECES = ("sample", "gradient", "read", "adam", "averages")


def bandwidth_gbs(numel: int, seconds: float = 0.5) -> float:
    """GB/s of `torch._foreach_lerp_` (read two buffers, write one) over `numel` float32 values."""
    a, b = [torch.randn(numel)], [torch.randn(numel)]
    for _ in range(3):
        torch._foreach_lerp_(a, b, 0.01)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        torch._foreach_lerp_(a, b, 0.01)
        count += 1
    return 3 * 4 * numel * count / (time.perf_counter() - started) / 1e9


def timed(pieces: dict[str, float], name: str, function):
    """`function`, adding the seconds of each call to pieces[name]."""
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            pieces[name] += time.perf_counter() - started
    return wrapper


def profile(name: str, compile_: bool, iters: int, warmup: int = 100) -> dict:
    task, env_args, batch, _ = PROFILES[name]
    trainer = Trainer(task_config(task, batch, 1, compile_, env_args), progress=False)
    for _ in range(warmup):
        trainer.train_step()
    pieces = dict.fromkeys(PIECES, 0.0)
    trainer.source.sample = timed(pieces, "sample", trainer.source.sample)
    trainer.gradient_step = timed(pieces, "gradient", trainer.gradient_step)
    trainer._loss_and_gradient_norm = timed(pieces, "read", trainer._loss_and_gradient_norm)
    trainer.optimizer.step = timed(pieces, "adam", trainer.optimizer.step)
    trainer._update_averages = timed(pieces, "averages", trainer._update_averages)
    rows = 0
    started = time.perf_counter()
    for _ in range(iters):
        trainer.train_step()
        rows += int(trainer.last_batch.lengths.sum())
    total = time.perf_counter() - started
    parameters = sum(p.numel() for p in trainer.parameters)
    flops = 3 * rows / iters * forward_flops_per_state(trainer)
    return {"task": name, "path": "compiled" if compile_ else "eager", "batch": batch,
            "total_ms": 1e3 * total / iters, **{f"{k}_ms": 1e3 * v / iters for k, v in pieces.items()},
            "other_ms": 1e3 * (total - sum(pieces.values())) / iters, "parameters": parameters,
            "flops_per_iteration": flops, "states_per_iteration": rows / iters}


def peer_ms(name: str, results: Path) -> dict[str, float]:
    """Median ms per iteration of each peer in the benchmark's latest results (bench/results)."""
    _, _, _, (file, dim) = PROFILES[name]
    path = results / file
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    out = {}
    for row in data.get("summary", []):
        if row["system"].startswith("ours") or (dim is not None and row.get("ndim") != dim):
            continue
        rate = row["iters_per_s"]  # the hypergrid bench's summary holds [mean, std]
        out[row["system"]] = 1e3 / (rate[0] if isinstance(rate, list) else rate)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(PROFILES), choices=list(PROFILES))
    parser.add_argument("--paths", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"])
    parser.add_argument("--iters", type=int, default=500, help="timed iterations per task and path")
    parser.add_argument("--warmup", type=int, default=100, help="iterations before the clock starts")
    parser.add_argument("--peers-from", default=str(RESULTS), help="folder of the benchmarks' result files")
    parser.add_argument("--out", default="iteration_profile.json", help="file name under bench/results/, or a path")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name in args.tasks:
        peers = peer_ms(name, Path(args.peers_from))
        for path in args.paths:
            row = profile(name, path == "compiled", args.iters, args.warmup)
            layer = matmul_gflops(max(16, int(row["states_per_iteration"])), 256, 256, seconds=0.3)
            row["matmul_gflops"] = layer
            row["matmul_floor_ms"] = 1e3 * row["flops_per_iteration"] / (layer * 1e9)
            row["bandwidth_gbs"] = bandwidth_gbs(row["parameters"])
            row["update_floor_ms"] = 1e3 * 11 * 4 * row["parameters"] / (row["bandwidth_gbs"] * 1e9)
            row["floor_ms"] = row["matmul_floor_ms"] + row["update_floor_ms"]
            row["peers_ms"] = peers
            gfnx = [ms for system, ms in peers.items() if system.startswith("gfnx")]
            if gfnx:
                row["target_2x_gfnx_ms"] = min(gfnx) / 2
            if "torchgfn" in peers:
                row["target_7x_torchgfn_ms"] = peers["torchgfn"] / 7
            rows.append(row)
            print(f"{name} {path}: {row['total_ms']:.2f} ms/it ("
                  + ", ".join(f"{k} {row[k + '_ms']:.2f}" for k in (*PIECES, "other"))
                  + f"); floors: matmul {row['matmul_floor_ms']:.2f}, update {row['update_floor_ms']:.2f}", flush=True)
    keys = ["task", "path", "total_ms", *(f"{k}_ms" for k in (*PIECES, "other")), "matmul_floor_ms",
            "update_floor_ms", "target_2x_gfnx_ms", "target_7x_torchgfn_ms"]
    print(table(rows, keys))
    out = write_json(args.out, {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
                                "iters": args.iters, "rows": rows})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
