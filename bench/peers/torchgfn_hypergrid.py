"""torchgfn 2.4.1 on HyperGrid(ndim, height), trajectory balance, run by the peer venv's python;
the network is ours: one MLP trunk (2 x 256) shared by the P_F and P_B heads.
Prints one JSON line: iterations, seconds, iters_per_s, trajectories_per_s, l1_samples, peak_rss_mb."""

import argparse
import itertools
import json
import time

import numpy as np
import torch
from gfn.estimators import DiscretePolicyEstimator
from gfn.gflownet import TBGFlowNet
from gfn.gym import HyperGrid
from gfn.preprocessors import KHotPreprocessor
from gfn.utils.modules import MLP
from hypergrid_exact import all_states, forward_mask, terminal_distribution
from peak_rss import peak_mb


def target(ndim: int, height: int) -> torch.Tensor:
    """Exact target over all height**ndim states (row-major index), R0=0.1, R1=0.5, R2=2."""
    states = torch.tensor(list(itertools.product(range(height), repeat=ndim)), dtype=torch.float)
    ax = (states / (height - 1) - 0.5).abs()
    reward = 0.1 + 0.5 * ((ax > 0.25) & (ax <= 0.5)).all(-1) + 2.0 * ((ax > 0.3) & (ax < 0.4)).all(-1)
    return reward / reward.sum()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ndim", type=int, default=2)
    parser.add_argument("--height", type=int, default=8)
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-every", type=int, default=0, help="exact L1 every N iterations (not timed)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    env = HyperGrid(ndim=args.ndim, height=args.height,
                    reward_fn_kwargs={"R0": 0.1, "R1": 0.5, "R2": 2.0})
    pre = KHotPreprocessor(height=args.height, ndim=args.ndim)
    # one trunk for P_F and P_B, as ours (torchgfn's `trunk=` argument, its examples' --tied)
    pf_module = MLP(pre.output_dim, env.n_actions, hidden_dim=256, n_hidden_layers=2)
    pb_module = MLP(pre.output_dim, env.n_actions - 1, hidden_dim=256, n_hidden_layers=2, trunk=pf_module.trunk)
    pf = DiscretePolicyEstimator(pf_module, env.n_actions, preprocessor=pre, is_backward=False)
    pb = DiscretePolicyEstimator(pb_module, env.n_actions, preprocessor=pre, is_backward=True)
    gfn = TBGFlowNet(pf=pf, pb=pb, init_logZ=0.0)
    optimizer = torch.optim.Adam(gfn.pf_pb_parameters(), lr=1e-3)
    optimizer.add_param_group({"params": gfn.logz_parameters(), "lr": 0.1})

    grid = torch.as_tensor(all_states(args.ndim, args.height))
    features = torch.nn.functional.one_hot(grid, args.height).float().reshape(len(grid), -1)  # KHot's code
    allowed = torch.as_tensor(forward_mask(grid.numpy(), args.height))
    exact_target = target(args.ndim, args.height).double().numpy()

    def exact_l1() -> float:
        with torch.no_grad():
            logits = pf_module(features).masked_fill(~allowed, -float("inf"))
            probs = torch.softmax(logits.double(), dim=1).numpy()
        return float(np.abs(terminal_distribution(probs, args.ndim, args.height) - exact_target).sum())

    curve = []
    seconds = 0.0
    for iteration in range(1, args.iters + 1):
        start = time.perf_counter()
        trajectories = gfn.sample_trajectories(env, n=args.batch_size, save_logprobs=True)
        loss = gfn.loss(env, trajectories, recalculate_all_logprobs=False)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seconds += time.perf_counter() - start
        if args.eval_every and (iteration % args.eval_every == 0 or iteration == args.iters):
            curve.append({"iteration": iteration, "seconds": seconds, "l1": exact_l1()})

    counts = torch.zeros(args.height ** args.ndim)
    weights = args.height ** torch.arange(args.ndim - 1, -1, -1)
    with torch.no_grad():
        left = args.samples
        while left > 0:
            n = min(10_000, left)
            states = gfn.sample_terminating_states(env, n).tensor.long()
            counts += torch.bincount((states * weights).sum(-1), minlength=counts.numel()).float()
            left -= n
    l1 = (counts / counts.sum() - target(args.ndim, args.height)).abs().sum().item()
    print(json.dumps({"iterations": args.iters, "seconds": seconds, "iters_per_s": args.iters / seconds,
                      "trajectories_per_s": args.batch_size * args.iters / seconds, "l1_samples": l1,
                      "peak_rss_mb": peak_mb(), "curve": curve}))


if __name__ == "__main__":
    main()
