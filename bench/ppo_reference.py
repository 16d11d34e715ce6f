"""Our batched PPO against the reference implementation, sb3-contrib's MaskablePPO through the
gymnasium wrapper (`gflownets.baselines.gym`), on the same task with the same settings.

    python bench/ppo_reference.py [--height 8] [--timesteps 60000] [--seeds 0 1 2]

2-D hypergrid (R0 0.1), MLP 2 x 64 for both, clip 0.2, entropy bonus 0.01, gamma 1, GAE lambda
0.95, Adam 3e-4, 4 epochs; MaskablePPO with its documented driver (`learn`, 512 steps per
rollout, minibatches of 64 steps), ours with 64 trajectories per rollout and minibatches of 64
steps; one thread each. Ours runs until it has spent as many reward calls (finished episodes)
as MaskablePPO did. Reported: the exact expected reward of each final policy over the
enumerated grid (the maximum is the corners' reward), reward calls and wall seconds. Writes
bench/results/ppo-reference.json.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from common import RESULTS, machine
from gflownets.baselines import PPOSampler
from gflownets.baselines.gym import gym_env, stable_baselines_policy
from gflownets.envs import Hypergrid
from gflownets.evaluation import StateGraph


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=8)
    parser.add_argument("--timesteps", type=int, default=60_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.logger import Logger

    torch.set_num_threads(1)
    env = Hypergrid(ndim=2, height=args.height)
    graph = StateGraph(env)
    rewards = graph.log_rewards.exp()
    rows = []
    for seed in args.seeds:
        wrapped = gym_env(env)
        started = time.perf_counter()
        model = MaskablePPO("MlpPolicy", wrapped, n_steps=512, batch_size=64, n_epochs=4, ent_coef=0.01, gamma=1.0,
                            gae_lambda=0.95, learning_rate=3e-4, seed=seed, policy_kwargs={"net_arch": [64, 64]})
        model.set_logger(Logger(folder=None, output_formats=[]))  # SB3's default writes a /tmp/SB3-* folder
        model.learn(total_timesteps=args.timesteps)
        reference_seconds = time.perf_counter() - started
        reference = float(graph.terminal_distribution(stable_baselines_policy(model, env)) @ rewards)
        ours = PPOSampler(env, hidden=64, seed=seed)
        generator = torch.Generator().manual_seed(seed)
        started = time.perf_counter()
        while ours.reward_calls < wrapped.reward_calls:
            ours.step(generator)
        seconds = time.perf_counter() - started
        row = {"seed": seed, "reward_calls_sb3": wrapped.reward_calls, "reward_calls_ours": ours.reward_calls,
               "expected_reward_sb3": reference, "expected_reward_ours": float(ours.learned_distribution(graph) @ rewards),
               "seconds_sb3": reference_seconds, "seconds_ours": seconds}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| seed | reward calls (sb3 / ours) | expected reward sb3 | ours | seconds sb3 | ours | speed-up |\n"
          "| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['seed']} | {r['reward_calls_sb3']} / {r['reward_calls_ours']} | {r['expected_reward_sb3']:.3f} | "
              f"{r['expected_reward_ours']:.3f} | {r['seconds_sb3']:.1f} | {r['seconds_ours']:.1f} | "
              f"{r['seconds_sb3'] / r['seconds_ours']:.1f}x |")
    print(f"maximum reward: {float(rewards.max()):.3f}; uniform policy: "
          f"{float(graph.terminal_distribution(PPOSampler(env, hidden=64).policy) @ rewards):.3f} (untrained)")
    (RESULTS / "ppo-reference.json").write_text(json.dumps({"args": vars(args), "machine": machine(), "rows": rows},
                                                           indent=2) + "\n")


if __name__ == "__main__":
    main()
