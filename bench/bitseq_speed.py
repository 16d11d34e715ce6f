"""Speed benchmark on bit sequences (the trajectory balance paper's task, append-only): our CLI
trainer against peer libraries (gfnx, torchgfn), same task and network, runs interleaved (seed by
seed, system by system) so machine load hits all alike.

    python bench/bitseq_speed.py [--iters 2000] [--seeds 0 1 2] [--quick]
                                 [--systems ours ours-eager gfnx gfnx-scan torchgfn]

The task, identical for every system: n = 120 bits as 15 tokens of 8 bits, each step appends one
token (one trajectory per object, so the uniform backward policy is exact and no system has a
P_B head), log R(x) = -beta d(x) / n with beta = 240 (log R = -2 d), d the Hamming distance to
the nearest of the 60 modes of `make_modes(120, 60, 0)`. The harness writes the modes, a test
set of 1000 sequences (`BitSeq.test_set(1000, seed=0)`) and our log R of it to a file; each peer
checks that its own reward gives the same log R on those sequences before it trains.

The network, for all: one-hot of each position over {empty, token 0..255} (15 x 257), an MLP
2 x 256 with LeakyReLU(0.01), a forward head (256 tokens, + exit where the system has an exit
action), a learned log Z; trajectory balance, Adam lr 1e-3 (log Z 0.5), batch 16 on-policy, no
exploration, one thread (`ONE_THREAD`). Ours runs twice: `ours` (`--compile`: the rollout as one
torch.compile graph) and `ours-eager` (`--no-compile`); gfnx twice: a Python loop over its jitted
step (`gfnx`) and the whole loop in one jitted `lax.scan` (`gfnx-scan`). Compilation (ours' and
gfnx's) happens before the training clock starts and is reported apart as `compile s`.

Quality, computed here the same way for every system from its exact log p(x) of the test set
(the sum of the log P_F of the one trajectory's steps): the Spearman correlation between log p
and log R, and the mean and standard deviation of log p - log R (constant, -log Z, for a perfect
sampler: a smaller std is better); modes found: modes within Hamming distance 30 of a training
sample. Ours is evaluated with the weights it samples with (the moving average, `ema_decay`
0.99), and also with its raw weights (`*_raw`), which is what the peers have. Time to quality
(no exact distribution here): every `EVAL_EVERY` iterations, outside its clock, each system
hands over the test set's log p (ours: its trainer's `test_spearman`, moving-average weights);
the bench reports the training seconds until the Spearman first exceeds `SPEARMAN_LEVEL`.

Peers run in their own virtual environments under bench/.venvs/ (`peer_python`, shared with
bench/hypergrid.py); a peer that cannot run is skipped. Writes bench/results/bitseq_speed.json."""

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
from scipy.stats import spearmanr

from common import add_equal_time, machine, median, resummarise, table, time_to
from hypergrid import BENCH, peer_python, peer_versions, run_peer_script, train_ours
from gflownets.envs.bitseq import BitSeq, make_modes
from gflownets.evaluation import estimate_log_prob
from gflownets.training import load_run

#: the task: 120 bits, tokens of 8, 60 modes of seed 0, beta 240, append-only
TASK = {"length": 120, "token_bits": 8, "num_modes": 60, "mode_seed": 0, "beta": 240.0, "mode_threshold": 30}
TEST_SIZE, TEST_SEED, BATCH_SIZE = 1000, 0, 16
#: evaluations for time to quality: every EVAL_EVERY iterations, seconds until Spearman > SPEARMAN_LEVEL
#: (every system rises to ~0.75 within 100 iterations and to 0.795-0.804 by 2000: session 12's
#: medians; the level is just below that plateau)
EVAL_EVERY, SPEARMAN_LEVEL = 100, 0.79
#: our two variants: the compiled rollout (forced) and eager
OURS = {"ours": ["--compile"], "ours-eager": ["--no-compile"]}
#: each peer: script and driver arguments; its name is also its key in bench/hypergrid.py's PEERS,
#: which `peer_python` reads for the virtual environment
PEERS = {
    "gfnx": (BENCH / "peers" / "gfnx_bitseq.py", ["--driver", "loop"]),
    "gfnx-scan": (BENCH / "peers" / "gfnx_bitseq.py", ["--driver", "scan"]),
    "torchgfn": (BENCH / "peers" / "torchgfn_bitseq.py", []),
}
SYSTEMS = [*OURS, *PEERS]


def make_task(directory: Path) -> tuple[Path, BitSeq, torch.Tensor, np.ndarray]:
    """Our environment, the test set and its log R, written to `directory`/task.npz for the peers:
    modes (60, 120) 0/1, test_tokens (1000, 15), test_log_r (1000,), token_bits, beta."""
    env = BitSeq(**TASK)
    modes = make_modes(TASK["length"], TASK["num_modes"], TASK["mode_seed"])
    assert torch.equal(env.modes, modes), "the environment's modes are not make_modes(120, 60, 0)"
    test = env.test_set(TEST_SIZE, seed=TEST_SEED)
    log_r = env.log_reward(test).double().numpy()
    path = directory / "task.npz"
    np.savez(path, modes=modes.numpy().astype(np.uint8), test_tokens=test.numpy().astype(np.int64),
             test_log_r=log_r, token_bits=TASK["token_bits"], beta=TASK["beta"])
    return path, env, test, log_r


def quality(log_p: np.ndarray, log_r: np.ndarray, suffix: str = "") -> dict:
    """Spearman(log p, log R) and the mean and std of log p - log R over the test set."""
    gap = np.asarray(log_p, dtype=np.float64) - log_r
    return {f"spearman{suffix}": float(spearmanr(log_p, log_r).statistic),
            f"logp_minus_logr_mean{suffix}": float(gap.mean()), f"logp_minus_logr_std{suffix}": float(gap.std())}


def modes_found(env: BitSeq, tokens: np.ndarray) -> int:
    """Modes within `mode_threshold` bits of any of the samples (our trainer's own count)."""
    hit = torch.zeros(TASK["num_modes"], dtype=torch.bool)
    for chunk in torch.as_tensor(tokens, dtype=torch.long).split(10_000):
        hit |= env.modes_hit(chunk).any(dim=0)
    return int(hit.sum())


def run_ours(system: str, iters: int, seed: int, test: torch.Tensor, log_r: np.ndarray) -> dict:
    """Our CLI in a child process (its own peak RSS), its trainer scoring the test set every
    `EVAL_EVERY` iterations (outside its clock); then its run folder is loaded here for the exact
    log p(x) of the test set (one backward trajectory per object: exact when append-only)."""
    with tempfile.TemporaryDirectory() as tmp:
        peak_rss_mb = train_ours(["bitseq", "--length", str(TASK["length"]), "--token-bits", str(TASK["token_bits"]),
                                  "--num-modes", str(TASK["num_modes"]), "--mode-seed", str(TASK["mode_seed"]),
                                  "--beta", str(TASK["beta"]), "--mode-threshold", str(TASK["mode_threshold"]),
                                  "--no-prepend", "--objective", "tb", "--backward-policy", "uniform",
                                  "--batch-size", str(BATCH_SIZE), "--hidden", "256", "--layers", "2", "--lr", "1e-3",
                                  "--lr-logz", "0.5", "--exploration", "0", "--iters", str(iters), "--seed", str(seed),
                                  "--eval-every", str(EVAL_EVERY), "--final-samples", "0", "--no-exact", "--quiet",
                                  "--threads", "1", "--out", tmp, *OURS[system]])
        summary = json.loads((Path(tmp) / "summary.json").read_text())
        records = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
        trainer = load_run(tmp)
        log_p = {suffix: estimate_log_prob(trainer.env, policy, test, 1).numpy()
                 for suffix, policy in (("", trainer.eval_policy), ("_raw", trainer.policy))}
    seconds = summary["seconds"]
    curve = [{"iteration": r["step"], "seconds": r["seconds"], "spearman": r["test_spearman"]}
             for r in records if "test_spearman" in r]
    return {"iterations": summary["iterations"], "seconds": seconds, "iters_per_s": summary["iterations"] / seconds,
            "trajectories_per_s": BATCH_SIZE * summary["iterations"] / seconds,
            "compile_seconds": summary.get("compile_seconds", 0.0), "peak_rss_mb": peak_rss_mb,
            "log_z": summary["log_z"], "modes_found": summary["modes_found"],
            **quality(log_p[""], log_r), **quality(log_p["_raw"], log_r, "_raw"), "curve": curve,
            "seconds_to_level": time_to(curve, "spearman", SPEARMAN_LEVEL, below=False)}


def run_peer(system: str, python: str, iters: int, seed: int, task: Path, env: BitSeq, log_r: np.ndarray) -> dict:
    """The peer's script in its venv: one JSON line, the test set's log p at each evaluation, and
    its training samples for modes found."""
    script, driver_args = PEERS[system]
    with tempfile.TemporaryDirectory() as tmp:
        samples, evals_path = Path(tmp) / "samples.npy", Path(tmp) / "evals.npz"
        cmd = [python, str(script), "--task", str(task), "--samples-out", str(samples), "--iters", str(iters),
               "--seed", str(seed), "--batch-size", str(BATCH_SIZE), "--eval-every", str(EVAL_EVERY),
               "--evals-out", str(evals_path), *driver_args]
        result = run_peer_script(system, cmd)
        result["modes_found"] = modes_found(env, np.load(samples))
        evals = np.load(evals_path)
        iterations, seconds, log_ps = evals["iterations"], evals["seconds"], evals["log_probs"]
    curve = [{"iteration": int(i), "seconds": float(t), "spearman": quality(log_p, log_r)["spearman"]}
             for i, t, log_p in zip(iterations, seconds, log_ps)]
    result.update(quality(log_ps[-1], log_r), curve=curve,
                  seconds_to_level=time_to(curve, "spearman", SPEARMAN_LEVEL, below=False))
    return result


def summarise(runs: list[dict], systems: list[str]) -> tuple[list[dict], list[dict]]:
    """Per system: medians over the seeds (JSON rows) and the printed table's rows, with each
    system's median it/s over each peer's."""
    peers = [s for s in systems if s in PEERS and any(r["system"] == s for r in runs)]
    keys = ["iters_per_s", "trajectories_per_s", "seconds", "compile_seconds", "peak_rss_mb", "spearman",
            "logp_minus_logr_mean", "logp_minus_logr_std", "modes_found", "spearman_raw", "logp_minus_logr_std_raw",
            "seconds_to_level", "spearman_at_equal_time", "equal_time_seconds"]
    summary = []
    for system in systems:
        sel = [r for r in runs if r["system"] == system]
        if sel:
            row = {"system": system, "n": len(sel), **{key: median([r.get(key) for r in sel]) for key in keys}}
            rates = [r["iters_per_s"] for r in sel]
            row["iters_per_s_mean"], row["iters_per_s_std"] = statistics.mean(rates), statistics.pstdev(rates)
            row["reached_level"] = sum(r.get("seconds_to_level") is not None for r in sel)
            summary.append(row)
    rate = {row["system"]: row["iters_per_s"] for row in summary}
    for row in summary:
        row["iters_per_s_over"] = {peer: row["iters_per_s"] / rate[peer] for peer in peers}
    printed = [{"system": row["system"], "n": row["n"], "it/s": row["iters_per_s"], "traj/s": row["trajectories_per_s"],
                "train s": row["seconds"], "compile s": row["compile_seconds"], "peak MB": row["peak_rss_mb"],
                "spearman": row["spearman"], "spearman @ equal s": row["spearman_at_equal_time"],
                "std(logp-logR)": row["logp_minus_logr_std"],
                "modes": row["modes_found"], f"s to {SPEARMAN_LEVEL}": row["seconds_to_level"],
                f"{SPEARMAN_LEVEL} hit": f"{row['reached_level']}/{row['n']}",
                **{f"/{peer}": f"{ratio:.2f}x" for peer, ratio in row["iters_per_s_over"].items()}}
               for row in summary]
    return summary, printed


def summary_and_table(runs: list[dict], systems: list[str], seeds: list[int], iters: int) -> tuple[list[dict], list[str]]:
    add_equal_time(runs, "spearman")
    summary, printed = summarise(runs, systems)
    lines = table(printed).splitlines() if printed else []
    lines.append(f"medians over seeds {seeds}, {iters} iterations of batch {BATCH_SIZE}; /PEER: it/s over "
                 f"PEER's; spearman and std(logp-logR) on {TEST_SIZE} test sequences (ours: moving-average weights); "
                 f"spearman @ equal s: each system's at the last evaluation within the training seconds of the "
                 f"seed's fastest run; s to {SPEARMAN_LEVEL}: training seconds until the Spearman first exceeds "
                 f"{SPEARMAN_LEVEL} (evaluated every {EVAL_EVERY} iterations; median over the runs that reached it)")
    return summary, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=None, help="default 2000 (200 with --quick)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (0 with --quick)")
    parser.add_argument("--systems", nargs="*", default=SYSTEMS, choices=SYSTEMS)
    parser.add_argument("--quick", action="store_true", help="200 iterations, seed 0")
    parser.add_argument("--out", default=str(BENCH / "results" / "bitseq_speed.json"))
    parser.add_argument("--resummarise", action="store_true", help="only remake --out's summary from its runs")
    args = parser.parse_args(argv)
    if args.resummarise:
        resummarise(args.out, lambda data: summary_and_table(data["runs"], data["settings"]["systems"],
                                                             data["settings"]["seeds"], data["settings"]["iters"]))
        return 0
    args.iters = args.iters or (200 if args.quick else 2000)
    args.seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    torch.set_num_threads(1)  # (the evaluation here; the training runs in children)

    pythons = {name: peer_python(name) for name in args.systems if name in PEERS}
    systems = [s for s in args.systems if s in OURS or pythons[s]]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        task, env, test, log_r = make_task(Path(tmp))
        for seed in args.seeds:
            for system in systems:  # interleaved: ours, ours-eager, peer1, ..., then the next seed
                try:
                    if system in OURS:
                        result = run_ours(system, args.iters, seed, test, log_r)
                    else:
                        result = run_peer(system, pythons[system], args.iters, seed, task, env, log_r)
                except (RuntimeError, ValueError, IndexError, KeyError, OSError) as error:
                    print(f"[bench] {system} seed={seed} FAILED: {error}", flush=True)
                    continue
                result.update(system=system, seed=seed)
                runs.append(result)
                print(f"[bench] seed={seed} {system:10s} {result['iters_per_s']:8.1f} it/s  "
                      f"spearman={result['spearman']:.3f}  modes={result['modes_found']}", flush=True)

    summary, lines = summary_and_table(runs, systems, args.seeds, args.iters)
    print("\n".join(lines))

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": {**TASK, "append_only": True, "iters": args.iters, "seeds": args.seeds, "systems": systems,
                     "test_size": TEST_SIZE, "test_seed": TEST_SEED, "batch_size": BATCH_SIZE, "hidden": 256,
                     "eval_every": EVAL_EVERY, "spearman_level": SPEARMAN_LEVEL,
                     "layers": 2, "activation": "leaky_relu(0.01)", "objective": "tb", "lr": 1e-3, "lr_logz": 0.5},
        "machine": {**machine(), "cpu_count": os.cpu_count(), "platform": platform.platform()},
        "peers": peer_versions(pythons),
        "runs": runs, "summary": summary, "table": lines}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
