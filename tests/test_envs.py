"""Environment contracts: masks, step/backward_step inverses, enumeration, object rows."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gflownets.envs import Hypergrid, Sets
from gflownets.errors import ActionError, ConfigError, DataError, RewardError

from contracts import assert_steps_are_inverse, random_states


ENVS = [Hypergrid(ndim=2, height=8), Hypergrid(ndim=4, height=5), Hypergrid(ndim=1, height=2),
        Sets(n_items=7, set_size=3), Sets(n_items=5, set_size=5)]


@pytest.mark.parametrize("env", ENVS, ids=lambda e: e.name)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_step_and_backward_step_are_inverse(env, seed):
    assert_steps_are_inverse(env, random_states(env, 64, seed))


@settings(max_examples=50, deadline=None)
@given(ndim=st.integers(1, 5), height=st.integers(2, 9), seed=st.integers(0, 10_000))
def test_hypergrid_masks_never_leave_the_grid(ndim, height, seed):
    env = Hypergrid(ndim=ndim, height=height)
    states = random_states(env, 128, seed)
    assert ((states >= 0) & (states < height)).all()
    rows, actions = env.forward_mask(states)[:, :-1].nonzero(as_tuple=True)
    children = env.step(states[rows], actions)
    assert ((children >= 0) & (children < height)).all()
    rows, actions = env.backward_mask(states).nonzero(as_tuple=True)
    parents = env.backward_step(states[rows], actions)
    assert ((parents >= 0) & (parents < height)).all()
    # exactly the moves that stay inside are allowed
    for i in range(ndim):
        assert torch.equal(env.forward_mask(states)[:, i], states[:, i] < height - 1)
    assert env.forward_mask(states)[:, -1].all()


def test_sets_masks():
    env = Sets(n_items=6, set_size=3)
    states = random_states(env, 256, 0)
    size = states.sum(1)
    fmask = env.forward_mask(states)
    assert torch.equal(fmask[:, -1], size == 3)  # exit exactly at size k...
    assert not fmask[size == 3, :-1].any()  # ...and then nothing else
    assert torch.equal(fmask[size < 3, :-1], states[size < 3] == 0)
    assert torch.equal(env.backward_mask(states), states == 1)


@pytest.mark.parametrize("env,count", [
    (Hypergrid(ndim=3, height=4), 64),
    (Sets(n_items=6, set_size=3), 1 + 6 + 15 + 20),
])
def test_enumeration_counts(env, count):
    states = env.enumerate_states()
    assert len(states) == count
    assert len(torch.unique(states, dim=0)) == count


def test_bfs_enumeration_matches_closed_form():
    env = Hypergrid(ndim=3, height=4)
    bfs = super(Hypergrid, env)._enumerate()
    assert set(map(tuple, bfs.tolist())) == set(map(tuple, env.enumerate_states().tolist()))


def test_hypergrid_reward_formula():
    env = Hypergrid(ndim=2, height=8)  # R0=0.1, R1=0.5, R2=2
    r = env.log_reward(torch.tensor([[0, 0], [1, 1], [1, 6], [3, 4], [0, 3], [6, 6]])).exp()
    assert torch.allclose(r, torch.tensor([0.6, 2.6, 2.6, 0.1, 0.1, 2.6], dtype=torch.float64))
    tutorial = Hypergrid(**Hypergrid.presets["tutorial"])
    r = tutorial.log_reward(torch.tensor([[0, 0], [1, 1], [3, 4]])).exp()
    assert torch.allclose(r, torch.tensor([0.51, 1.51, 0.01], dtype=torch.float64))
    # the inclusive upper bound matters where |x/(H-1) - 0.5| hits 0.4 exactly: H = 11, x = 1
    strict, inclusive = Hypergrid(ndim=1, height=11), Hypergrid(ndim=1, height=11, r2_upper_inclusive=True)
    x = torch.tensor([[1]])
    assert math.isclose(float(strict.log_reward(x).exp()), 0.6)
    assert math.isclose(float(inclusive.log_reward(x).exp()), 2.6)


def test_sets_default_reward_is_order_free_score():
    env = Sets(n_items=5, set_size=2, beta=1.0)
    v = env.item_values
    x = torch.tensor([[1, 0, 1, 0, 0]])
    expected = v[0] + v[2] + v[0] * v[2] / 2
    assert torch.allclose(env.log_reward(x), expected.reshape(1))


def test_features_are_one_hot():
    env = Hypergrid(ndim=3, height=4)
    f = env.features(torch.tensor([[0, 3, 1]]))
    assert f.shape == (1, 12)
    assert f[0].nonzero().squeeze(1).tolist() == [0, 7, 9]


def test_forbidden_action_is_rejected():
    env = Hypergrid(ndim=2, height=3)
    with pytest.raises(ActionError, match="forward action 0 is not allowed in state \\[2, 0\\]"):
        env.step(torch.tensor([[2, 0]]), torch.tensor([0]))
    with pytest.raises(ActionError, match="backward action 1"):
        env.backward_step(torch.tensor([[2, 0]]), torch.tensor([1]))
    with pytest.raises(ActionError):
        env.step(torch.tensor([[0, 0]]), torch.tensor([5]))
    sets = Sets(n_items=3, set_size=2)
    with pytest.raises(ActionError):
        sets.step(torch.tensor([[1, 0, 0]]), torch.tensor([0]))  # item already present


@pytest.mark.parametrize("kwargs,match", [
    (dict(height=1), "height must be >= 2"),
    (dict(ndim=0), "ndim must be >= 1"),
    (dict(r0=0.0), "r0 must be > 0"),
    (dict(r1=-1.0), "r1 must be a finite value >= 0"),
    (dict(r2=float("nan")), "r2 must be"),
])
def test_invalid_hypergrid_config(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Hypergrid(**kwargs)


def test_invalid_sets_config():
    with pytest.raises(ConfigError, match="set_size must be in"):
        Sets(n_items=3, set_size=4)


@pytest.mark.parametrize("bad,match", [
    (lambda x: torch.where(x[:, 0] == 2, float("nan"), 1.0), "reward is invalid for 8 object"),
    (lambda x: torch.where(x[:, 0] == 2, -1.0, 1.0), "reward is invalid"),
    (lambda x: torch.where(x[:, 0] == 2, float("inf"), 1.0), "reward is invalid"),
    (lambda x: torch.where(x[:, 0] == 2, 0.0, 1.0), "zero rewards need reward_floor"),
    (lambda x: torch.ones(3), "returned 3 values for 64 objects"),
])
def test_bad_user_reward_is_named(bad, match):
    env = Hypergrid(ndim=2, height=8, reward_fn=bad)
    with pytest.raises(RewardError, match=match) as info:
        env.log_reward(env.enumerate_states())
    if "invalid" in match:
        assert "[2, 0]" in str(info.value)  # names the first offending object


def test_user_log_reward_and_floor():
    env = Hypergrid(ndim=2, height=4, log_reward_fn=lambda x: -x.sum(1).double())
    assert torch.equal(env.log_reward(torch.tensor([[1, 2]])), torch.tensor([-3.0], dtype=torch.float64))
    with pytest.raises(RewardError, match="log-reward is invalid"):
        Hypergrid(ndim=2, height=4, log_reward_fn=lambda x: torch.full((len(x),), float("nan"))).log_reward(
            torch.tensor([[0, 0]]))
    floored = Hypergrid(ndim=2, height=4, reward_fn=lambda x: torch.zeros(len(x)), reward_floor=1e-6)
    assert torch.allclose(floored.log_reward(torch.tensor([[0, 0]])), torch.tensor([math.log(1e-6)],
                                                                                  dtype=torch.float64))
    with pytest.raises(ValueError, match="not both"):
        Hypergrid(reward_fn=lambda x: x, log_reward_fn=lambda x: x)


@pytest.mark.parametrize("env", [Hypergrid(ndim=3, height=5), Sets(n_items=6, set_size=2)], ids=lambda e: e.name)
def test_object_rows_round_trip(env):
    states = env.enumerate_states()
    terminal = states[env.is_terminal(states)]
    rows = env.objects_to_rows(terminal)
    assert rows.shape == (len(terminal), len(env.object_columns))
    assert torch.equal(env.objects_from_rows(rows), terminal)


def test_object_rows_are_validated():
    with pytest.raises(DataError, match="row 2: value 9 in column x1 is outside \\[0, 4\\]"):
        Hypergrid(ndim=2, height=5).objects_from_rows(np.array([[0, 0], [1, 9]]))
    with pytest.raises(DataError, match="row 1: items \\[2, 2\\] repeat an item"):
        Sets(n_items=4, set_size=2).objects_from_rows(np.array([[2, 2]]))
    with pytest.raises(DataError, match="item 7 is outside"):
        Sets(n_items=4, set_size=2).objects_from_rows(np.array([[0, 7]]))


def test_hypergrid_mutants_are_one_step_neighbours_inside_the_grid():
    env = Hypergrid(ndim=3, height=4)
    objects = env.enumerate_states()
    mutants = env.mutate(objects.repeat(20, 1), torch.Generator().manual_seed(0))
    distance = (mutants - objects.repeat(20, 1)).abs().sum(dim=1)
    assert (distance <= 1).all()  # one coordinate by one, or (a move off the grid) none
    assert ((mutants >= 0) & (mutants < 4)).all()
    corner = torch.zeros(1, 3, dtype=torch.long)  # from a corner, half the moves leave the grid
    stays = (env.mutate(corner.repeat(4000, 1), torch.Generator().manual_seed(1)) == 0).all(dim=1)
    assert abs(stays.double().mean() - 0.5) < 0.03


def test_sets_define_no_mutation():
    env = Sets()
    with pytest.raises(NotImplementedError, match="defines no mutation"):
        env.mutate(env.initial_states(1), torch.Generator())


def test_constructor_options_come_from_the_base_class():
    from gflownets.envs import HypergridConfig, SetsConfig

    config = HypergridConfig(ndim=3, height=4)
    assert Hypergrid(config).config is config and Hypergrid(config).ndim == 3
    assert Hypergrid(ndim=3, height=4).config == config
    reward = Sets(SetsConfig(n_items=4, set_size=2), reward_fn=lambda x: torch.ones(len(x)))
    assert reward.reward_fn is not None and reward.n_items == 4
    with pytest.raises(ConfigError, match="unknown hypergrid option\\(s\\) 'heigth', 'width'; known: "):
        Hypergrid(heigth=4, width=3)
    with pytest.raises(ConfigError, match="hypergrid: give a config or options \\(height\\), not both"):
        Hypergrid(config, height=5)
    with pytest.raises(ConfigError, match="hypergrid takes a HypergridConfig, got SetsConfig"):
        Hypergrid(SetsConfig())


def test_default_csv_form_is_the_flattened_state_checked_against_value_range():
    import dataclasses

    from gflownets.envs.base import DiscreteEnv, EnvConfig

    @dataclasses.dataclass
    class PairConfig(EnvConfig):
        top: int = 3

    class Pairs(DiscreteEnv):
        """Two counters in [0, top], as a (2, 1) state: the smallest user of every default."""

        name, Config = "pairs", PairConfig
        value_range = (0, 3)

        def setup(self, config):
            self.n_actions, self.state_shape, self.max_steps, self.feature_dim = 3, (2, 1), 7, 2

        @property
        def initial_state(self):
            return torch.zeros(2, 1, dtype=torch.long)

        def forward_mask(self, states):
            return torch.cat([states[:, :, 0] < self.config.top, torch.ones(len(states), 1, dtype=bool)], 1)

        def backward_mask(self, states):
            return states[:, :, 0] > 0

        def _step(self, states, actions):
            return states + torch.nn.functional.one_hot(actions, 2)[:, :, None]

        def _backward_step(self, states, actions):
            return states - torch.nn.functional.one_hot(actions, 2)[:, :, None]

        def default_log_reward(self, states):
            return states.sum(dim=(1, 2)).double()

        def features(self, states):
            return states.flatten(1).float()

    env = Pairs()
    assert env.object_columns == ["x0", "x1"]
    states = torch.tensor([[[1], [3]], [[0], [2]]])
    rows = env.objects_to_rows(states)
    assert rows.dtype == np.int64 and rows.tolist() == [[1, 3], [0, 2]]
    assert torch.equal(env.objects_from_rows(rows), states)
    with pytest.raises(DataError, match="pairs objects need 2 columns \\(x0, x1\\), got 3"):
        env.objects_from_rows(np.array([[0, 1, 2]]))
    with pytest.raises(DataError, match="row 2: value -1 in column x0 is outside \\[0, 3\\]"):
        env.objects_from_rows(np.array([[0, 1], [-1, 0]]))
    assert len(env.enumerate_states()) == 16
    with pytest.raises(DataError, match="row 1: value 6 in column x1 is outside \\[0, 5\\]"):
        Hypergrid(ndim=2, height=6).objects_from_rows(np.array([[0, 6]]))  # value_range from the config


@pytest.mark.parametrize("ndim,files", [
    (2, ["training.png", "distribution.png", "policy.png"]),  # the hypergrid's own heatmaps and arrows
    (3, ["training.png", "distribution.png"]),  # the generic learned-vs-target scatter
])
def test_run_plots_take_any_object_with_the_run_attributes(tmp_path, ndim, files):
    from types import SimpleNamespace

    from gflownets.evaluation import StateGraph, optimal_tabular_policy
    from gflownets.plotting import write_plots

    env = Hypergrid(ndim=ndim, height=4)
    graph = StateGraph(env)
    run = SimpleNamespace(env=env, graph=graph, eval_policy=optimal_tabular_policy(graph), out_dir=tmp_path,
                          config=SimpleNamespace(seed=0), sample_objects=None)
    written = write_plots(run, tmp_path / "plots")
    assert sorted(p.name for p in written) == sorted(files)
    assert all(p.stat().st_size > 1000 for p in written)
