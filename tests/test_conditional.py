"""Conditional and multi-objective GFlowNets: the conditional environment's mechanics, the
scalarisations in closed form, exact per-context evaluation of trained samplers (temperatures on
the 2-D grid, preferences on sets, contexts never drawn in training included) against an
unconditional sampler trained on one context alone, Pareto/hypervolume/R2 measures against
brute force and the registry's pymoo, Branin-Currin, and the command line."""

import itertools
import json
import math

import numpy as np
import pytest
import torch

from gflownets.envs import BraninCurrin, Hypergrid, Sets
from gflownets.envs.conditional import CONTEXT_SCALE, ConditionalEnv, Preference, Temperature, thermometer
from gflownets.envs.multi_objective import branin, currin
from gflownets.errors import ConfigError
from gflownets.measures.pareto import hypervolume, pareto_mask, r2_indicator, simplex_grid
from gflownets.training import RunConfig, Trainer

from cli_helpers import one_error_line, run_cli
from contracts import assert_steps_are_inverse, random_states


def test_states_carry_the_context_unchanged():
    env = ConditionalEnv(Hypergrid(ndim=2, height=5), Temperature(0.5, 4.0))
    generator = torch.Generator().manual_seed(0)
    s0 = env.initial_states(64, generator)
    betas = env.contexts(s0)[:, 0]
    assert betas.min() >= 0.5 and betas.max() <= 4.0 and betas.std() > 0.5  # drawn, not fixed
    states = s0
    for _ in range(3):
        mask = env.forward_mask(states)[:, :-1]
        actions = torch.multinomial(mask.float(), 1, generator=generator).squeeze(1)
        states = env.step(states, actions)
        assert torch.equal(env.contexts(states), env.contexts(s0))
    assert env.features(states).shape == (64, env.feature_dim) == (64, 10 + 32)
    base = env.base_states(states)
    assert torch.allclose(env.log_reward(states), betas * env.base.log_reward(base))
    fixed = env.fixed([2.0])
    assert_steps_are_inverse(fixed, random_states(fixed, 64, seed=1))
    assert fixed.initial_states(3)[:, -1].tolist() == [2 * CONTEXT_SCALE] * 3
    assert len(fixed.enumerate_states()) == 25


def test_thermometer_code_is_monotone_and_saturates():
    code = thermometer(torch.tensor([1.0, 1.5, 8.0, 16.0]), 1.0, 16.0, 16)
    assert code[0].sum() == 0 and code[3].sum() == 15  # low: all off; high: every gap filled
    assert (code[1:].sum(dim=1) > code[:-1].sum(dim=1)).all()


def test_scalarisations_in_closed_form():
    f = torch.tensor([[0.2, 0.9], [0.6, 0.5]], dtype=torch.float64)
    w = torch.tensor([[0.3, 0.7], [1.0, 0.0]], dtype=torch.float64)
    for name, expected in [("sum", [0.3 * 0.2 + 0.7 * 0.9, 0.6]),
                           ("product", [0.2 ** 0.3 * 0.9 ** 0.7, 0.6]),
                           ("tchebycheff", [1 - max(0.3 * 0.8, 0.7 * 0.1), 0.6])]:
        got = Preference(2, scalarisation=name, beta=3.0).log_reward(None, f, w)
        assert torch.allclose(got, 3.0 * torch.tensor(expected, dtype=torch.float64).log()), name


def test_bad_conditions_are_refused():
    with pytest.raises(ConfigError, match="one objective"):
        RunConfig(env="hypergrid", condition="preference").build_env()
    with pytest.raises(ConfigError, match="does not train conditional"):
        RunConfig(env="hypergrid", condition="beta", objective="vargrad").validate()
    with pytest.raises(ConfigError, match="beta_range"):
        RunConfig(env="hypergrid", condition="beta", beta_range="4").validate()
    env = RunConfig(env="hypergrid", condition="beta", beta_range="1,4").build_env()
    with pytest.raises(ConfigError, match="outside the range"):
        env.fixed([8.0])
    env = RunConfig(env="sets", condition="preference").build_env()
    with pytest.raises(ConfigError, match="summing to 1"):
        env.fixed([0.5, 0.6])


def train(**options) -> dict:
    config = RunConfig(**{"iters": 800, "batch_size": 32, "hidden": 64, "eval_every": 0, "seed": 0, **options})
    return Trainer(config, progress=False).run()


@pytest.fixture(scope="module")
def grid_beta_run():
    """Betas drawn from [0.5, 2]; evaluated at five betas, none of them a training draw."""
    return train(env="hypergrid", env_args={"ndim": 2, "height": 6}, condition="beta", beta_range="0.5,2",
                 eval_contexts="0.5;0.8;1.1;1.6;2", iters=1500)


def test_temperature_conditioned_sampler_matches_each_exact_target(grid_beta_run):
    contexts = grid_beta_run["contexts"]
    assert [c["beta"] for c in contexts] == [0.5, 0.8, 1.1, 1.6, 2.0]
    for entry in contexts:
        assert entry["l1"] < 0.25, entry
        assert abs(entry["log_z"] - entry["log_z_true"]) < 0.2, entry
    # log Z(beta) of the grid is not one number: the conditional log Z follows it
    true = [c["log_z_true"] for c in contexts]
    assert max(true) - min(true) > 0.2
    # against one unconditional sampler per context, same budget: comparable exactness
    beta = 1.1
    single = train(env="hypergrid", env_args={"ndim": 2, "height": 6}, condition="beta",
                   beta_range=f"{beta},{beta}", eval_contexts=str(beta), iters=1500)
    assert contexts[2]["l1"] < 2.5 * single["contexts"][0]["l1"] + 0.05


@pytest.mark.parametrize("scalarisation", ["sum", "tchebycheff"])
def test_preference_conditioned_sampler_matches_each_exact_target(scalarisation):
    summary = train(env="sets", env_args={"n_items": 6, "set_size": 3}, condition="preference",
                    preference_beta=4.0, scalarisation=scalarisation)
    contexts = summary["contexts"]
    assert [(c["w0"], c["w1"]) for c in contexts] == [(1.0, 0.0), (0.75, 0.25), (0.5, 0.5), (0.25, 0.75),
                                                       (0.0, 1.0)]
    assert all(c["l1"] < 0.35 for c in contexts), contexts
    assert summary["l1_contexts_mean"] < 0.2
    # the multi-objective measures of 1000 samples, each under its own preference, and the exact front
    assert 0 < summary["hypervolume_samples"] <= summary["hypervolume_front"] + 1e-12
    assert summary["r2_samples"] >= summary["r2_front"] - 1e-12
    assert 1 <= summary["front_found_samples"] <= summary["front_size"]
    assert summary["distinct_samples"] <= 20 and summary["diversity_samples"] > 0


@pytest.mark.parametrize("objective", ["db", "subtb", "fm"])
def test_other_objectives_train_conditionally(objective):
    summary = train(env="hypergrid", env_args={"ndim": 2, "height": 4}, condition="beta", beta_range="0.5,2",
                    objective=objective, iters=300)
    assert summary["l1_contexts_mean"] < 0.5 and len(summary["contexts"]) == 5


def test_pareto_mask_matches_brute_force():
    rng = np.random.default_rng(0)
    points = np.round(rng.random((200, 3)), 1)  # ties and duplicates
    dominated = [any((q >= p).all() and (q > p).any() for q in points) for p in points]
    assert pareto_mask(points).tolist() == [not d for d in dominated]


def exact_hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Inclusion-exclusion over subsets: sum over non-empty S of (-1)^(|S|+1) vol(meet of S)."""
    total = 0.0
    for size in range(1, len(points) + 1):
        for subset in itertools.combinations(points, size):
            corner = np.min(subset, axis=0)
            total += (-1) ** (size + 1) * np.prod(np.clip(corner - reference, 0, None))
    return total


@pytest.mark.parametrize("m", [2, 3])
def test_hypervolume_against_brute_force_and_pymoo(m):
    rng = np.random.default_rng(m)
    reference = np.full(m, 0.1)
    for _ in range(5):
        points = rng.random((9, m))
        ours = hypervolume(points, reference)
        assert ours == pytest.approx(exact_hypervolume(points, reference), abs=1e-12)
    try:
        from pymoo.indicators.hv import HV
    except ImportError:
        pytest.skip("pymoo is not installed: the brute-force check above stands alone")
    for _ in range(5):
        points = rng.random((300, m))
        theirs = HV(ref_point=-reference)(-points)  # pymoo minimises
        assert abs(hypervolume(points, reference) - theirs) < 1e-9


def test_r2_indicator_closed_forms():
    assert r2_indicator(np.ones((1, 2))) == 0.0  # the ideal point itself
    # one point (a, b): mean over w of max(w0 (1 - a), w1 (1 - b))
    weights = simplex_grid(2, 10)
    expected = np.mean([max(w0 * 0.5, w1 * 0.2) for w0, w1 in weights])
    assert r2_indicator(np.array([[0.5, 0.8]])) == pytest.approx(expected)
    assert len(simplex_grid(3, 4)) == math.comb(6, 2)


def test_branin_currin_objectives():
    u = torch.tensor([[(math.pi + 5) / 15, 2.275 / 15], [(9.42478 + 5) / 15, 2.475 / 15]], dtype=torch.float64)
    assert torch.allclose(branin(u), torch.full((2,), 0.397887, dtype=torch.float64), atol=1e-5)
    assert float(currin(torch.tensor([[0.0, 0.0]], dtype=torch.float64))) == pytest.approx(3.0)
    env = BraninCurrin(height=16)
    values = env.objective_values(env.enumerate_states())
    assert values.min(dim=0).values.tolist() == [0.0, 0.0] and values.max(dim=0).values.tolist() == [1.0, 1.0]
    front = values[torch.from_numpy(pareto_mask(values))]
    assert 2 < len(front) < 60  # a real trade-off, not one best cell
    assert 0.5 < hypervolume(front) < 1.0


def test_sets_objective_values_reach_zero_and_one():
    env = Sets(n_items=6, set_size=3)
    states = env.enumerate_states()
    finished = states[env.is_terminal(states)]
    values = env.objective_values(finished)
    assert torch.allclose(values.min(dim=0).values, torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(values.max(dim=0).values, torch.ones(2, dtype=torch.float64))


def test_conditional_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("train", "hypergrid", "--ndim", 2, "--height", 4, "--condition", "beta", "--beta-range", "1,4",
                   "--iters", 60, "--batch-size", 16, "--hidden", 32, "--eval-every", 0, "--quiet",
                   "--out", out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["contexts"]) == 5 and summary["log_z"] is None
    assert len(list((out / "plots").glob("distribution-beta=*.png"))) == 5
    samples = tmp_path / "beta2.csv"
    assert run_cli("sample", out, "-n", 50, "--beta", 2, "--out", samples) == 0
    rows = samples.read_text().splitlines()
    assert rows[0] == "x0,x1,log_reward" and len(rows) == 51
    env = Hypergrid(ndim=2, height=4)
    first = [int(v) for v in rows[1].split(",")[:2]]
    assert float(rows[1].split(",")[2]) == pytest.approx(2 * float(env.log_reward(torch.tensor([first]))))
    assert "--beta" in one_error_line(capsys, "sample", out, "-n", 5, "--out", tmp_path / "x.csv")
    assert "outside the range" in one_error_line(capsys, "sample", out, "--beta", 9, "--out", tmp_path / "x.csv")
    assert "--condition preference" in one_error_line(capsys, "sample", out, "--preference", "0.5,0.5",
                                                      "--out", tmp_path / "x.csv")
    # the run resumes like any other
    assert run_cli("train", "hypergrid", "--out", out, "--resume", "--iters", 80, "--quiet") == 0
    assert json.loads((out / "summary.json").read_text())["iterations"] == 80


def test_preference_run_writes_pareto_measures_and_plots(tmp_path):
    out = tmp_path / "bc"
    assert run_cli("train", "branin-currin", "--height", 6, "--condition", "preference", "--scalarisation", "product",
                   "--iters", 30, "--batch-size", 16, "--hidden", 32, "--eval-every", 0, "--quiet", "--out", out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_args"]["scalarisation"] == "product" and summary["front_size"] >= 2
    assert 0 < summary["hypervolume_samples"] <= summary["hypervolume_front"]
    assert (out / "plots" / "pareto.png").stat().st_size > 0
    assert len(list((out / "plots").glob("distribution-w0=*.png"))) == 5
    samples = tmp_path / "w.csv"
    assert run_cli("sample", out, "-n", 20, "--preference", "0.3,0.7", "--out", samples) == 0
    assert len(samples.read_text().splitlines()) == 21


def test_sequence_ngram_objectives_and_a_conditional_run():
    from gflownets.envs import Sequence

    env = Sequence(alphabet="AB", max_length=6, ngrams="AB,BB")
    values = env.objective_values(env.encode(["ABAB", "BBBBBB", "A", "ABBB"]))
    assert values.tolist() == [[0.4, 0.0], [0.0, 1.0], [0.0, 0.0], [0.2, 0.4]]
    assert Sequence().objective_values(Sequence().encode(["AC"])) is None
    with pytest.raises(ConfigError, match="n-gram"):
        Sequence(alphabet="AB", ngrams="AC")
    summary = train(env="sequence", env_args={"alphabet": "AB", "max_length": 4, "ngrams": "AB,BB"},
                    condition="preference", preference_beta=4.0, iters=1000)
    assert summary["l1_contexts_mean"] < 0.35 and summary["front_size"] >= 2


def test_estimate_at_a_context(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("train", "hypergrid", "--ndim", 2, "--height", 4, "--condition", "beta", "--beta-range", "1,4",
                   "--iters", 300, "--batch-size", 16, "--hidden", 32, "--eval-every", 0, "--quiet",
                   "--out", out) == 0
    capsys.readouterr()
    assert run_cli("estimate", out, "--beta", 2, "-n", 2000) == 0
    result = json.loads(capsys.readouterr().out)
    exact = Hypergrid(ndim=2, height=4)
    states = exact.enumerate_states()
    log_z_true = float(torch.logsumexp(2 * exact.log_reward(states), 0))
    assert result["context"] == [2.0] and result["log_z_true"] == pytest.approx(log_z_true)
    elbo = result["estimates"]["elbo"]
    assert elbo["exact"] <= log_z_true + 1e-9 and elbo["ci_low"] <= elbo["exact"] <= elbo["ci_high"] + 0.05
    assert "--beta" in one_error_line(capsys, "estimate", out, "-n", 100)


def test_a_users_environment_instance_is_conditioned_too():
    env = Hypergrid(ndim=2, height=4, log_reward_fn=lambda rows: -rows.double().sum(dim=1))
    trainer = Trainer(RunConfig(env="hypergrid", condition="beta", beta_range="1,2", iters=5, batch_size=4,
                                hidden=16, eval_every=0), env=env, progress=False)
    assert trainer.env.conditional and trainer.env.base is env
    objects, log_rewards = trainer.sample(8, context=[2.0])
    assert torch.allclose(log_rewards, -2.0 * trainer.env.base_states(objects).double().sum(dim=1))
