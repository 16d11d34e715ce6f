"""Baselines: random rollouts sample exactly the uniform policy's terminal distribution; MCMC
chains (point mutations, and the generic back-and-forth proposal) converge to the exact target;
reward calls are counted."""

import pytest
import torch
from scipy.stats import chisquare

from gflownets.baselines import MetropolisSampler, RandomSampler, has_mutation
from gflownets.envs import Bits, Hypergrid, Sets
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
    from gflownets.comparison import compare
    from gflownets.training import RunConfig

    config = RunConfig(env="hypergrid", env_args={"ndim": 2, "height": 5}, iters=10_000, batch_size=16, hidden=32,
                       eval_every=0, seed=0)
    points = compare(config, ["gfn", "mcmc", "random"], budget=3200, every=1600)
    by_method = {m: [p for p in points if p["method"] == m] for m in ("gfn", "mcmc", "random")}
    for method, rows in by_method.items():
        assert [p["reward_calls"] >= c for p, c in zip(rows, (1600, 3200))] == [True, True], method
        assert rows[-1]["reward_calls"] < 3200 + 16 and 0 < rows[-1]["l1_visited"] <= 2
        assert 1 <= rows[-1]["modes_found"] <= rows[-1]["n_modes"] == 4
    assert "l1_learned" in by_method["gfn"][-1] and "l1_learned" not in by_method["mcmc"][-1]
    with pytest.raises(ConfigError, match="unknown method"):
        compare(config, ["ppo"], budget=10, every=10)


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
    assert (out / "comparison.csv").read_text().splitlines()[0].startswith("method,reward_calls,l1_visited")
    assert (out / "plots" / "l1.png").stat().st_size > 0 and (out / "plots" / "modes.png").stat().st_size > 0
    assert "KEY=VALUE" in one_error_line(capsys, "compare", "sets", "--set", "n_items", "--out", out)
    assert "unknown method" in one_error_line(capsys, "compare", "sets", "--methods", "gfn,ppo", "--out", out)
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
