"""Molecules (#19): the fragment environment against random generation and MCMC at equal reward
calls, and the fragment-chain task's exact L1 over training.

    python bench/molecules.py fragments [--budget 20000] [--score qed*sa] [--beta 12] [--seeds 1 2 3]
    python bench/molecules.py chains [--iters 4000]
    python bench/molecules.py tradeoff [--betas 2 4 8 12 16] [--draws 5000 10000 20000 40000]

`fragments`: trees of up to 9 of the 32 library fragments, reward (QED x SA)^beta. Each method
spends `--budget` reward calls (molecules scored): trajectory balance (the graph policy, or an
MLP 2 x 256 with `--policy mlp`; batch 16; its own samples are its reward calls), uniform
rollouts, and 16 Metropolis chains whose steps alternate two proposals, each exact: a fragment
swap (`Fragments.mutate`: one node's fragment for another that takes its joins) and the
back-and-forth (the last fragment removed with the uniform P_B and regrown with the uniform
P_F). Measured over every molecule each method had scored, at each quarter of the budget: the
top-100 mean score (QED x SA), the top-100's Tanimoto diversity (1 - similarity of Morgan
fingerprints), the modes (score >= 0.7, pairwise Tanimoto < 0.7, as in the first GFlowNet
paper), and for the GFlowNet also these on `--samples` samples of the trained sampler (no
further reward calls). The defaults (graph policy, beta 12) were chosen on seed 0 (beta 12, 16
and 24 with the graph policy, 8 to 32 with the MLP); the seeds reported are 1, 2 and 3.

`chains`: fragment chains (11 fragments, length 5: 161,051 chains), QED^16. Trajectory balance
(MLP 2 x 256, batch 64, learned P_B) with the exact L1 every 250 iterations, next to the L1 of
10,000 exact samples of the target itself (the floor a 10k-sample estimate could reach).
`tradeoff`: fragment chains again (QED x SA, `--score`), top-100 score and diversity of N exact
draws of the uniform policy and of the exact target at several betas: where every sampler of a
score-based reward lies on the top-100 score / diversity curve (see bench/README.md).
Writes bench/results/molecules-<task>.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from common import save_result
from gflownets.baselines import make_baseline
from gflownets.chemistry.metrics import molecule_metrics, tanimoto_diversity
from gflownets.envs import FragmentChains
from gflownets.evaluation import StateGraph
from gflownets.evaluation.metrics import distribution_metrics
from gflownets.policies import UniformPolicy
from gflownets.training import RunConfig, Trainer

MODE_SCORE = 0.7


def summarise(env, objects: torch.Tensor, k: int = 100) -> dict[str, float]:
    """Top-k score and Tanimoto diversity, modes and distinct molecules of scored objects."""
    smiles = [s or "" for s in env.smiles(objects)]
    scores = env.scores(objects).cpu().numpy()
    metrics = molecule_metrics(smiles, scores, k=k, threshold=MODE_SCORE)
    return {"molecules": len(set(smiles)), f"top{k}_score": metrics[f"top{k}_reward"],
            f"top{k}_diversity": metrics[f"top{k}_diversity"], "modes": metrics["modes"],
            "max_score": float(scores.max())}


def fragments(args: argparse.Namespace) -> dict:
    """Per seed and method: the measures of everything scored so far at each quarter of the budget."""
    env_args = {"score": args.score, "beta": args.beta}
    marks = [args.budget * q // 4 for q in (1, 2, 3, 4)]
    rows = []
    for seed in args.seeds:
        config = RunConfig(env="fragments", env_args=env_args, iters=10 ** 9, batch_size=16, hidden=256,
                           policy=args.policy, eval_every=0, exact=False, seed=seed, threads=1,
                           compile=False)  # eager, as the published curves (their clock has no compile)
        for method in args.methods:
            started, visited, curve = time.perf_counter(), [], []
            if method == "gfn":
                trainer = Trainer(config, progress=False)
                env = trainer.env
            else:
                env = config.build_env()
                options = {"n_chains": 16, "k": 1, "proposal": "mixed"} if method == "mcmc" else {}
                sampler = make_baseline(method, env, **options)
                generator = torch.Generator().manual_seed(seed)
            while env.reward_calls < args.budget:
                if method == "gfn":
                    trainer.train_step()
                    trainer.step += 1
                    visited.append(trainer.last_batch.terminal_states)
                else:
                    visited.append(sampler.step(generator))
                if env.reward_calls >= marks[len(curve)]:
                    seconds = time.perf_counter() - started  # (the measures below are not timed)
                    curve.append({"reward_calls": env.reward_calls, "seconds": seconds,
                                  **summarise(env, torch.cat(visited))})
                    started = time.perf_counter() - seconds
            row = {"seed": seed, "method": method, **curve[-1], "curve": curve}
            if method == "mcmc":
                row["acceptance"] = sampler.acceptance
            print({k: v for k, v in row.items() if k != "curve"}, flush=True)
            rows.append(row)
            if method == "gfn":
                samples = trainer.sample_objects(args.samples, torch.Generator().manual_seed(seed + 1))
                row = {"seed": seed, "method": "gfn: samples after training", "samples": args.samples,
                       **summarise(env, samples)}
                print(row, flush=True)
                rows.append(row)
    return {"task": f"fragments, ({args.score})^{args.beta:g}", "rows": rows}


def chains(args: argparse.Namespace) -> dict:
    config = RunConfig(env="fragment-chains", env_args={"score": "qed", "beta": 16.0}, iters=args.iters,
                       batch_size=64, hidden=256, eval_every=250, seed=args.seed, threads=1)
    trainer = Trainer(config, progress=False)
    graph = trainer.graph if trainer.graph is not None else StateGraph(trainer.env)
    # the floor: L1 of 10,000 exact draws from the target itself (mean of 5 draws)
    generator = torch.Generator().manual_seed(args.seed)
    floors = []
    for _ in range(5):
        draws = torch.multinomial(graph.target.float(), 10_000, replacement=True, generator=generator)
        empirical = torch.bincount(draws, minlength=len(graph.target)).double() / 10_000
        floors.append(distribution_metrics(empirical, graph.target)["l1"])
    started = time.perf_counter()
    curve = []
    while trainer.step < args.iters:
        trainer.train_step()
        trainer.step += 1
        if trainer.step % 250 == 0 or trainer.step == args.iters:
            learned = graph.terminal_distribution(trainer.eval_policy)
            exact = trainer.env.exact_metrics(graph, learned)
            point = {"iteration": trainer.step, "seconds": time.perf_counter() - started,
                     "l1": distribution_metrics(learned, graph.target)["l1"], "l1_molecules": exact["l1_molecules"],
                     "expected_score": exact["expected_score"], "expected_score_target": exact["expected_score_target"]}
            print(point, flush=True)
            curve.append(point)
    return {"task": "fragment chains, 11 fragments, length 5, QED^16", "chains": len(graph.target),
            "molecules": trainer.env.exact_metrics(graph, graph.target)["n_molecules"],
            "l1_floor_10k_samples": float(np.mean(floors)), "curve": curve}


def tradeoff(args: argparse.Namespace) -> dict:
    """Why a sampler of R = score^beta, even an exact one, cannot beat random generation on both
    top-100 score and top-100 diversity at equal reward calls: on fragment chains (every chain
    enumerated, so the samplers are exact), N draws of the uniform policy ("random") and of the
    exact target at several betas, top-100 distinct molecules of each, 3 seeds."""
    env = FragmentChains(score=args.score, beta=1.0)
    graph = StateGraph(env)
    chains = graph.terminal_states
    molecules = env.chain_molecules[env.chain_index(chains)].numpy()
    scores = env.scores(chains, None).numpy()
    smiles = env.table.smiles
    uniform = graph.terminal_distribution(UniformPolicy(env))
    log_scores = torch.from_numpy(np.log(np.maximum(scores, 1e-300)))
    samplers = {"random": uniform}
    for beta in args.betas:
        weights = (beta * log_scores - (beta * log_scores).max()).exp()
        samplers[f"target beta {beta:g}"] = weights / weights.sum()
    rows = []
    for name, probs in samplers.items():
        for n in args.draws:
            points = []
            for seed in (1, 2, 3):
                draws = torch.multinomial(probs.float(), n, replacement=True,
                                          generator=torch.Generator().manual_seed(seed)).numpy()
                ids, first = np.unique(molecules[draws], return_index=True)
                distinct_scores = scores[draws[first]]
                best = np.argsort(-distinct_scores, kind="stable")[:100]
                points.append((float(distinct_scores[best].mean()), tanimoto_diversity([smiles[i] for i in ids[best]])))
            score, diversity = np.mean(points, axis=0)
            rows.append({"sampler": name, "draws": n, "top100_score": float(score), "top100_diversity": float(diversity)})
            print(rows[-1], flush=True)
    return {"task": f"fragment chains, {args.score}: top-100 of N exact draws", "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["fragments", "chains", "tradeoff"])
    parser.add_argument("--budget", type=int, default=20_000)
    parser.add_argument("--score", default="qed*sa")
    parser.add_argument("--beta", type=float, default=12.0)
    parser.add_argument("--methods", nargs="+", default=["gfn", "random", "mcmc"])
    parser.add_argument("--samples", type=int, default=10_000, help="fragments: samples of the trained GFlowNet")
    parser.add_argument("--policy", default="graph", choices=["graph", "mlp"], help="fragments: the GFlowNet's policy")
    parser.add_argument("--iters", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0, help="chains: the seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                        help="fragments: the seeds reported (beta was chosen on seed 0)")
    parser.add_argument("--betas", type=float, nargs="+", default=[2, 4, 8, 12, 16],
                        help="tradeoff: the exact targets' betas")
    parser.add_argument("--draws", type=int, nargs="+", default=[5000, 10000, 20000, 40000],
                        help="tradeoff: draws per sampler")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = {"fragments": fragments, "chains": chains, "tradeoff": tradeoff}[args.task](args)
    save_result(result, args, f"molecules-{args.task}.json")


if __name__ == "__main__":
    main()
