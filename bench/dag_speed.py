"""Speed benchmark on DAG structure learning (DAG-GFlowNet's task, d = 5, BGe): our CLI trainer
against peer libraries (gfnx, torchgfn), same task, objective and network, runs interleaved
(seed by seed, system by system) so machine load hits all alike.

    python bench/dag_speed.py [--iters 3000] [--seeds 0 1 2] [--quick]
                              [--systems ours ours-eager gfnx gfnx-scan torchgfn]
    python bench/dag_speed.py --write-task task.npz [--seed 0]   # the peers' task file alone

The task, identical for every system: DAGs over d = 5 nodes built one edge at a time (action
i * d + j adds i -> j, action d * d stops; every state may stop), R(G) = p(D | G) with the BGe
score of 100 samples of a linear-Gaussian network on an Erdos-Renyi graph with 5 expected edges
(`gflownets train dag`'s data, data seed = the bench seed), uniform prior over graphs. The
harness writes every DAG (29,281 of them) and our log R of each to a file; the peers read their
reward from that table (looked up by the adjacency's bit pattern), so all three optimise the
same numbers.

The settings, for all: modified detailed balance (DAG-GFlowNet's objective, the one torchgfn's
structure-learning example trains with), uniform P_B (no P_B head), no target network, no
replay, batch 32 trajectories sampled with epsilon = 0.1 uniform exploration (the policy mixed
with the uniform distribution over allowed actions: DAG-GFlowNet's off-policy training; on-policy,
modified DB stalls near JSD 0.33 here, as torchgfn's example documents 0.36), Adam lr 1e-3;
the network an MLP 2 x 256
with LeakyReLU(0.01) over the flattened adjacency and transitive closure (50 inputs, our DAG's
`features`), one head of d * d + 1 logits masked by each library's own rule; one thread. Ours runs
twice: `ours` (`--compile`) and `ours-eager` (`--no-compile`); gfnx twice: a Python loop over
its jitted step (`gfnx`) and the whole loop in one jitted `lax.scan` (`gfnx-scan`).

Quality, computed here the same way for every system: each system hands over its log P_F on
every state at every evaluation point (outside its clock); the exact distribution over DAGs it
samples follows by dynamic programming over the state graph (`StateGraph.terminal_distribution_of`),
and its Jensen-Shannon divergence to the exact posterior. Time to quality: training seconds until
that JSD first falls below 1.5 x the JSD of 200k exact draws of the posterior (the noise floor a
sample-based estimate could not beat), and until it first falls below 0.05 (`s to JSD 0.05`, a
level all systems reach in a few thousand iterations). Ours is evaluated with its moving-average weights (what it
samples with) and, at the end, its raw weights too (`jsd_raw`), which is what the peers have.

Writes bench/results/dag_speed.json."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bitseq_speed import median
from common import machine, table
from hypergrid import BENCH, peer_python, run_peer_script, train_ours
from gflownets.envs import DAG
from gflownets.evaluation import StateGraph
from gflownets.evaluation.metrics import distribution_metrics
from gflownets.training import load_run

#: the task: d = 5 nodes, 100 samples, BGe, 1 expected edge per node, uniform prior
TASK = {"nodes": 5, "samples": 100, "score": "bge", "edges_per_node": 1.0, "prior": "uniform"}
BATCH_SIZE, EXPLORATION = 32, 0.1
NOISE_SAMPLES, NOISE_FACTOR, JSD_LEVEL = 200_000, 1.5, 0.05
#: our two variants: the compiled rollout (forced) and eager
OURS = {"ours": ["--compile"], "ours-eager": ["--no-compile"]}
#: each peer: script and driver arguments; its name is also its key in bench/hypergrid.py's PEERS,
#: which `peer_python` reads for the virtual environment
PEERS = {
    "gfnx": (BENCH / "peers" / "gfnx_dag.py", ["--driver", "loop"]),
    "gfnx-scan": (BENCH / "peers" / "gfnx_dag.py", ["--driver", "scan"]),
    "torchgfn": (BENCH / "peers" / "torchgfn_dag.py", []),
}
SYSTEMS = [*OURS, *PEERS]


def make_env(seed: int) -> DAG:
    return DAG(**TASK, data_seed=seed)


def adjacency_keys(adjacency: np.ndarray) -> np.ndarray:
    """(N,) int64 bit pattern of each (N, d, d) adjacency: bit i * d + j is A[i, j] (the peers
    compute the same to look up their reward)."""
    flat = adjacency.reshape(len(adjacency), -1).astype(np.int64)
    return (flat << np.arange(flat.shape[1], dtype=np.int64)).sum(axis=1)


def make_task(path: Path, seed: int) -> tuple[StateGraph, np.ndarray]:
    """The peers' task file (.npz): `states` (N, d, d) int8 adjacency of every DAG in the order
    of our state graph (the order of the log P_F tables they return), `log_r` (N,) float64 our
    log R of each, `keys_sorted` / `log_r_sorted` the same table sorted by bit pattern, `nodes`."""
    env = make_env(seed)
    graph = StateGraph(env)
    if len(graph.terminal_ids) != graph.n_states:
        raise RuntimeError("dag: every state should be terminal")
    adjacency = env.adjacency(graph.states).to(torch.int8).cpu().numpy()
    log_r = env.log_reward(graph.states).double().cpu().numpy()
    keys = adjacency_keys(adjacency)
    order = np.argsort(keys)
    np.savez(path, states=adjacency, log_r=log_r, keys_sorted=keys[order], log_r_sorted=log_r[order],
             nodes=env.d)
    return graph, log_r


def noise_floor(graph: StateGraph, samples: int = NOISE_SAMPLES, draws: int = 5, seed: int = 0) -> float:
    """Mean JSD between the posterior and the empirical distribution of `samples` exact draws of
    it: what a sample-based estimate of that many draws cannot go below."""
    target = graph.target.double().cpu().numpy()
    target = target / target.sum()
    rng = np.random.default_rng(seed)
    return float(np.mean([distribution_metrics(torch.as_tensor(rng.multinomial(samples, target) / samples),
                                               graph.target)["jsd"] for _ in range(draws)]))


def jsd_of(graph: StateGraph, log_probs: np.ndarray | torch.Tensor) -> float:
    """Exact JSD to the posterior of the sampler whose log P_F on every state is `log_probs`."""
    learned = graph.terminal_distribution_of(torch.as_tensor(log_probs))
    return distribution_metrics(learned, graph.target)["jsd"]


def check_mask(graph: StateGraph, log_probs: np.ndarray, system: str) -> None:
    """A peer's allowed actions must be our environment's on every state (the same task)."""
    allowed = torch.as_tensor(np.isfinite(log_probs))
    if not torch.equal(allowed, graph.forward_mask.cpu()):
        bad = int((allowed != graph.forward_mask.cpu()).any(dim=1).sum())
        raise ValueError(f"{system}: its allowed actions differ from ours on {bad} states")


def time_to_quality(curve: list[dict], threshold: float) -> float | None:
    """Training seconds when the exact JSD first fell below `threshold` (None: never)."""
    return next((point["seconds"] for point in curve if point["jsd"] < threshold), None)


def run_ours(system: str, iters: int, seed: int, eval_every: int, graph: StateGraph) -> dict:
    """Our CLI in a child process (its own peak RSS), evaluated exactly by the trainer every
    `eval_every` iterations (outside its clock); the run folder is then loaded for the raw weights' JSD."""
    with tempfile.TemporaryDirectory() as tmp:
        peak_rss_mb = train_ours(["dag", "--nodes", str(TASK["nodes"]), "--samples", str(TASK["samples"]),
                                  "--score", TASK["score"], "--edges-per-node", str(TASK["edges_per_node"]),
                                  "--prior", TASK["prior"], "--data-seed", str(seed), "--objective", "mdb",
                                  "--backward-policy", "uniform", "--batch-size", str(BATCH_SIZE),
                                  "--hidden", "256", "--layers", "2", "--lr", "1e-3", "--exploration", str(EXPLORATION),
                                  "--replay-size", "0", "--replay-batch", "0", "--target-decay", "0", "--iters", str(iters),
                                  "--seed", str(seed), "--eval-every", str(eval_every), "--final-samples", "0",
                                  "--quiet", "--threads", "1", "--out", tmp, *OURS[system]])
        summary = json.loads((Path(tmp) / "summary.json").read_text())
        records = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
        trainer = load_run(tmp)
        jsd_raw = distribution_metrics(graph.terminal_distribution(trainer.policy), graph.target)["jsd"]
    curve = [{"iteration": r["step"], "seconds": r["seconds"], "jsd": r["jsd"]} for r in records if "jsd" in r]
    seconds = summary["seconds"]
    return {"iterations": summary["iterations"], "seconds": seconds, "iters_per_s": summary["iterations"] / seconds,
            "trajectories_per_s": BATCH_SIZE * summary["iterations"] / seconds,
            "compile_seconds": summary.get("compile_seconds", 0.0), "peak_rss_mb": peak_rss_mb,
            "jsd": curve[-1]["jsd"], "jsd_raw": jsd_raw, "curve": curve}


def run_peer(system: str, python: str, iters: int, seed: int, eval_every: int, task: Path,
             graph: StateGraph) -> dict:
    """The peer's script in its venv: one JSON line, and its log P_F tables, evaluated here."""
    script, driver_args = PEERS[system]
    with tempfile.TemporaryDirectory() as tmp:
        evals_path = Path(tmp) / "evals.npz"
        result = run_peer_script(system, [python, str(script), "--task", str(task), "--iters", str(iters),
                                          "--seed", str(seed), "--batch-size", str(BATCH_SIZE),
                                          "--eval-every", str(eval_every), "--evals-out", str(evals_path),
                                          "--exploration", str(EXPLORATION), *driver_args])
        evals = np.load(evals_path)
        iterations, seconds, log_probs = evals["iterations"], evals["seconds"], evals["log_probs"]
    check_mask(graph, log_probs[-1], system)
    curve = [{"iteration": int(i), "seconds": float(t), "jsd": jsd_of(graph, table_)}
             for i, t, table_ in zip(iterations, seconds, log_probs)]
    result.update(jsd=curve[-1]["jsd"], jsd_raw=curve[-1]["jsd"], curve=curve)
    return result


def summarise(runs: list[dict], systems: list[str]) -> tuple[list[dict], list[dict]]:
    """Per system: medians over the seeds (JSON rows) and the printed table's rows, with each
    system's median it/s over each peer's."""
    peers = [s for s in systems if s in PEERS and any(r["system"] == s for r in runs)]
    keys = ["iters_per_s", "trajectories_per_s", "seconds", "compile_seconds", "peak_rss_mb", "jsd", "jsd_raw",
            "seconds_to_quality", "seconds_to_jsd_level"]
    summary = []
    for system in systems:
        sel = [r for r in runs if r["system"] == system]
        if sel:
            row = {"system": system, "n": len(sel), **{key: median([r.get(key) for r in sel]) for key in keys}}
            row["reached_quality"] = sum(r["seconds_to_quality"] is not None for r in sel)
            row["reached_jsd_level"] = sum(r["seconds_to_jsd_level"] is not None for r in sel)
            rates = [r["iters_per_s"] for r in sel]
            row["iters_per_s_mean"], row["iters_per_s_std"] = statistics.mean(rates), statistics.pstdev(rates)
            summary.append(row)
    rate = {row["system"]: row["iters_per_s"] for row in summary}
    for row in summary:
        row["iters_per_s_over"] = {peer: row["iters_per_s"] / rate[peer] for peer in peers}
    printed = [{"system": row["system"], "n": row["n"], "it/s": row["iters_per_s"], "traj/s": row["trajectories_per_s"],
                "train s": row["seconds"], "compile s": row["compile_seconds"], "peak MB": row["peak_rss_mb"],
                "JSD": row["jsd"], "JSD raw": row["jsd_raw"], "s to floor": row["seconds_to_quality"],
                "floor hit": f"{row['reached_quality']}/{row['n']}", f"s to {JSD_LEVEL}": row["seconds_to_jsd_level"],
                f"{JSD_LEVEL} hit": f"{row['reached_jsd_level']}/{row['n']}",
                **{f"/{peer}": f"{ratio:.2f}x" for peer, ratio in row["iters_per_s_over"].items()}}
               for row in summary]
    return summary, printed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=None, help="default 3000 (200 with --quick)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (0 with --quick)")
    parser.add_argument("--eval-every", type=int, default=None, help="default 250 (50 with --quick)")
    parser.add_argument("--systems", nargs="*", default=SYSTEMS, choices=SYSTEMS)
    parser.add_argument("--quick", action="store_true", help="200 iterations, seed 0")
    parser.add_argument("--out", default=str(BENCH / "results" / "dag_speed.json"))
    parser.add_argument("--write-task", help="only write the peers' task file (for --seed) and stop")
    parser.add_argument("--seed", type=int, default=0, help="data seed of --write-task")
    args = parser.parse_args(argv)
    if args.write_task:
        make_task(Path(args.write_task), args.seed)
        print(f"wrote {args.write_task}")
        return 0
    args.iters = args.iters or (200 if args.quick else 3000)
    args.seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    args.eval_every = args.eval_every or (50 if args.quick else 250)
    torch.set_num_threads(1)  # (the evaluation here; the training runs in children)

    pythons = {name: peer_python(name) for name in args.systems if name in PEERS}
    systems = [s for s in args.systems if s in OURS or pythons[s]]
    runs, floors = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            task = Path(tmp) / f"task-{seed}.npz"
            graph, _ = make_task(task, seed)
            floors[seed] = noise_floor(graph)
            threshold = NOISE_FACTOR * floors[seed]
            for system in systems:  # interleaved: ours, ours-eager, peer1, ..., then the next seed
                try:
                    if system in OURS:
                        result = run_ours(system, args.iters, seed, args.eval_every, graph)
                    else:
                        result = run_peer(system, pythons[system], args.iters, seed, args.eval_every, task, graph)
                except (RuntimeError, ValueError, IndexError, KeyError, OSError) as error:
                    print(f"[bench] {system} seed={seed} FAILED: {error}", flush=True)
                    continue
                result.update(system=system, seed=seed, seconds_to_quality=time_to_quality(result["curve"], threshold),
                              seconds_to_jsd_level=time_to_quality(result["curve"], JSD_LEVEL))
                runs.append(result)
                reached = result["seconds_to_quality"]
                print(f"[bench] seed={seed} {system:10s} {result['iters_per_s']:8.1f} it/s  jsd={result['jsd']:.4f}  "
                      f"to quality {'-' if reached is None else f'{reached:.1f} s'}", flush=True)

    summary, printed = summarise(runs, systems)
    lines = table(printed, list(dict.fromkeys(k for row in printed for k in row))).splitlines() if printed else []
    lines.append(f"medians over seeds {args.seeds}, {args.iters} iterations of batch {BATCH_SIZE}; /PEER: it/s over "
                 f"PEER's; JSD exact, to the exact posterior (ours: moving-average weights; raw: the trained "
                 f"weights); s to floor: training seconds until JSD < {NOISE_FACTOR} x the JSD of {NOISE_SAMPLES} "
                 f"exact draws ({', '.join(f'seed {s}: {f:.2e}' for s, f in floors.items())}), evaluated every "
                 f"{args.eval_every} iterations; s to {JSD_LEVEL}: until JSD < {JSD_LEVEL}; hit: runs that got there")
    print("\n".join(lines))

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": {**TASK, "iters": args.iters, "seeds": args.seeds, "systems": systems, "batch_size": BATCH_SIZE,
                     "hidden": 256, "layers": 2, "activation": "leaky_relu(0.01)", "objective": "mdb",
                     "backward_policy": "uniform", "exploration": EXPLORATION, "replay": 0, "lr": 1e-3,
                     "eval_every": args.eval_every,
                     "noise_floor_jsd": floors, "noise_factor": NOISE_FACTOR,
                     "jsd_level": JSD_LEVEL},
        "machine": {**machine(), "cpu_count": os.cpu_count(), "platform": platform.platform()},
        "runs": runs, "summary": summary, "table": lines}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
