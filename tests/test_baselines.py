"""Baselines: random rollouts sample exactly the uniform policy's terminal distribution; MCMC
chains (point mutations, and the generic back-and-forth proposal) converge to the exact target;
reward calls are counted."""

import pytest
import torch
from scipy.stats import chisquare

from gflownets.baselines import (BASELINES, MetropolisSampler, PPOSampler, RandomSampler, SoftQSampler, has_mutation,
                                 make_baseline)
from gflownets.baselines.ppo import gae
from gflownets.envs import Bits, Hypergrid, Sequence, Sets
from gflownets.errors import ConfigError
from gflownets.evaluation import StateGraph
from gflownets.evaluation.metrics import distribution_metrics
from gflownets.policies import UniformPolicy


def test_random_sampler_draws_the_uniform_policys_distribution():
    env = Sets(n_items=5, set_size=2)
    graph = StateGraph(env)
    sampler = RandomSampler(env, batch_size=500)
    generator = torch.Generator().manual_seed(0)
    visited = torch.cat([sampler.step(generator) for _ in range(40)])
    assert sampler.reward_calls == 20_000
    expected = graph.terminal_distribution(UniformPolicy(env)) * len(visited)
    observed = graph.empirical_distribution(visited) * len(visited)
    assert chisquare(observed.numpy(), expected.numpy()).pvalue > 1e-3


@pytest.mark.parametrize("env,proposal,k", [
    (Hypergrid(ndim=2, height=5), "mutate", 1),
    (Bits(dim=4, coupling=0.6, field=0.3), "back-and-forth", 2),
    (Sets(n_items=6, set_size=3, beta=3.0), "back-and-forth", 1),
])
def test_mcmc_converges_to_the_exact_target(env, proposal, k):
    graph = StateGraph(env)
    sampler = MetropolisSampler(env, n_chains=256, proposal=proposal, k=k)
    generator = torch.Generator().manual_seed(1)
    for _ in range(100):  # burn-in
        sampler.step(generator)
    visited = torch.cat([sampler.step(generator) for _ in range(200)])
    l1 = distribution_metrics(graph.empirical_distribution(visited), graph.target)["l1"]
    assert l1 < 0.06, l1
    assert 0.05 < sampler.acceptance < 1.0
    assert sampler.reward_calls <= 256 * 301


def test_mcmc_proposal_choice_and_errors():
    assert has_mutation(Hypergrid()) and not has_mutation(Sets())
    assert MetropolisSampler(Hypergrid()).proposal == "mutate"
    assert MetropolisSampler(Sets()).proposal == "back-and-forth"
    with pytest.raises(ConfigError, match="no mutation"):
        MetropolisSampler(Sets(), proposal="mutate")
    with pytest.raises(ConfigError, match="proposal"):
        MetropolisSampler(Sets(), proposal="gibbs")


def test_compare_runs_every_method_at_equal_reward_calls():
    from gflownets.comparison import compare, methods
    from gflownets.training import RunConfig

    config = RunConfig(env="hypergrid", env_args={"ndim": 2, "height": 5}, iters=10_000, batch_size=16, hidden=32,
                       eval_every=0, seed=0)
    assert set(methods()) == {"gfn", "mcmc", "random", "ppo", "soft-q", "mcts"}
    final: dict = {}
    points = compare(config, list(methods()), budget=3200, every=1600, top_k=10, final=final)
    by_method = {m: [p for p in points if p["method"] == m] for m in methods()}
    for method, rows in by_method.items():
        assert [p["reward_calls"] >= c for p, c in zip(rows, (1600, 3200))] == [True, True], method
        assert rows[-1]["reward_calls"] < 3200 + 64 and 0 < rows[-1]["l1_visited"] <= 2
        assert 1 <= rows[-1]["modes_found"] <= rows[-1]["n_modes"] == 4
        assert 0 < rows[-1]["top10_reward"] <= 2.6 and rows[-1]["top10_diversity"] > 0
        learns = method in ("gfn", "ppo", "soft-q", "mcts")
        assert ("l1_learned" in rows[-1]) == learns, method
        assert (final[method]["learned"] is not None) == learns
        assert float(final[method]["visited"].sum()) == pytest.approx(1.0)
    # the k best distinct objects: once all four modes (on side 5, the corners, R = 0.6) are found,
    # the top 4 are they
    four = compare(config, ["mcmc"], budget=1600, every=1600, top_k=4)[-1]
    assert four["modes_found"] == 4 and four["top4_reward"] == pytest.approx(0.6)
    assert compare(config, ["mcmc"], budget=1600, every=1600, top_k=5)[-1]["top5_reward"] < 0.6
    with pytest.raises(ConfigError, match="unknown method"):
        compare(config, ["sac"], budget=10, every=10)


def test_compare_command(tmp_path, capsys):
    import json

    from cli_helpers import one_error_line, run_cli

    out = tmp_path / "cmp"
    assert run_cli("compare", "sets", "--set", "n_items=5", "--set", "set-size=2", "--budget", 800, "--every", 400,
                   "--hidden", 16, "--out", out) == 0
    table = capsys.readouterr().out
    assert table.startswith("| method |") and "| mcmc |" in table and "maximum-entropy RL" in table
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["l1_trajectory_level_optimum"] == pytest.approx(0.0, abs=1e-12)  # sets: k! paths each
    points = saved["points"]
    assert {p["method"] for p in points} == {"gfn", "mcmc", "random"}
    assert (out / "comparison.csv").read_text().splitlines()[0] == ("method,reward_calls,l1_visited,l1_learned,"
                                                                    "modes_found,n_modes,top100_reward,"
                                                                    "top100_diversity,seconds")
    for plot in ("l1", "modes", "top_k", "distributions"):
        assert (out / "plots" / f"{plot}.png").stat().st_size > 0, plot
    assert "KEY=VALUE" in one_error_line(capsys, "compare", "sets", "--set", "n_items", "--out", out)
    assert "unknown method" in one_error_line(capsys, "compare", "sets", "--methods", "gfn,sac", "--out", out)
    assert "unknown sets option" in one_error_line(capsys, "compare", "sets", "--set", "size=3", "--out", out)


def test_trajectory_level_sampling_over_counts_objects_with_many_paths():
    """Path counts by DP against closed forms, and the maximum-entropy-RL optimum (trajectories in
    proportion to R) against the target: equal where every object has as many paths (sets of a
    fixed size: k! each), far apart on the grid (a cell (i, j) has C(i + j, i) paths)."""
    import math

    grid = StateGraph(Hypergrid(ndim=2, height=5))
    cells = grid.terminal_states.tolist()
    assert grid.path_counts().tolist() == [math.comb(i + j, i) for i, j in cells]
    tv = distribution_metrics(grid.trajectory_level_distribution(), grid.target)["tv"]
    assert tv > 0.3
    sets = StateGraph(Sets(n_items=6, set_size=3))
    assert (sets.path_counts() == 6).all()
    assert torch.allclose(sets.trajectory_level_distribution(), sets.target)


def test_variable_size_sets_separate_trajectory_level_sampling_from_the_target():
    """Seed 003's example: with sets of 1 to 3 items, a set of s items has s! construction orders,
    so sampling trajectories in proportion to R favours large sets 6 : 2 : 1; the GFlowNet's
    target does not, and trajectory balance reaches it."""
    from gflownets.training import RunConfig, Trainer

    env = Sets(n_items=5, set_size=3, min_size=1)
    graph = StateGraph(env)
    sizes = graph.terminal_states.sum(dim=1)
    assert torch.equal(graph.path_counts(), torch.tensor([1.0, 2.0, 6.0], dtype=torch.float64)[sizes - 1])
    biased = graph.trajectory_level_distribution()
    mass = lambda p: [float(p[sizes == s].sum()) for s in (1, 2, 3)]  # noqa: E731
    assert mass(biased)[0] < mass(graph.target)[0] / 3 and mass(biased)[2] > mass(graph.target)[2]
    assert distribution_metrics(biased, graph.target)["tv"] > 0.1
    rows = env.objects_to_rows(graph.terminal_states)
    assert torch.equal(env.objects_from_rows(rows), graph.terminal_states)  # -1 padding round trip
    summary = Trainer(RunConfig(env="sets", env_args={"n_items": 5, "set_size": 3, "min_size": 1}, iters=1500,
                                batch_size=32, hidden=64, eval_every=0, seed=0), progress=False).run()
    assert summary["l1"] < 0.1, summary["l1"]


def test_gae_matches_the_returns_of_a_terminal_reward():
    """With lambda = 1 and gamma = 1 the advantage is R - V(s_t) at every step; with lambda = 0
    it is the one-step TD error; padded steps get 0."""
    values = torch.tensor([[0.5, 1.0, 2.0, 9.0], [0.25, 3.0, 9.0, 9.0]])
    valid = torch.tensor([[True, True, True, False], [True, True, False, False]])
    rewards = torch.tensor([[0.0, 0.0, 4.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    full = gae(rewards, values, valid, lam=1.0)
    assert torch.allclose(full, torch.tensor([[3.5, 3.0, 2.0, 0.0], [0.75, -2.0, 0.0, 0.0]]))
    td = gae(rewards, values, valid, lam=0.0)
    assert torch.allclose(td, torch.tensor([[0.5, 1.0, 2.0, 0.0], [2.75, -2.0, 0.0, 0.0]]))


def test_ppo_raises_the_mean_reward():
    """Measured exactly: the expected reward of PPO's policy over the enumerated grid, before and
    after 50 updates (3200 reward calls), and its collapse onto few objects."""
    env = Hypergrid(ndim=2, height=6)
    graph = StateGraph(env)
    rewards = graph.log_rewards.exp()
    ppo = PPOSampler(env, hidden=64)
    before = ppo.learned_distribution(graph)
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        ppo.step(generator)
    after = ppo.learned_distribution(graph)
    assert ppo.reward_calls == 50 * 64 and ppo.updates == 50
    assert float(after @ rewards) > float(before @ rewards) + 0.1
    assert float(after.max()) > 0.5 > float(before.max())  # reward maximisation concentrates the sampler


def test_soft_q_learning_reaches_the_trajectory_level_optimum():
    """On a tree (append-only sequences: one path per object) the maximum-entropy optimum is the
    GFlowNet's target; on the grid (C(i + j, i) paths to cell (i, j)) it is the trajectory-level
    distribution, which soft Q-learning reaches while staying as far from the target."""
    generator = torch.Generator().manual_seed(0)
    tree = Sequence(alphabet="ABC", max_length=3, min_length=1)
    graph = StateGraph(tree)
    assert (graph.path_counts() == 1).all()
    soft_q = SoftQSampler(tree, hidden=64)
    for _ in range(400):
        soft_q.step(generator)
    assert distribution_metrics(soft_q.learned_distribution(graph), graph.target)["l1"] < 0.01
    grid = Hypergrid(ndim=2, height=4)
    graph = StateGraph(grid)
    trajectory_level = graph.trajectory_level_distribution()
    soft_q = SoftQSampler(grid, hidden=64)
    for _ in range(400):
        soft_q.step(generator)
    learned = soft_q.learned_distribution(graph)
    assert soft_q.reward_calls == 400 * 16
    assert distribution_metrics(learned, trajectory_level)["l1"] < 0.02
    assert distribution_metrics(learned, graph.target)["l1"] > 0.9


def test_rl_baselines_refuse_bad_settings_and_are_registered():
    assert {"random", "mcmc", "ppo", "soft-q", "mcts"} <= set(BASELINES)
    assert isinstance(make_baseline("ppo", Hypergrid(), hidden=8), PPOSampler)
    for bad in ({"clip": 1.5}, {"rollout": 0}, {"reward": "max"}, {"lam": 2.0}):
        with pytest.raises(ConfigError, match="ppo"):
            PPOSampler(Hypergrid(), **bad)
    for bad in ({"alpha": 0.0}, {"epsilon": 1.5}, {"capacity": 0}):
        with pytest.raises(ConfigError, match="soft-q"):
            SoftQSampler(Hypergrid(), **bad)
    with pytest.raises(ConfigError, match="unknown baseline"):
        make_baseline("sac", Hypergrid())


def test_batched_ppo_learns_as_fast_as_maskable_ppo_at_equal_reward_calls():
    """The reference implementation, sb3-contrib's MaskablePPO through the gymnasium wrapper, with
    the same network and settings: at the reward calls it spent, our PPO's exact expected reward
    is as high as its (both well above the untrained policy's). `bench/ppo_reference.py` runs the
    longer version and times both."""
    pytest.importorskip("sb3_contrib", reason="sb3-contrib is not installed (make test installs it when it can)")
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.logger import Logger

    from gflownets.baselines.gym import gym_env, stable_baselines_policy

    torch.manual_seed(0)
    env = Hypergrid(ndim=2, height=8)
    graph = StateGraph(env)
    rewards = graph.log_rewards.exp()
    wrapped = gym_env(env)
    with pytest.raises(ValueError, match="forbidden"):
        wrapped.reset()
        wrapped.step(0) and wrapped.step(0) and [wrapped.step(0) for _ in range(8)]
    wrapped.reset()
    model = MaskablePPO("MlpPolicy", wrapped, n_steps=512, batch_size=64, n_epochs=4, ent_coef=0.01, gamma=1.0,
                        seed=0, policy_kwargs={"net_arch": [64, 64]})
    untrained = float(graph.terminal_distribution(stable_baselines_policy(model, env)) @ rewards)
    calls_before = wrapped.reward_calls
    model.set_logger(Logger(folder=None, output_formats=[]))  # SB3's default writes a /tmp/SB3-* folder
    model.learn(total_timesteps=15_000)
    reference = float(graph.terminal_distribution(stable_baselines_policy(model, env)) @ rewards)
    ours = PPOSampler(env, hidden=64)
    generator = torch.Generator().manual_seed(0)
    while ours.reward_calls < wrapped.reward_calls - calls_before:
        ours.step(generator)
    batched = float(ours.learned_distribution(graph) @ rewards)
    assert reference > untrained + 0.3 and batched > untrained + 0.3, (untrained, reference, batched)
    assert batched > reference - 0.2, (reference, batched)


def test_compare_on_an_environment_too_large_to_enumerate(tmp_path, capsys):
    """No exact target: the table keeps the top-k reward and diversity (and modes where the
    environment knows them), and the GFlowNet is charged what the environment scored, its
    mutation chains' candidates included (Ehrlich runs 32 chains by default)."""
    import json

    from cli_helpers import run_cli

    out = tmp_path / "ehrlich"
    assert run_cli("compare", "ehrlich", "--set", "num_states=8", "--set", "dim=16", "--set", "num_motifs=2",
                   "--set", "motif_length=4", "--methods", "gfn,mcmc,random", "--budget", 480, "--every", 240,
                   "--top-k", 10, "--hidden", 16, "--out", out) == 0
    table = capsys.readouterr().out
    assert table.startswith("| method | reward_calls | top10_reward | top10_diversity | seconds |")
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["enumerable"] is False and saved["l1_trajectory_level_optimum"] is None
    gfn = [p for p in saved["points"] if p["method"] == "gfn"]
    assert gfn[0]["reward_calls"] >= 240 and gfn[-1]["reward_calls"] >= 480
    assert all(p["top10_reward"] > 0 and "l1_visited" not in p for p in saved["points"])
    assert (out / "plots" / "top_k.png").exists() and not (out / "plots" / "distributions.png").exists()


def test_environments_count_the_objects_they_score():
    env = Hypergrid(ndim=2, height=4)
    assert env.reward_calls == 0
    env.log_reward(env.initial_states(5))
    sampler = RandomSampler(env, batch_size=7)
    sampler.step(torch.Generator().manual_seed(0))
    assert env.reward_calls == 5 + 7 == 5 + sampler.reward_calls
