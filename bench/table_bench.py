"""The harness of the speed benchmarks whose states can all be listed (DAGs, Ising, sets): our
CLI trainer against peer libraries on one task, runs interleaved (seed by seed, system by system)
so machine load hits all alike, each system's sampler scored exactly and alike.

The harness enumerates the task's state graph and writes it to a file for the peers (`.npz`):
`states`, every state in our order, in the encoding the task's peers read (`TableTask.encode`);
`terminal` (N,) which are finished objects; `log_r` (N,) float64 our log R of those (NaN
elsewhere); `keys_sorted` / `log_r_sorted` the same rewards sorted by each object's bit pattern
(`bit_keys`), from which every peer looks its reward up, so that all systems optimise the same
numbers; and the task's own scalars. Each peer hands back its log P_F on every state, in our
action numbering, at every evaluation point (outside its clock); the harness checks that its
allowed actions are ours on every state and computes the exact distribution over objects by
dynamic programming over the state graph (`StateGraph.terminal_distribution_of`), then its L1
and Jensen-Shannon divergence to the target. Ours is evaluated by the trainer the same way (with
its moving-average weights, what it samples with) and, at the end, with its raw weights too (`_raw`).

Time to quality: training seconds until the task's metric first falls below 1.5 x its value for
200k exact draws of the target (the noise floor of a sample-based estimate), and until it falls
below a fixed level. Every peer runs in its own virtual environment (`peer_python`, shared with
bench/hypergrid.py); a peer that cannot run is skipped."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from common import add_equal_time, machine, median, resummarise, table, time_to
from hypergrid import BENCH, peer_python, peer_versions, run_peer_script, train_ours
from gflownets.envs.base import DiscreteEnv
from gflownets.evaluation import StateGraph
from gflownets.evaluation.metrics import distribution_metrics
from gflownets.training import load_run

NOISE_SAMPLES, NOISE_FACTOR = 200_000, 1.5
#: our two variants: the compiled rollout (forced) and eager
OURS = {"ours": ["--compile"], "ours-eager": ["--no-compile"]}


@dataclasses.dataclass(frozen=True)
class TableTask:
    """One benchmark: its environment and how the peers see it, our CLI's settings, the peers."""

    name: str  #: results go to bench/results/<name>_speed.json
    make_env: Callable[[int], DiscreteEnv]  #: the environment of a bench seed
    train_args: Callable[[int], list[str]]  #: `gflownets train` arguments (environment and settings) of a seed
    encode: Callable[[DiscreteEnv, torch.Tensor], np.ndarray]  #: our states as the task file's `states`
    flat_bits: Callable[[np.ndarray], np.ndarray]  #: encoded finished objects -> (n, m) 0/1 for `bit_keys`
    scalars: Callable[[DiscreteEnv], dict]  #: the task file's other fields
    peers: dict[str, tuple[Path, list[str]]]  #: system -> (script, its driver arguments)
    peer_args: tuple[str, ...]  #: passed to every peer (settings they share with ours)
    batch_size: int
    metric: str  #: "jsd" or "l1": the one time to quality reads
    level: float  #: the fixed level of `metric` reported besides the noise floor
    settings: dict  #: recorded in the JSON
    iters: int = 3000
    eval_every: int = 250
    #: systems that cannot run this task (for example, ours compiled where the environment is not compilable)
    skip: tuple[str, ...] = ()

    @property
    def systems(self) -> list[str]:
        return [s for s in [*OURS, *self.peers] if s not in self.skip]


def bit_keys(bits: np.ndarray) -> np.ndarray:
    """(N,) int64 bit pattern of each row of (N, m) 0/1 entries: bit i is column i (the peers
    compute the same to look up their reward)."""
    bits = bits.reshape(len(bits), -1).astype(np.int64)
    return (bits << np.arange(bits.shape[1], dtype=np.int64)).sum(axis=1)


def make_task(task: TableTask, path: Path, seed: int) -> StateGraph:
    """Write the peers' task file of `seed` (see the module docstring); returns the state graph."""
    env = task.make_env(seed)
    graph = StateGraph(env)
    states = task.encode(env, graph.states)
    terminal = np.zeros(graph.n_states, dtype=bool)
    terminal[graph.terminal_ids.cpu().numpy()] = True
    log_r = np.full(graph.n_states, np.nan)
    log_r[terminal] = graph.log_rewards.double().cpu().numpy()
    keys = bit_keys(task.flat_bits(states[terminal]))
    order = np.argsort(keys)
    np.savez(path, states=states, terminal=terminal, log_r=log_r, keys_sorted=keys[order],
             log_r_sorted=log_r[terminal][order], **task.scalars(env))
    return graph


def noise_floor(graph: StateGraph, metric: str, samples: int = NOISE_SAMPLES, draws: int = 5, seed: int = 0) -> float:
    """Mean `metric` between the target and the empirical distribution of `samples` exact draws
    of it: what a sample-based estimate of that many draws cannot go below."""
    target = graph.target.double().cpu().numpy()
    target = target / target.sum()
    rng = np.random.default_rng(seed)
    return float(np.mean([distribution_metrics(torch.as_tensor(rng.multinomial(samples, target) / samples),
                                               graph.target)[metric] for _ in range(draws)]))


def exact_metrics(graph: StateGraph, log_probs: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Exact L1 and JSD to the target of the sampler whose log P_F on every state is `log_probs`."""
    learned = graph.terminal_distribution_of(torch.as_tensor(log_probs))
    found = distribution_metrics(learned, graph.target)
    return {"l1": found["l1"], "jsd": found["jsd"]}


def check_mask(graph: StateGraph, log_probs: np.ndarray, system: str) -> None:
    """A peer's allowed actions must be our environment's on every state (the same task)."""
    allowed = torch.as_tensor(np.isfinite(log_probs))
    if not torch.equal(allowed, graph.forward_mask.cpu()):
        bad = int((allowed != graph.forward_mask.cpu()).any(dim=1).sum())
        raise ValueError(f"{system}: its allowed actions differ from ours on {bad} states")



def run_ours(task: TableTask, system: str, iters: int, seed: int, eval_every: int, graph: StateGraph) -> dict:
    """Our CLI in a child process (its own peak RSS), evaluated exactly by the trainer every
    `eval_every` iterations (outside its clock); the run folder is then loaded for the raw weights."""
    with tempfile.TemporaryDirectory() as tmp:
        peak_rss_mb = train_ours([*task.train_args(seed), "--batch-size", str(task.batch_size), "--iters", str(iters),
                                  "--seed", str(seed), "--eval-every", str(eval_every), "--final-samples", "0",
                                  "--quiet", "--threads", "1", "--out", tmp, *OURS[system]])
        summary = json.loads((Path(tmp) / "summary.json").read_text())
        records = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
        trainer = load_run(tmp)
        raw = distribution_metrics(graph.terminal_distribution(trainer.policy), graph.target)
    curve = [{"iteration": r["step"], "seconds": r["seconds"], "l1": r["l1"], "jsd": r["jsd"]}
             for r in records if "jsd" in r]
    seconds = summary["seconds"]
    return {"iterations": summary["iterations"], "seconds": seconds, "iters_per_s": summary["iterations"] / seconds,
            "trajectories_per_s": task.batch_size * summary["iterations"] / seconds,
            "compile_seconds": summary.get("compile_seconds", 0.0), "peak_rss_mb": peak_rss_mb,
            "l1": curve[-1]["l1"], "jsd": curve[-1]["jsd"], "l1_raw": raw["l1"], "jsd_raw": raw["jsd"], "curve": curve}


def run_peer(task: TableTask, system: str, python: str, iters: int, seed: int, eval_every: int, task_file: Path,
             graph: StateGraph) -> dict:
    """The peer's script in its venv: one JSON line, and its log P_F tables, evaluated here."""
    script, driver_args = task.peers[system]
    with tempfile.TemporaryDirectory() as tmp:
        evals_path = Path(tmp) / "evals.npz"
        result = run_peer_script(system, [python, str(script), "--task", str(task_file), "--iters", str(iters),
                                          "--seed", str(seed), "--batch-size", str(task.batch_size),
                                          "--eval-every", str(eval_every), "--evals-out", str(evals_path),
                                          *task.peer_args, *driver_args])
        evals = np.load(evals_path)
        iterations, seconds, log_probs = evals["iterations"], evals["seconds"], evals["log_probs"]
    check_mask(graph, log_probs[-1], system)
    curve = [{"iteration": int(i), "seconds": float(t), **exact_metrics(graph, table_)}
             for i, t, table_ in zip(iterations, seconds, log_probs)]
    last = curve[-1]
    result.update(l1=last["l1"], jsd=last["jsd"], l1_raw=last["l1"], jsd_raw=last["jsd"], curve=curve)
    return result



def summarise(task: TableTask, runs: list[dict], systems: list[str]) -> tuple[list[dict], list[dict]]:
    """Per system: medians over the seeds (JSON rows) and the printed table's rows, with each
    system's median it/s over each peer's."""
    peers = [s for s in systems if s in task.peers and any(r["system"] == s for r in runs)]
    keys = ["iters_per_s", "trajectories_per_s", "seconds", "compile_seconds", "peak_rss_mb", "l1", "jsd",
            f"{task.metric}_raw", "seconds_to_floor", "seconds_to_level", f"{task.metric}_at_equal_time",
            "equal_time_seconds"]
    summary = []
    for system in systems:
        sel = [r for r in runs if r["system"] == system]
        if sel:
            row = {"system": system, "n": len(sel), **{key: median([r.get(key) for r in sel]) for key in keys}}
            row["reached_floor"] = sum(r["seconds_to_floor"] is not None for r in sel)
            row["reached_level"] = sum(r["seconds_to_level"] is not None for r in sel)
            rates = [r["iters_per_s"] for r in sel]
            row["iters_per_s_mean"], row["iters_per_s_std"] = statistics.mean(rates), statistics.pstdev(rates)
            summary.append(row)
    rate = {row["system"]: row["iters_per_s"] for row in summary}
    for row in summary:
        row["iters_per_s_over"] = {peer: row["iters_per_s"] / rate[peer] for peer in peers}
    m = task.metric
    printed = [{"system": row["system"], "n": row["n"], "it/s": row["iters_per_s"], "traj/s": row["trajectories_per_s"],
                "train s": row["seconds"], "compile s": row["compile_seconds"], "peak MB": row["peak_rss_mb"],
                "L1": row["l1"], "JSD": row["jsd"], f"{m} raw": row[f"{m}_raw"],
                f"{m} @ equal s": row[f"{m}_at_equal_time"], "s to floor": row["seconds_to_floor"],
                "floor hit": f"{row['reached_floor']}/{row['n']}", f"s to {task.level}": row["seconds_to_level"],
                f"{task.level} hit": f"{row['reached_level']}/{row['n']}",
                **{f"/{peer}": f"{ratio:.2f}x" for peer, ratio in row["iters_per_s_over"].items()}}
               for row in summary]
    return summary, printed


def summary_and_table(task: TableTask, runs: list[dict], systems: list[str], seeds: list[int], iters: int,
                      eval_every: int, floors: dict) -> tuple[list[dict], list[str]]:
    add_equal_time(runs, task.metric)
    summary, printed = summarise(task, runs, systems)
    lines = table(printed).splitlines() if printed else []
    lines.append(f"medians over seeds {seeds}, {iters} iterations of batch {task.batch_size}; /PEER: it/s "
                 f"over PEER's; L1 and JSD exact, to the target (ours: moving-average weights; raw: the trained "
                 f"weights); {task.metric} @ equal s: each system's at the last evaluation within the training "
                 f"seconds of the seed's fastest run; s to floor: training seconds until {task.metric} < "
                 f"{NOISE_FACTOR} x its value for {NOISE_SAMPLES} exact draws "
                 f"({', '.join(f'seed {s}: {float(f):.2e}' for s, f in floors.items())}), evaluated every {eval_every} "
                 f"iterations; s to {task.level}: until {task.metric} < {task.level}; hit: runs that got there")
    return summary, lines


def main(task: TableTask, description: str, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--iters", type=int, default=None, help=f"default {task.iters} (200 with --quick)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (0 with --quick)")
    parser.add_argument("--eval-every", type=int, default=None, help=f"default {task.eval_every} (50 with --quick)")
    parser.add_argument("--systems", nargs="*", default=task.systems, choices=task.systems)
    parser.add_argument("--quick", action="store_true", help="200 iterations, seed 0")
    parser.add_argument("--out", default=str(BENCH / "results" / f"{task.name}_speed.json"))
    parser.add_argument("--write-task", help="only write the peers' task file (for --seed) and stop")
    parser.add_argument("--seed", type=int, default=0, help="seed of --write-task")
    parser.add_argument("--resummarise", action="store_true", help="only remake --out's summary from its runs")
    args = parser.parse_args(argv)
    if args.resummarise:
        def again(data: dict) -> tuple[list[dict], list[str]]:
            settings = data["settings"]
            for run in data["runs"]:  # the DAG bench's first results file (session 14) named two keys otherwise
                run.setdefault("seconds_to_floor", run.get("seconds_to_quality"))
                run.setdefault("seconds_to_level", run.get(f"seconds_to_{task.metric}_level"))
                run.setdefault("l1", None)
            return summary_and_table(task, data["runs"], settings["systems"], settings["seeds"], settings["iters"],
                                     settings["eval_every"], settings[f"noise_floor_{task.metric}"])
        resummarise(args.out, again)
        return 0
    if args.write_task:
        make_task(task, Path(args.write_task), args.seed)
        print(f"wrote {args.write_task}")
        return 0
    args.iters = args.iters or (200 if args.quick else task.iters)
    args.seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    args.eval_every = args.eval_every or (50 if args.quick else task.eval_every)
    torch.set_num_threads(1)  # (the evaluation here; the training runs in children)

    pythons = {name: peer_python(name) for name in args.systems if name in task.peers}
    systems = [s for s in args.systems if s in OURS or pythons[s]]
    runs, floors = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            task_file = Path(tmp) / f"task-{seed}.npz"
            graph = make_task(task, task_file, seed)
            floors[seed] = noise_floor(graph, task.metric)
            for system in systems:  # interleaved: ours, ours-eager, peer1, ..., then the next seed
                try:
                    if system in OURS:
                        result = run_ours(task, system, args.iters, seed, args.eval_every, graph)
                    else:
                        result = run_peer(task, system, pythons[system], args.iters, seed, args.eval_every,
                                          task_file, graph)
                except (RuntimeError, ValueError, IndexError, KeyError, OSError) as error:
                    print(f"[bench] {system} seed={seed} FAILED: {error}", flush=True)
                    continue
                result.update(system=system, seed=seed,
                              seconds_to_floor=time_to(result["curve"], task.metric, NOISE_FACTOR * floors[seed]),
                              seconds_to_level=time_to(result["curve"], task.metric, task.level))
                runs.append(result)
                print(f"[bench] seed={seed} {system:10s} {result['iters_per_s']:8.1f} it/s  "
                      f"{task.metric}={result[task.metric]:.4f}", flush=True)

    summary, lines = summary_and_table(task, runs, systems, args.seeds, args.iters, args.eval_every, floors)
    print("\n".join(lines))

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": {**task.settings, "iters": args.iters, "seeds": args.seeds, "systems": systems,
                     "batch_size": task.batch_size, "eval_every": args.eval_every, "metric": task.metric,
                     f"noise_floor_{task.metric}": floors, "noise_factor": NOISE_FACTOR, "level": task.level},
        "machine": {**machine(), "cpu_count": os.cpu_count(), "platform": platform.platform()},
        "peers": peer_versions(pythons),
        "runs": runs, "summary": summary, "table": lines}, indent=2))
    print(f"wrote {out}")
    return 0
