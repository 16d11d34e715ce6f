"""Ehrlich function (Stanton et al. 2024; holo-bench) with 32 states, length 32, 4 motifs of
length 4, learned with trajectory balance on R(x) = f(x)^beta, against random search with the
same number of oracle calls. Reports, over training, the best value f found and the number of
distinct optimal (f = 1) sequences found; at the end, from the trained sampler and from random
search: top-100 mean f (over distinct sequences), their diversity (mean pairwise Hamming
distance), the best f and the fraction of optimal samples.

    PYTHONPATH=src python bench/ehrlich_tb.py --seconds 840 --floor 1e-30 --out ehrlich_tb_beta16.json  # reported
    PYTHONPATH=src python bench/ehrlich_tb.py --seconds 1080 --beta 8 --floor 1e-30    # reported
    PYTHONPATH=src python bench/ehrlich_tb.py --seconds 600 --floor 1e-30 --replay 1000 \
        --replay-keep best --mutations 32 --seed S   # reported: seeds 0-3; 1200 s for seeds 0 and 2

Generalisation (`--oracle-seeds`): per Ehrlich function (oracle seed) and at equal oracle calls,
`gflownets train ehrlich`'s default recipe (3 training seeds) against Metropolis with point
mutations (`--mcmc-seeds` chains seeds): oracle calls to first reach f = 1, best f, distinct
optima found, wall time; and the trained sampler's (no chains, no exploration) fraction of
f = 1 and distinct optima in 10k samples, which cost no oracle call to draw. The recipe was
chosen on oracle seeds 1-5; the others are held out. Reported (bench/README.md):

    PYTHONPATH=src python bench/ehrlich_tb.py --oracle-seeds 1-3 --out ehrlich_generalise_a.json
    PYTHONPATH=src python bench/ehrlich_tb.py --oracle-seeds 4,5,0,6 --out ehrlich_generalise_b.json
"""

from __future__ import annotations

import argparse
import time

import torch

from common import machine, table, train_with_budget, write_json
from gflownets.envs import Ehrlich
from gflownets.measures import hamming_matrix, mean_pairwise_distance, top_k_distinct
from gflownets.sampling import metropolis_step
from gflownets.training import RunConfig, Trainer


def summarise(name: str, x: torch.Tensor, f: torch.Tensor, k: int = 100) -> dict:
    top = top_k_distinct(x, f, k)
    return {"method": name, "oracle_calls": len(x), f"top{k}_f": float(f[top].mean()),
            f"top{k}_diversity": mean_pairwise_distance(x[top], hamming_matrix), "max_f": float(f.max()),
            "fraction_f=1": float((f == 1).double().mean()),
            "distinct_f=1": int(len(torch.unique(x[f == 1], dim=0))) if (f == 1).any() else 0,
            "unique_fraction": float(len(torch.unique(x, dim=0)) / len(x))}


def mcmc_search(env: Ehrlich, calls: int, chains: int = 16, seed: int = 0) -> torch.Tensor:
    """Metropolis on the environment's R(x) = f(x)^beta with its point mutations (one position
    to another state, a symmetric proposal; the library's `metropolis_step`, as the GFlowNet's
    mutation search uses), `chains` chains from feasible Markov-chain starts, until `calls`
    oracle calls. A mutation that would break feasibility is not made and costs no call (the
    constraint is known, as the GFlowNet's masks know it). Returns every proposal evaluated."""
    gen = torch.Generator().manual_seed(seed)
    x = env.oracle.initial_solution(chains, seed=seed)
    log_r = env.log_reward(x)
    visited, used = [x], chains
    while used < calls:
        x, log_r, proposals, _ = metropolis_step(env, x, log_r, gen)
        visited.append(proposals)
        used += len(proposals)
    return torch.cat(visited)[:calls]


class CountingOracle:
    """The environment's oracle, counting every evaluation (rows) and remembering the first call
    count at which f = 1 was seen and the distinct optima seen."""

    def __init__(self, oracle):
        self.oracle, self.calls, self.best, self.first_optimum = oracle, 0, 0.0, None
        self.optima: set[tuple[int, ...]] = set()

    def __getattr__(self, name):  # tables and helpers: the oracle's own
        return getattr(self.oracle, name)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        f = self.oracle(x)
        if len(f):
            hit = f == 1
            if hit.any() and self.first_optimum is None:
                self.first_optimum = self.calls + int(hit.nonzero()[0]) + 1
            self.optima.update(map(tuple, x[hit].tolist()))
            self.best = max(self.best, float(f.max()))
        self.calls += len(f)
        return f


def parse_seeds(text: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]."""
    seeds = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds.extend(range(int(low), int(high or low) + 1))
    return seeds


def holo32(oracle_seed: int, **options) -> Ehrlich:
    """The 32/32/4/4 Ehrlich function of this benchmark."""
    return Ehrlich(num_states=32, dim=32, num_motifs=4, motif_length=4, oracle_seed=oracle_seed, **options)


def mcmc_run(oracle_seed: int, calls: int, seed: int) -> dict:
    env = holo32(oracle_seed)
    counter = env.oracle = CountingOracle(env.oracle)
    started = time.perf_counter()
    mcmc_search(env, calls, seed=seed)
    return {"method": "MCMC", "oracle_seed": oracle_seed, "seed": seed, "calls": counter.calls,
            "first_f=1_calls": counter.first_optimum, "max_f": counter.best,
            "distinct_f=1": len(counter.optima), "seconds": time.perf_counter() - started}


def gflownet_run(oracle_seed: int, calls: int, seed: int, samples: int, recipe: dict) -> dict:
    """`recipe` (`gflownets train ehrlich`'s defaults unless overridden), trained until `calls`
    oracle calls; then `samples` draws from the trained sampler (the EMA policy, as
    `gflownets sample` draws)."""
    env = holo32(oracle_seed)
    counter = env.oracle = CountingOracle(env.oracle)
    config = RunConfig(**{**recipe, "seed": seed, "eval_every": 0, "compile": False})
    trainer = Trainer(config, env=env, progress=False)
    started = time.perf_counter()
    while counter.calls < calls:
        trainer.train_step()
        trainer.step += 1
    seconds = time.perf_counter() - started
    row = {"method": "GFlowNet", "oracle_seed": oracle_seed, "seed": seed, "calls": counter.calls,
           "iterations": trainer.step, "first_f=1_calls": counter.first_optimum, "max_f": counter.best,
           "distinct_f=1": len(counter.optima), "seconds": seconds}
    drawn = trainer.sample_objects(samples, torch.Generator().manual_seed(99))
    sampler = summarise("GFlowNet sampler", drawn, counter.oracle(drawn))  # scoring them is not in the budget
    row.update({"sampler_fraction_f=1": sampler["fraction_f=1"], "sampler_distinct_f=1": sampler["distinct_f=1"],
                "sampler_top100_f": sampler["top100_f"]})
    return row


def median(values: list[float | None]) -> float:
    """Median with a miss (None) counted as infinitely many calls."""
    ordered = sorted(float("inf") if v is None else v for v in values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def generalise(args) -> None:
    recipe = dict(Ehrlich.run_defaults)
    for item in args.recipe:  # KEY=VALUE overrides, typed as the default they replace
        key, _, value = item.partition("=")
        recipe[key] = type(getattr(RunConfig(), key))(value)
    runs, summary = [], []
    for oracle_seed in parse_seeds(args.oracle_seeds):
        mcmc = [mcmc_run(oracle_seed, args.calls, s) for s in range(args.mcmc_seeds)]
        mcmc_median = median([r["first_f=1_calls"] for r in mcmc]) if mcmc else float("nan")
        gfn = []
        for seed in parse_seeds(args.train_seeds):
            row = gflownet_run(oracle_seed, args.calls, seed, args.samples, recipe)
            hit = row["first_f=1_calls"]
            row["within_mcmc_median"] = hit is not None and hit <= mcmc_median
            gfn.append(row)
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                  flush=True)
        runs += mcmc + gfn
        summary.append({
            "oracle_seed": oracle_seed, "held_out": oracle_seed not in range(1, 6),
            "mcmc_median_first_f=1": mcmc_median,
            "gfn_first_f=1": ",".join(str(r["first_f=1_calls"]) for r in gfn),
            "gfn_within_median": f"{sum(r['within_mcmc_median'] for r in gfn)}/{len(gfn)}",
            "gfn_median_first_f=1": median([r["first_f=1_calls"] for r in gfn]),
            "mcmc_distinct_f=1": sum(r["distinct_f=1"] for r in mcmc) / max(len(mcmc), 1),
            "gfn_distinct_f=1_training": sum(r["distinct_f=1"] for r in gfn) / len(gfn),
            "gfn_sampler_distinct_f=1": sum(r["sampler_distinct_f=1"] for r in gfn) / len(gfn),
            "gfn_sampler_fraction_f=1": sum(r["sampler_fraction_f=1"] for r in gfn) / len(gfn),
            "mcmc_seconds": sum(r["seconds"] for r in mcmc) / max(len(mcmc), 1),
            "gfn_seconds": sum(r["seconds"] for r in gfn) / len(gfn)})
        print(table(summary[-1:], list(summary[0])), flush=True)
        result = {"task": "ehrlich V=32 L=32 c=4 k=4, per oracle seed", "recipe": recipe,
                  "calls": args.calls, "machine": machine(), "args": vars(args), "summary": summary,
                  "runs": runs}
        path = write_json(args.out, result)  # after each function: a long report keeps what it has
    print()
    print(table(summary, list(summary[0])))
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=900)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-logz", type=float, default=0.5)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--beta", type=float, default=16.0)
    parser.add_argument("--floor", type=float, default=1e-40)
    parser.add_argument("--exploration", type=float, default=0.0)
    parser.add_argument("--replay", type=int, default=0, help="replay buffer size (0: off)")
    parser.add_argument("--replay-keep", default="recent", choices=["recent", "best"])
    parser.add_argument("--local-search", type=int, default=0, help="LS-GFN: steps re-completed (0: off)")
    parser.add_argument("--mutations", type=int, default=0,
                        help="mutation search: persistent Metropolis chains with point mutations, "
                             "whose proposals are trained on (0: off)")
    parser.add_argument("--prepend", action="store_true")
    parser.add_argument("--oracle-seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="ehrlich_tb.json")
    parser.add_argument("--oracle-seeds", default=None,
                        help="generalisation report over these Ehrlich functions, e.g. 0-8")
    parser.add_argument("--train-seeds", default="0-2")
    parser.add_argument("--mcmc-seeds", type=int, default=10, help="MCMC runs per function")
    parser.add_argument("--calls", type=int, default=120_000, help="oracle calls per run (generalisation)")
    parser.add_argument("--recipe", nargs="*", default=[], metavar="KEY=VALUE",
                        help="generalisation: RunConfig values over the environment's recipe")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.oracle_seeds is not None:
        if args.samples == 5000:
            args.samples = 10_000
        return generalise(args)

    env = holo32(args.oracle_seed, beta=args.beta, floor=args.floor, prepend=args.prepend)
    config = RunConfig(objective="tb", batch_size=args.batch_size, lr=args.lr, lr_logz=args.lr_logz,
                       hidden=args.hidden, layers=2, exploration=args.exploration, seed=args.seed,
                       threads=args.threads, eval_every=0, replay_size=args.replay,
                       replay_batch=args.batch_size // 2 if args.replay else 0, replay_keep=args.replay_keep,
                       local_search=args.local_search, mutations=args.mutations,
                       backward_policy="learned" if args.prepend else "uniform")
    trainer = Trainer(config, env=env, progress=False)
    seen = {"max_f": 0.0, "optimal": set(), "calls": 0}
    visited = []

    def on_batch(batch):
        # every object the oracle scored this iteration: the fresh samples, local search's kept
        # refinements (the better of sample and candidate) and the mutants; not the replayed ones,
        # which come last (the buffer is non-empty from the second iteration on)
        replayed = config.replay_batch if trainer.step > 1 else 0
        fresh = len(batch) - replayed
        x = batch.terminal_states[:fresh]
        f = env.oracle(x)
        visited.append(x.clone())
        if len(visited) >= 256:  # thousands of small tensors kept alive fragment the heap (GBs of RSS)
            visited[:] = [torch.cat(visited)]
        seen["calls"] += fresh
        seen["max_f"] = max(seen["max_f"], float(f.max()))
        seen["optimal"].update(map(tuple, x[f == 1].tolist()))
        return {"max_f_so_far": seen["max_f"], "distinct_optimal_found": len(seen["optimal"])}

    curve = train_with_budget(trainer, args.iters, args.seconds, args.every, on_batch)
    calls = seen["calls"]

    gen = torch.Generator().manual_seed(99)
    sampler = trainer.sample_objects(args.samples, gen)
    training = torch.cat(visited)
    uniform = torch.randint(32, (calls, 32), generator=gen)
    chain = env.oracle.initial_solution(calls, seed=7)  # feasible random sequences (the Markov chain)
    mcmc = mcmc_search(env, calls, seed=7)
    rows = [summarise("GFlowNet samples (after training)", sampler, env.oracle(sampler)),
            summarise("GFlowNet training samples", training, env.oracle(training)),
            summarise("random search (uniform)", uniform, env.oracle(uniform)),
            summarise("random search (feasible chain)", chain, env.oracle(chain)),
            summarise(f"MCMC (Metropolis, point mutations, beta={args.beta:g})", mcmc, env.oracle(mcmc))]
    result = {"task": "ehrlich V=32 L=32 c=4 k=4", "oracle": repr(env.oracle.motifs.tolist()),
              "args": vars(args), "machine": machine(), "iterations": trainer.step,
              "train_seconds": trainer.train_seconds, "oracle_calls": calls, "results": rows, "curve": curve}
    path = write_json(args.out, result)
    print()
    print(table(curve[:: max(1, len(curve) // 15)] + curve[-1:],
                ["step", "seconds", "loss", "log_z", "max_f_so_far", "distinct_optimal_found"]))
    print()
    print(table(rows, list(rows[0])))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
