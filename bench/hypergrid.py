"""Speed benchmark on the hypergrid: our CLI trainer against peer libraries (torchgfn, gfnx),
same settings, runs interleaved (ours, peer1, peer2, ours, ...) so machine load hits all alike.

    python bench/hypergrid.py [--dims 2 4] [--height 8] [--iters 2000] [--seeds 0 1 2]
                              [--ours eager compiled] [--peers torchgfn gfnx] [--quick]
                              [--baseline DIR]

`--baseline DIR` also runs our trainer from another checkout (say `git worktree add DIR REV`),
interleaved with this one, as `baseline` / `baseline-compiled`: a before/after A/B in one run.

Ours runs twice by default: eager (`ours`, `--no-compile`: what a run of fewer than 5000
iterations takes by itself) and with `--compile` (`ours-compiled`, the rollout as one
torch.compile graph). Compilation happens before the training clock starts
and is reported as `compile s`, as gfnx's jit compilation is.

A fair comparison: every system gets our network, one MLP trunk (2 x 256) with a P_F head and a
P_B head (torchgfn through its `trunk=` argument), one thread (OMP/MKL/XLA limited to one), and
its own best documented driver: gfnx twice, a Python loop over its jitted step (`gfnx`) and the
whole loop in one jitted `lax.scan` as its baselines run it (`gfnx-scan`).

Peers run in their own virtual environments under bench/.venvs/ (created when missing; a peer
that cannot be installed is skipped). Writes bench/results/hypergrid.json."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import add_equal_time, resummarise, time_to

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENVS = BENCH / ".venvs"
TORCH_PIN = "torch==2.13.0"
#: each peer: its virtual environment (bench/.venvs/VENV, created by `peer_python`), script and
#: driver arguments; every peer builds our network (one trunk, a P_F head and a P_B head)
PEERS = {
    "torchgfn": {"venv": "torchgfn", "script": BENCH / "peers" / "torchgfn_hypergrid.py", "args": []},
    "gfnx": {"venv": "gfnx", "script": BENCH / "peers" / "gfnx_hypergrid.py", "args": ["--driver", "loop"]},
    "gfnx-scan": {"venv": "gfnx", "script": BENCH / "peers" / "gfnx_hypergrid.py", "args": ["--driver", "scan"]},
}
VENV_INSTALLS = {"torchgfn": [[TORCH_PIN], ["torchgfn==2.4.1"]], "gfnx": [["gfnx==0.0.1"]]}
#: one core per system: every run (ours and the peers') is limited to one thread
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
# our child: runs the CLI in-process and prints its own peak RSS (bench/peers/peak_rss.py, as the peers)
OUR_LAUNCHER = (
    "import sys\n"
    f"sys.path.insert(0, {str(BENCH / 'peers')!r})\n"
    "from peak_rss import peak_mb\n"
    "from gflownets.cli import cli\n"
    "try:\n    cli.main(args=sys.argv[1:], standalone_mode=False)\n"
    "finally:\n    print('PEAK_RSS_MB', peak_mb())\n"
)


def peer_python(name: str) -> str | None:
    """The peer's python: bench/.venvs/VENV, created when missing (None if it cannot be)."""
    venv = VENVS / PEERS[name]["venv"]
    if (venv / "bin" / "python").exists() and (venv / ".installed").exists():
        return str(venv / "bin" / "python")
    print(f"[bench] creating {venv} for {name} ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        for pkgs in VENV_INSTALLS[PEERS[name]["venv"]]:
            subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", *pkgs], check=True)
        (venv / ".installed").touch()
        return str(venv / "bin" / "python")
    except (subprocess.CalledProcessError, OSError) as error:
        print(f"[bench] SKIPPING {name}: could not install it ({error})", flush=True)
        return None


#: the packages whose installed versions a results file records for each peer's environment
PEER_PACKAGES = {"torchgfn": ["torchgfn", "torch", "numpy"], "gfnx": ["gfnx", "jax", "jaxlib", "optax", "numpy"]}


def peer_versions(pythons: dict[str, str | None]) -> dict[str, dict[str, str]]:
    """{virtual environment: {package: version}} of the peers given (name -> python, None: not
    installed): the peers' venvs are resolved by pip when first made, so a results file says
    which releases of their dependencies ran."""
    code = "import importlib.metadata as m, json, sys; print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))"
    versions = {}
    for name, python in pythons.items():
        venv = PEERS[name]["venv"]
        if python is not None and venv not in versions:
            proc = subprocess.run([python, "-c", code, *PEER_PACKAGES[venv]], capture_output=True, text=True)
            versions[venv] = json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr[-300:]}
    return versions


OURS = {"ours": ["--no-compile"], "ours-compiled": ["--compile"]}


def train_ours(args: list[str], root: Path = ROOT) -> float | None:
    """`gflownets train ARGS` of the checkout at `root` in a child process, one thread; raises with
    its stderr if it fails; returns the child's peak RSS in MB."""
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(root / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", OUR_LAUNCHER, "train", *args], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"our trainer failed:\n{proc.stderr[-3000:]}")
    rss = [float(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("PEAK_RSS_MB")]
    return rss[-1] if rss else None


def run_peer_script(name: str, cmd: list[str]) -> dict:
    """A peer's script (`cmd`, its venv's python first), one thread; its last JSON line."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **ONE_THREAD})
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


def run_ours(dim: int, height: int, iters: int, seed: int, samples: int, flags: list[str],
             root: Path = ROOT, eval_every: int = 0) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        peak_rss_mb = train_ours(["hypergrid", "--ndim", str(dim), "--height", str(height), "--iters", str(iters),
                                  "--batch-size", "16", "--hidden", "256", "--layers", "2", "--lr", "1e-3",
                                  "--lr-logz", "0.1", "--objective", "tb", "--seed", str(seed),
                                  "--eval-every", str(eval_every), "--final-samples", str(samples), "--quiet",
                                  "--threads", "1", "--out", tmp, *flags], root)
        summary = json.loads((Path(tmp) / "summary.json").read_text())
        records = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    curve = [{"iteration": r["step"], "seconds": r["seconds"], "l1": r["l1"]} for r in records if "l1" in r]
    seconds = summary["seconds"]
    return {"iterations": summary["iterations"], "seconds": seconds,
            "iters_per_s": summary["iterations"] / seconds,
            "trajectories_per_s": 16 * summary["iterations"] / seconds,
            "l1_samples": summary.get("l1_samples"), "peak_rss_mb": peak_rss_mb,
            "compile_seconds": summary.get("compile_seconds", 0.0), "curve": curve}


def run_peer(name: str, python: str, dim: int, height: int, iters: int, seed: int, samples: int,
             eval_every: int = 0) -> dict:
    cmd = [python, str(PEERS[name]["script"]), "--ndim", str(dim), "--height", str(height),
           "--iters", str(iters), "--seed", str(seed), "--samples", str(samples),
           "--eval-every", str(eval_every), *PEERS[name]["args"]]
    return run_peer_script(name, cmd)


def noise_floor(dim: int, height: int, samples: int, draws: int = 5, seed: int = 0) -> float:
    """Mean L1 between the target and the empirical distribution of `samples` exact draws of it
    (our hypergrid's default reward, R0 0.1, R1 0.5, R2 2, as every system's grid): what a
    sampler's L1 from that many samples cannot go below."""
    import numpy as np

    from gflownets.envs import Hypergrid
    from gflownets.evaluation import StateGraph

    target = StateGraph(Hypergrid(ndim=dim, height=height)).target.double().cpu().numpy()
    target = target / target.sum()  # (float64 again: multinomial checks that it sums to 1)
    rng = np.random.default_rng(seed)
    return float(np.mean([np.abs(rng.multinomial(samples, target) / samples - target).sum() for _ in range(draws)]))



def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summary_and_table(runs: list[dict], dims: list[int], systems: list[str], ours: list[str],
                      baselines: dict, thresholds: dict, samples: int, eval_every: int) -> tuple[list[dict], list[str]]:
    """Per grid and system: means and standard deviations over the seeds, the printed table, and
    each run's exact L1 at equal wall time (the training seconds of the fastest run of its grid and seed)."""
    add_equal_time(runs, "l1", group=("ndim", "seed"))
    summary = []
    ratio_names = [f"{o}/peer" for o in ours]
    header = (f"{'D':>2} {'system':13s} {'it/s':>12} {'traj/s':>12} {'peak RSS MB':>12} {'L1 samples':>14} "
              f"{'exact L1':>14} {'L1 @ equal s':>14} {'s to quality':>13} {'compile s':>10} "
              + " ".join(f"{name:>19}" for name in ratio_names))
    lines = [header]
    fmt = lambda ms, p: f"{ms[0]:.{p}f}±{ms[1]:.{p}f}"  # noqa: E731
    for dim in dims:
        rates = {o: mean_std([r["iters_per_s"] for r in runs if r["ndim"] == dim and r["system"] == o])[0]
                 for o in ours}
        for system in systems:
            sel = [r for r in runs if r["ndim"] == dim and r["system"] == system]
            if not sel:
                continue
            row = {"ndim": dim, "system": system, "n": len(sel)}
            for key in ("iters_per_s", "trajectories_per_s", "peak_rss_mb", "l1_samples", "compile_seconds",
                        "l1_at_equal_time", "equal_time_seconds"):
                row[key] = mean_std([r.get(key) for r in sel])
            row["l1_exact"] = mean_std([r["curve"][-1]["l1"] if r.get("curve") else None for r in sel])
            # seconds to quality: the mean over the seeds that got there, and how many did
            reached = [r["seconds_to_quality"] for r in sel if r.get("seconds_to_quality") is not None]
            row["seconds_to_quality"], row["reached_quality"] = mean_std(reached), f"{len(reached)}/{len(sel)}"
            peer = system not in OURS and system not in baselines
            for o in ours:
                row[f"{o}_over_peer_iters_per_s"] = rates[o] / row["iters_per_s"][0] if peer else None
            summary.append(row)
            ratios = [f"{row[f'{o}_over_peer_iters_per_s']:.2f}x" if peer else "" for o in ours]
            compile_s = "-" if math.isnan(row["compile_seconds"][0]) else f"{row['compile_seconds'][0]:.1f}"
            lines.append(f"{dim:>2} {system:13s} {fmt(row['iters_per_s'], 1):>12} "
                         f"{fmt(row['trajectories_per_s'], 0):>12} {fmt(row['peak_rss_mb'], 0):>12} "
                         f"{fmt(row['l1_samples'], 3):>14} {fmt(row['l1_exact'], 3):>14} "
                         f"{fmt(row['l1_at_equal_time'], 3):>14} "
                         f"{fmt(row['seconds_to_quality'], 2) + ' ' + row['reached_quality']:>13} {compile_s:>10} "
                         + " ".join(f"{r:>19}" for r in ratios))
    lines.append(f"time to quality: training seconds until the exact L1 first fell below 1.5 x the L1 of "
                 f"{samples} exact samples ({', '.join(f'{d}-D: {thresholds[d]:.4f}' for d in dims)}), "
                 f"checked every {eval_every} iterations; mean over the seeds that reached it. L1 @ equal s: the "
                 f"exact L1 at the last check within the training seconds of the grid and seed's fastest run")
    return summary, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--height", type=int, default=8)
    parser.add_argument("--iters", type=int, default=None, help="default 2000 (200 with --quick)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--ours", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"],
                        help="which of our trainers to run: eager (--no-compile) and/or --compile")
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=sorted(PEERS))
    parser.add_argument("--eval-every", type=int, default=100,
                        help="exact L1 every N iterations, for the time to quality (not timed; 0: none)")
    parser.add_argument("--quick", action="store_true", help="200 iterations, seed 0, 20k samples")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout of this repository to run too, interleaved (A/B)")
    parser.add_argument("--out", default=str(BENCH / "results" / "hypergrid.json"))
    parser.add_argument("--resummarise", action="store_true", help="only remake --out's summary from its runs")
    args = parser.parse_args(argv)
    if args.resummarise:
        def again(data: dict) -> tuple[list[dict], list[str]]:
            settings, runs = data["settings"], data["runs"]
            systems = list(dict.fromkeys(run["system"] for run in runs))
            thresholds = {int(dim): value for dim, value in settings["quality_thresholds"].items()}
            return summary_and_table(runs, settings["dims"], systems, [s for s in systems if s in OURS],
                                     {s: None for s in systems if s.startswith("baseline")}, thresholds,
                                     settings["samples"], settings["eval_every"])
        resummarise(args.out, again)
        return 0
    if args.quick:
        args.seeds, args.samples = [0], 20_000
    if args.iters is None:
        args.iters = 200 if args.quick else 2000

    pythons = {name: peer_python(name) for name in args.peers}
    ours = [{"eager": "ours", "compiled": "ours-compiled"}[o] for o in args.ours]
    baselines = {}
    if args.baseline is not None:
        baselines = {name.replace("ours", "baseline"): OURS[name] for name in ours}
    systems = ours + list(baselines) + [name for name in args.peers if pythons[name]]
    # time to quality: the exact L1 below 1.5 x the L1 that `samples` exact draws of the target have
    floors = {dim: noise_floor(dim, args.height, args.samples) for dim in args.dims}
    thresholds = {dim: 1.5 * floors[dim] for dim in args.dims}
    runs = []
    for dim in args.dims:
        for seed in args.seeds:
            for system in systems:  # interleaved: ours, peer1, peer2, ours, ...
                try:
                    if system in OURS:
                        result = run_ours(dim, args.height, args.iters, seed, args.samples, OURS[system],
                                          eval_every=args.eval_every)
                    elif system in baselines:
                        result = run_ours(dim, args.height, args.iters, seed, args.samples, baselines[system],
                                          root=args.baseline.resolve(), eval_every=args.eval_every)
                    else:
                        result = run_peer(system, pythons[system], dim, args.height, args.iters, seed, args.samples,
                                          args.eval_every)
                except (RuntimeError, ValueError, IndexError) as error:
                    print(f"[bench] {system} D={dim} seed={seed} FAILED: {error}", flush=True)
                    continue
                result.update(system=system, ndim=dim, height=args.height, seed=seed,
                              seconds_to_quality=time_to(result.get("curve", []), "l1", thresholds[dim]))
                runs.append(result)
                print(f"[bench] D={dim} seed={seed} {system:13s} {result['iters_per_s']:8.1f} it/s  "
                      f"L1={result.get('l1_samples')}", flush=True)

    summary, lines = summary_and_table(runs, args.dims, systems, ours, baselines, thresholds, args.samples,
                                       args.eval_every)
    print("\n".join(lines))

    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": {"dims": args.dims, "height": args.height, "iters": args.iters, "seeds": args.seeds,
                     "eval_every": args.eval_every, "quality_thresholds": thresholds, "noise_floors": floors,
                     "samples": args.samples, "batch_size": 16, "hidden": 256, "layers": 2, "objective": "tb",
                     "lr": 1e-3, "lr_logz": 0.1},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "torch": torch_version},
        "peers": peer_versions(pythons),
        "runs": runs, "summary": summary, "table": lines}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
