"""`gflownets estimate` and evaluation/estimators.py: at the exact solution every log Z bound is
log Z with zero variance; at a perturbed policy ELBO < log Z < EUBO strictly, the IW-ELBO rises
with K, and each confidence interval covers the exact value as often as it claims."""

import json
import math

import pytest
import torch

from gflownets.cli import main
from gflownets.envs.hypergrid import Hypergrid
from gflownets.envs.sets import Sets
from gflownets.errors import ConfigError
from gflownets.evaluation.estimators import (elbo, entropy, estimate_all, event_mask, eubo_log_weights, exact_elbo,
                                             exact_entropy, exact_eubo, forward_log_weights, iw_elbo, log_prob_ci,
                                             sample_target, wilson_ci)
from gflownets.evaluation.exact import StateGraph, optimal_tabular_policy
from gflownets.evaluation.likelihood import backward_log_weights

#: repetitions of each coverage check, and the least fraction of 95% intervals that must cover
#: the exact value (deterministic seeds; the binomial sd at 95% is 1.5% over 200 repetitions)
REPS, COVERAGE = 200, 0.90


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def make(env_name):
    env = (Hypergrid(Hypergrid.Config(ndim=2, height=4)) if env_name == "hypergrid"
           else Sets(Sets.Config(n_items=4, set_size=2)))
    graph = StateGraph(env)
    return env, graph


def perturbed(graph, scale=1.0, seed=1):
    """The exact solution with noise on every forward and backward logit: a sampler whose
    bounds are strict and whose log-weights vary."""
    policy = optimal_tabular_policy(graph)
    g = gen(seed)
    with torch.no_grad():
        for table in (policy.forward_table, policy.backward_table):
            table.add_(scale * torch.randn(table.shape, generator=g, dtype=table.dtype))
    return policy


def covered(estimates, exact):
    return sum(e.ci_low - 1e-9 <= exact <= e.ci_high + 1e-9 for e in estimates) / len(estimates)


@pytest.fixture(scope="module", params=["hypergrid", "sets"])
def setting(request):
    env, graph = make(request.param)
    return env, graph, optimal_tabular_policy(graph), perturbed(graph)


def test_at_the_optimum_every_bound_is_log_z_with_zero_variance(setting):
    env, graph, optimum, _ = setting
    log_z = float(graph.log_z)
    assert exact_elbo(graph, optimum) == pytest.approx(log_z, abs=1e-9)
    assert exact_eubo(graph, optimum) == pytest.approx(log_z, abs=1e-9)
    target_entropy = float(-(graph.target * graph.target.log()).sum())
    assert exact_entropy(graph, optimum) == pytest.approx(target_entropy, abs=1e-9)
    result = estimate_all(env, optimum, n=400, k=8, n_trajectories=3, generator=gen(), graph=graph,
                          learned_log_z=float(optimum.log_z.detach()), objects=graph.terminal_states)
    est = result["estimates"]
    assert result["log_z_true"] == pytest.approx(log_z)
    for name in ("log_z_learned", "elbo", "iw_elbo", "eubo"):
        assert est[name]["estimate"] == pytest.approx(log_z, abs=1e-9), name
    for name in ("elbo", "iw_elbo", "eubo"):
        assert est[name]["ci_high"] - est[name]["ci_low"] < 1e-9, name
    for row in est["log_prob"]:  # P_B is the posterior: every importance weight is p(x)
        assert row["estimate"] == pytest.approx(row["exact"], abs=1e-9)
        assert row["ci_high"] - row["ci_low"] < 1e-9


def test_perturbed_policy_bounds_are_strict_and_iw_elbo_rises_with_k(setting):
    env, graph, _, policy = setting
    log_z = float(graph.log_z)
    lower, upper = exact_elbo(graph, policy), exact_eubo(graph, policy)
    assert lower < log_z - 1e-3 and upper > log_z + 1e-3
    log_w, _ = forward_log_weights(env, policy, 20_000, gen())
    assert iw_elbo(log_w, 1).estimate == pytest.approx(elbo(log_w).estimate)
    values = [iw_elbo(log_w, k).estimate for k in (1, 4, 16, 64)]
    assert values == sorted(values) and values[-1] - values[0] > 1e-2
    assert values[-1] < log_z + 0.05  # a lower bound in expectation, and close to log Z at k = 64
    assert lower < values[0] + 0.05
    eubo = elbo(eubo_log_weights(env, policy, sample_target(graph, 20_000, gen(1)), gen(2)))
    assert eubo.estimate > log_z and eubo.ci_low <= upper <= eubo.ci_high


@pytest.mark.parametrize("env_name", ["hypergrid", "sets"])
def test_confidence_intervals_cover_the_exact_values(env_name):
    """200 repetitions of n = 100 each, drawn in one batch and split; >= 90% of the 95% intervals
    of the ELBO, the EUBO, a marginal and (at the optimum, where log p(x) is exact) the entropy
    cover the exact value."""
    env, graph = make(env_name)
    policy, optimum, n = perturbed(graph), optimal_tabular_policy(graph), 100
    log_w, objects = forward_log_weights(env, policy, REPS * n, gen(3))
    assert covered([elbo(w) for w in log_w.view(REPS, n)], exact_elbo(graph, policy)) >= COVERAGE
    back = eubo_log_weights(env, policy, sample_target(graph, REPS * n, gen(4)), gen(5))
    assert covered([elbo(w) for w in back.view(REPS, n)], exact_eubo(graph, policy)) >= COVERAGE

    event = "x0=3" if env_name == "hypergrid" else "*=1"
    hits = event_mask(env, objects, event).view(REPS, n).sum(dim=1).tolist()
    learned = graph.terminal_distribution(policy)
    exact = float(learned[event_mask(env, graph.terminal_states, event)].sum())
    assert 0.05 < exact < 0.95
    assert covered([wilson_ci(h, n) for h in hits], exact) >= COVERAGE

    _, samples = forward_log_weights(env, optimum, REPS * n, gen(6))
    estimates = [entropy(env, optimum, x, 1, gen(7)) for x in samples.view(REPS, n, *env.state_shape)]
    assert covered(estimates, exact_entropy(graph, optimum)) >= COVERAGE


def test_log_prob_and_entropy_of_an_imperfect_sampler_approach_the_exact_values(setting):
    env, graph, _, policy = setting
    exact_log_p = graph.terminal_distribution(policy).log()
    log_p, half = log_prob_ci(backward_log_weights(env, policy, graph.terminal_states, 2000, gen()))
    assert torch.allclose(log_p, exact_log_p, atol=0.15)  # heavy-tailed weights at this noise
    inside = ((log_p - half - 1e-9 <= exact_log_p) & (exact_log_p <= log_p + half + 1e-9)).double().mean()
    assert inside >= 0.8  # log mean exp is biased low by O(1/K): coverage somewhat under nominal
    _, samples = forward_log_weights(env, policy, 4000, gen(1))
    result = entropy(env, policy, samples, 100, gen(2))
    assert abs(result.estimate - exact_entropy(graph, policy)) < 0.1


def test_without_a_state_graph_the_eubo_uses_the_given_objects_or_is_left_out():
    env, graph = make("sets")
    policy = perturbed(graph)
    objects = sample_target(graph, 3000, gen())
    result = estimate_all(env, policy, n=1000, k=10, generator=gen(1), objects=objects, events=("item0=0",))
    est = result["estimates"]
    assert result["log_z_true"] is None and "log_z_learned" not in est
    assert est["elbo"]["exact"] is None and est["entropy"]["exact"] is None
    assert est["eubo"]["ci_low"] <= exact_eubo(graph, policy) <= est["eubo"]["ci_high"]
    assert len(est["log_prob"]) == 3000 and est["log_prob"][0]["exact"] is None
    assert 0 <= est["marginal[item0=0]"]["estimate"] <= 1 and est["marginal[item0=0]"]["exact"] is None
    result = estimate_all(env, policy, n=100, k=10, generator=gen(1))
    assert "eubo" not in result["estimates"] and any("eubo" in note for note in result["notes"])
    for bad in ("item9=1", "item0", "item0=a"):
        with pytest.raises(ConfigError):
            estimate_all(env, policy, n=100, events=(bad,))


def test_the_estimate_command_on_a_trained_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "hypergrid", "--ndim", "2", "--height", "4", "--iters", "50", "--quiet",
                 "--out", str(run)]) == 0
    objects = tmp_path / "objects.csv"
    objects.write_text("x0,x1\n3,3\n0,1\n")
    capsys.readouterr()
    out = tmp_path / "estimates.json"
    assert main(["estimate", str(run), "-n", "500", "--k", "5", "--objects", str(objects), "--event", "x0=3",
                 "--event", "*=0", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    est = printed["estimates"]
    assert {"log_z_learned", "elbo", "iw_elbo", "eubo", "entropy", "marginal[x0=3]", "marginal[*=0]",
            "log_prob"} <= set(est)
    for name in ("elbo", "iw_elbo", "eubo", "entropy", "marginal[x0=3]"):
        entry = est[name]
        assert entry["ci_low"] <= entry["estimate"] <= entry["ci_high"], name
        assert set(entry) >= {"estimate", "ci_low", "ci_high", "exact", "samples"}
    assert est["elbo"]["exact"] <= printed["log_z_true"] <= est["eubo"]["exact"]
    assert [row["object"] for row in est["log_prob"]] == [[3, 3], [0, 1]]
    assert all(math.isfinite(row["exact"]) for row in est["log_prob"])
    assert main(["estimate", str(run), "-n", "50", "--event", "y=1"]) == 1
    assert "--event 'y=1'" in capsys.readouterr().err
