"""Energy-based GFlowNets (Zhang et al. 2022) against Gibbs and Gibbs-with-gradients as the
negative samplers of the same energy-model training, at equal energy cost per iteration.

    python bench/ebgfn.py ising [--side 4] [--seeds 1 2] [--iters 2000]
    python bench/ebgfn.py densities [--datasets 2spirals 8gaussians checkerboard] [--iters 2000]

Every method trains the same energy model with the same loop (`gflownets.energy.train_energy`:
Adam, batch 128, mean E(data) - mean E(negatives)); only the negatives differ:

- eb-gfn: one TB step of the GFlowNet (reward exp(-E), half on-policy, half data walked back
  with P_B), then back-and-forth MH from the data, K growing linearly from 1 to D over the
  first half of training. 3 B energy evaluations per iteration (B on-policy objects, B data
  points, B proposals).
- gibbs: 128 persistent chains, 2 random-scan Gibbs steps per iteration: 3 B evaluations.
- gwg: 128 persistent chains, 1 Gibbs-with-gradients step: 4 B evaluations (E and its gradient
  at the start and at the proposal), the nearest budget not below EB-GFN's.

With --equal-time each chain baseline is trained once more (`gibbs@time`, `gwg@time`) with as
many steps per iteration as fit EB-GFN's measured time per iteration (the GFlowNet's own
network is cost that energy calls do not count): equal wall-clock, same thread count.

ising: a periodic side x side lattice, J = sigma * adjacency (sigma 0.2), 2000 exact samples;
the energy model is a dense Ising model (learned symmetric J). Reported: RMSE of the learned J
to the true one and the exact KL divergences (all 2^D states enumerated; 65,536 for 4 x 4).

densities: the 2-D toy densities as 32-bit Gray codes (16 bits a coordinate on [-4, 4]); the
energy model is an MLP (3 x 256, SiLU) over a data-mean Bernoulli base. Reported on 4000
held-out points: the EBM's NLL (log Z_E by importance sampling from a data kernel, 20,000
draws, the same for every method), the GFlowNet sampler's own NLL (log p(x) by importance
sampling over 20 backward trajectories; uniform bits give 32 ln 2 = 22.18 nats), and the MMD
(exp-Hamming kernel, bandwidth 0.1) between 4000 samples and the held-out points: GFlowNet
samples for eb-gfn, fresh chains of the method's own sampler on its learned energy for
gibbs/gwg (`--sample-steps` steps from uniform bits). A plot per data set shows the decoded
samples next to the data. Prints tables and writes bench/results/ebgfn-<task>.json.

The learning rates are the reference's defaults, checked on seed 0 (ising) and 2spirals only;
the reported seeds and data sets were not tuned on.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from common import RESULTS, save_result, table
from gflownets.energy import EnergyTraining, train_energy
from gflownets.energy.run import (EQUAL_COST_STEPS, SAMPLERS, decode_points, density_data, evaluate, ising_data,
                                  make_energy, make_negatives)
from gflownets.figures import plot_point_panels

COLUMNS = {"ising": ["rmse_J", "kl_true_learned", "kl_learned_true", "energy_nll", "mmd", "train_s"],
           "densities": ["energy_nll", "sampler_nll", "mmd", "train_s"]}


def schedule(methods: list[str], times: dict[str, float], data, args, seed: int):
    """The runs of one seed and data set, in order, as (label, sampler, steps per iteration):
    each method at equal energy cost, then (with --equal-time) each chain baseline with as many
    steps per iteration as fit EB-GFN's measured time per iteration. A generator, so the
    equal-time steps come from the times measured by the runs before them."""
    ordered = sorted(methods, key=lambda m: m != "eb-gfn")  # EB-GFN first: its time sets the others'
    for method in ordered:
        yield method, method, None
    if args.equal_time and "eb-gfn" in times:
        for method in ordered:
            if method in EQUAL_COST_STEPS:
                steps = steps_for_time(method, data, args, seed, times["eb-gfn"] / args.iters)
                yield f"{method}@time", method, steps


def steps_for_time(method: str, data, args, seed: int, seconds_per_iteration: float) -> int:
    """Chain steps per iteration that take `seconds_per_iteration`: the time per iteration is
    fitted as a + b * steps from two short trainings (30 iterations at 2 and at 64 steps),
    since a fixed cost per iteration (the energy update, the first evaluation) does not scale."""
    measured = []
    for steps in (2, 64):
        energy = make_energy(data)
        negatives = make_negatives(method, data.dim, args.batch, 30, args.hidden, args.layers, steps)
        config = EnergyTraining(iters=30, batch_size=args.batch, lr=args.lr, seed=seed, progress=False)
        started = time.perf_counter()
        train_energy(energy, negatives, data.train, config, record_every=30)
        measured.append((time.perf_counter() - started) / 30)
    per_step = max((measured[1] - measured[0]) / 62, 1e-9)
    fixed = measured[0] - 2 * per_step
    return max(1, min(args.max_steps, round((seconds_per_iteration - fixed) / per_step)))


def run(data, args, seed: int, rows: list[dict], panels: list) -> None:
    times: dict[str, float] = {}
    for label, method, steps in schedule(args.methods, times, data, args, seed):
        torch.manual_seed(seed)
        energy = make_energy(data)
        negatives = make_negatives(method, data.dim, args.batch, args.iters, args.hidden, args.layers, steps)
        config = EnergyTraining(iters=args.iters, batch_size=args.batch, lr=args.lr, seed=seed, progress=args.progress)
        started = time.perf_counter()
        records = train_energy(energy, negatives, data.train, config, record_every=max(1, args.iters // 10))
        times[label] = time.perf_counter() - started
        started = time.perf_counter()
        metrics, samples = evaluate(energy, negatives, data, torch.Generator().manual_seed(seed + 1),
                                    n_samples=args.n_test, sample_steps=args.sample_steps, is_samples=args.is_samples)
        row = {"data": data.name, "method": label, "seed": seed, "steps_per_it": getattr(negatives, "steps", None),
               **metrics, "train_s": round(times[label], 1), "eval_s": round(time.perf_counter() - started, 1),
               "energy_evals_per_it": records[-1]["energy_evaluations"] / args.iters,
               "acceptance": records[-1].get("acceptance"), "curve": records}
        rows.append(row)
        print(table([row], ["data", "method", "seed", "steps_per_it", *COLUMNS[args.task], "energy_evals_per_it",
                            "acceptance"]), flush=True)
        if data.is_density:
            panels.append((f"{label} ({len(samples)} samples)", decode_points(samples)))


def summarise(rows: list[dict], keys: list[str]) -> list[dict]:
    """Mean over seeds per data set and method."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["data"], row["method"]), []).append(row)
    return [{"data": data, "method": method, "seeds": len(group),
             **{k: sum(r[k] for r in group if r.get(k) is not None) / len(group) for k in keys}}
            for (data, method), group in groups.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["ising", "densities"])
    parser.add_argument("--methods", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=None, help="energy lr (default: 0.01 ising, 1e-3 densities)")
    parser.add_argument("--hidden", type=int, default=None, help="GFlowNet width (default 128 ising, 256 densities)")
    parser.add_argument("--layers", type=int, default=2, help="GFlowNet hidden layers")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 1 2 (ising), 1 (densities)")
    parser.add_argument("--side", type=int, default=4)
    parser.add_argument("--sigma", type=float, default=0.2)
    parser.add_argument("--datasets", nargs="+", default=["2spirals", "8gaussians", "checkerboard"])
    parser.add_argument("--n-data", type=int, default=None, help="training points (default 2000 ising, 20000 densities)")
    parser.add_argument("--n-test", type=int, default=4000)
    parser.add_argument("--sample-steps", type=int, default=320, help="steps of the Gibbs/GWG sample chains")
    parser.add_argument("--is-samples", type=int, default=20_000)
    parser.add_argument("--equal-time", action="store_true",
                        help="also train each chain baseline with as many steps as fit EB-GFN's training time")
    parser.add_argument("--max-steps", type=int, default=1000, help="cap on the equal-time baselines' steps per iteration")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--plots", default=str(RESULTS))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ising = args.task == "ising"
    args.lr = args.lr or (0.01 if ising else 1e-3)
    args.hidden = args.hidden or (128 if ising else 256)
    args.n_data = args.n_data or (2000 if ising else 20_000)
    args.seeds = args.seeds or ([1, 2] if ising else [1])
    rows: list[dict] = []
    if ising:
        for seed in args.seeds:
            run(ising_data(args.side, args.sigma, args.n_data, args.n_test, seed=seed), args, seed, rows, [])
    else:
        for dataset in args.datasets:
            for seed in args.seeds:
                data = density_data(dataset, args.n_data, args.n_test, seed=seed)
                panels = [("data (held out)", decode_points(data.test))]
                run(data, args, seed, rows, panels)
                plot_point_panels(panels, Path(args.plots) / f"ebgfn-{dataset}-seed{seed}.png")
    summary = summarise(rows, [k for k in COLUMNS[args.task] if k != "sampler_nll"])
    print(f"\n{args.task}, {args.iters} iterations, batch {args.batch}, seeds {args.seeds}; mean over seeds")
    print(table(summary, ["data", "method", "seeds", *[k for k in COLUMNS[args.task] if k != "sampler_nll"]]))
    result = {"task": args.task, "runs": rows, "summary": summary}
    save_result(result, args, f"ebgfn-{args.task}.json")


if __name__ == "__main__":
    main()
