"""Bit sequences (n=120, k=8, |M|=60; Malkin et al. 2022, section 5.3) with trajectory balance:
modes found over training (a mode is found when a training sample lies within Hamming distance
30 of it), then the Spearman correlation between log p(x) (importance sampling, K backward
trajectories) and log R(x) on a held-out test set of 1000 sequences (modes with 1..n random
bits flipped), and sample metrics of the final sampler.

    PYTHONPATH=src python bench/bitseq_tb.py --seconds 1080                      # reported (beta 3)
    PYTHONPATH=src python bench/bitseq_tb.py --seconds 840 --beta 120 --out bitseq_tb_beta120.json
    PYTHONPATH=src python bench/bitseq_tb.py --seconds 1260 --beta 120 --out bitseq_tb_beta120_long.json
    PYTHONPATH=src python bench/bitseq_tb.py --iters 50000 --seconds 1e9   # the paper's budget
"""

from __future__ import annotations

import argparse
import time

import torch

from common import machine, table, train_with_budget, write_json
from gflownets.envs import BitSeq
from gflownets.evaluation import log_prob_reward_correlation
from gflownets.training import RunConfig, Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=1200, help="training time budget")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-logz", type=float, default=0.5, help="log Z starts at 0, far below log Z* ~ 82")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--exploration", type=float, default=0.0)
    parser.add_argument("--beta", type=float, default=3.0)
    parser.add_argument("--prepend", action="store_true", help="prepend/append actions (default: append-only)")
    parser.add_argument("--every", type=int, default=250, help="curve point every N iterations")
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10, help="backward trajectories per test sequence")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="bitseq_tb.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    env = BitSeq(length=120, token_bits=8, num_modes=60, beta=args.beta, prepend=args.prepend)
    config = RunConfig(objective="tb", batch_size=args.batch_size, lr=args.lr, lr_logz=args.lr_logz, hidden=args.hidden, layers=2,
                       exploration=args.exploration, seed=args.seed, threads=args.threads, eval_every=0,
                       backward_policy="learned" if args.prepend else "uniform")
    trainer = Trainer(config, env=env, progress=False)
    curve = train_with_budget(trainer, args.iters, args.seconds, args.every)

    started = time.perf_counter()
    gen = torch.Generator().manual_seed(12345)
    test = env.test_set(args.test_size, seed=2024)
    correlation = log_prob_reward_correlation(env, trainer.eval_policy, test, args.k, gen)
    objects = trainer.sample_objects(args.samples, gen)
    samples = env.sample_metrics(objects, env.log_reward(objects))
    samples["mean_reward"] = float(env.log_reward(objects).exp().mean())
    eval_seconds = time.perf_counter() - started

    result = {
        "task": "bitseq n=120 k=8 |M|=60 beta=%g %s" % (args.beta, "prepend/append" if args.prepend else "append-only"),
        "args": vars(args), "machine": machine(),
        "iterations": trainer.step, "train_seconds": trainer.train_seconds,
        "trajectories": trainer.step * args.batch_size,
        "modes_found": trainer.modes.n_found, "n_modes": trainer.modes.n_modes,
        "spearman_logp_logr": correlation["spearman"], "pearson_logp_logr": correlation["pearson"],
        "test_size": args.test_size, "k_backward": args.k,
        "final_samples": samples, "eval_seconds": eval_seconds, "curve": curve,
    }
    path = write_json(args.out, result)
    print()
    print(table(curve[:: max(1, len(curve) // 20)] + curve[-1:], ["step", "seconds", "modes_found", "loss", "log_z"]))
    print()
    print(table([{"iterations": trainer.step, "seconds": trainer.train_seconds,
                  "modes found": f"{trainer.modes.n_found}/{trainer.modes.n_modes}",
                  "spearman": correlation["spearman"], "top100 reward": samples["top100_reward"],
                  "top100 diversity": samples["top100_diversity"]}],
                ["iterations", "seconds", "modes found", "spearman", "top100 reward", "top100 diversity"]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
