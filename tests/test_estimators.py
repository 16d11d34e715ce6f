"""`gflownets estimate` and evaluation/estimators.py: at the exact solution every log Z bound is
log Z with zero variance; at a perturbed policy ELBO < log Z < EUBO strictly, the IW-ELBO rises
with K, and each confidence interval covers the exact value as often as it claims."""

import json
import math

import pytest
import torch

from scipy.stats import binom

from gflownets.cli import main
from gflownets.envs import DAG
from gflownets.envs.hypergrid import Hypergrid
from gflownets.envs.sets import Sets
from gflownets.errors import ConfigError
from gflownets.evaluation.estimators import (elbo, entropy, estimate_all, event_mask, eubo_log_weights, exact_elbo,
                                             exact_entropy, exact_eubo, forward_log_weights, iw_elbo, log_prob_ci,
                                             sample_target, wilson_ci)
from gflownets.evaluation.exact import StateGraph, optimal_tabular_policy
from gflownets.evaluation.likelihood import backward_log_weights

#: repetitions of each coverage check (deterministic seeds) and the level of the one-sided binomial
#: test that the coverage of the 95% intervals is consistent with 95%: a strict >= 95 of 100 would
#: fail about half the time by chance, so the least count is the 1e-3 quantile of Binomial(100, 0.95)
REPS, NOMINAL, ALPHA = 100, 0.95, 1e-3
MIN_COVERED = int(binom.ppf(ALPHA, REPS, NOMINAL))  # 87: P(X <= 86) = 4.6e-4 <= ALPHA < P(X <= 87)
#: an event of each environment with a marginal neither near 0 nor 1 (a DAG's columns are its edges)
EVENTS = {"hypergrid": "x0=3", "sets": "*=1", "dag": "X0->X1=1"}


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def make(env_name):
    env = {"hypergrid": lambda: Hypergrid(Hypergrid.Config(ndim=2, height=4)),
           "sets": lambda: Sets(Sets.Config(n_items=4, set_size=2)),
           "dag": lambda: DAG(nodes=4, samples=100)}[env_name]()  # 543 DAGs
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
    """How many of the intervals hold the exact value."""
    return sum(e.ci_low - 1e-9 <= exact <= e.ci_high + 1e-9 for e in estimates)


@pytest.fixture(scope="module", params=["hypergrid", "sets", "dag"])
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


def coverages(env_name):
    """{estimator: how many of REPS 95% intervals, each from n = 100 samples, hold the exact value}:
    the ELBO and the EUBO of the perturbed policy, the marginal of EVENTS[env_name] under it and
    (at the optimum, where log p(x) is exact from one backward trajectory) the entropy. The REPS
    samples are drawn in one batch from a fixed seed and split."""
    env, graph = make(env_name)
    policy, optimum, n = perturbed(graph), optimal_tabular_policy(graph), 100
    log_w, objects = forward_log_weights(env, policy, REPS * n, gen(3))
    back = eubo_log_weights(env, policy, sample_target(graph, REPS * n, gen(4)), gen(5))
    event = EVENTS[env_name]
    hits = event_mask(env, objects, event).view(REPS, n).sum(dim=1).tolist()
    marginal = float(graph.terminal_distribution(policy)[event_mask(env, graph.terminal_states, event)].sum())
    assert 0.05 < marginal < 0.95
    _, samples = forward_log_weights(env, optimum, REPS * n, gen(6))
    return {"elbo": covered([elbo(w) for w in log_w.view(REPS, n)], exact_elbo(graph, policy)),
            "eubo": covered([elbo(w) for w in back.view(REPS, n)], exact_eubo(graph, policy)),
            "marginal": covered([wilson_ci(h, n) for h in hits], marginal),
            "entropy": covered([entropy(env, optimum, x, 1, gen(7)) for x in samples.view(REPS, n, *env.state_shape)],
                               exact_entropy(graph, optimum))}


@pytest.mark.parametrize("env_name", ["hypergrid", "sets", "dag"])
def test_confidence_intervals_cover_the_exact_values(env_name):
    """The issue's criterion, "within its reported interval in at least 95% of 100 repetitions",
    as a test sound against chance: each estimator's count of the 100 95% intervals that cover
    the exact value is consistent with 95% (one-sided binomial test at level 1e-3: >= 87).
    Measured (deterministic seeds), out of 100:

    ========== ===== ===== ======== =======
    env        elbo  eubo  marginal entropy
    ========== ===== ===== ======== =======
    hypergrid     96    97       95      95
    sets          92    96       94      99
    dag (d=4)     94    92       98      96
    ========== ===== ===== ======== =======

    Over 4000 repetitions (other seeds) every coverage is 94.4% to 95.9% on the grid and the DAG
    (the normal quantile had the DAG's EUBO at 94.2%; hence the Student-t intervals of means), and
    94.3% to 95.3% on sets (measured with the normal quantile)."""
    counts = coverages(env_name)
    assert all(count >= MIN_COVERED for count in counts.values()), counts


def test_log_prob_and_entropy_of_an_imperfect_sampler_approach_the_exact_values(setting):
    env, graph, _, policy = setting
    exact_log_p, objects = graph.terminal_distribution(policy).log(), graph.terminal_states
    if isinstance(env, DAG):  # a DAG with e edges has up to e! orders: heavier tails; and 543 is slow
        few = env.adjacency(objects).sum(dim=(1, 2)) <= 2
        exact_log_p, objects = exact_log_p[few], objects[few]
    log_p, half = log_prob_ci(backward_log_weights(env, policy, objects, 2000, gen()))
    assert torch.allclose(log_p, exact_log_p, atol=0.15)  # heavy-tailed weights at this noise
    inside = ((log_p - half - 1e-9 <= exact_log_p) & (exact_log_p <= log_p + half + 1e-9)).double().mean()
    assert inside >= 0.8  # log mean exp is biased low by O(1/K): coverage somewhat under nominal
    _, samples = forward_log_weights(env, policy, 4000, gen(1))
    result = entropy(env, policy, samples, 100, gen(2))
    assert abs(result.estimate - exact_entropy(graph, policy)) < 0.1


def test_on_dags_an_edge_event_is_the_edge_marginal_and_the_bounds_bracket_log_z():
    """DAG(d = 4): `--event X0->X1=1` (the object columns are the edges "Xi->Xj") estimates the
    learned marginal of that edge; ELBO < log Z < EUBO exactly and in the estimates."""
    env, graph = make("dag")
    policy = perturbed(graph)
    events = ("X0->X1=1", "X2->X3=0", "*=1")
    result = estimate_all(env, policy, n=4000, k=10, n_trajectories=10, generator=gen(8), graph=graph,
                          events=events)
    est, log_z = result["estimates"], result["log_z_true"]
    assert est["elbo"]["exact"] < log_z - 1e-3 and est["eubo"]["exact"] > log_z + 1e-3
    assert est["elbo"]["ci_high"] < log_z < est["eubo"]["ci_low"]
    assert est["elbo"]["estimate"] < est["iw_elbo"]["estimate"] < log_z + 0.05
    adjacency, learned = env.adjacency(graph.terminal_states), graph.terminal_distribution(policy)
    for event, has in zip(events, (adjacency[:, 0, 1] == 1, adjacency[:, 2, 3] == 0,
                                   adjacency.flatten(1).any(dim=1))):
        entry = est[f"marginal[{event}]"]
        assert entry["exact"] == pytest.approx(float(learned[has].sum()))
        assert entry["target"] == pytest.approx(float(graph.target[has].sum()))
        assert entry["ci_low"] <= entry["exact"] <= entry["ci_high"], event
    assert est["entropy"]["exact"] == pytest.approx(exact_entropy(graph, policy))
    # log p(x) from K = 10 backward trajectories is biased low (heavily on DAGs: up to e! orders of
    # e edges), so H is biased high (0.47 here); at K = 100 it is within 0.1 (test above)
    assert 0 < est["entropy"]["estimate"] - est["entropy"]["exact"] < 0.6
    for bad in ("X0->X0=1", "X0-X1=1", "X4->X0=1"):
        with pytest.raises(ConfigError):
            estimate_all(env, policy, n=100, events=(bad,))


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
