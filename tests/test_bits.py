"""The `bits` environment (binary vectors built one bit at a time in any order, Zhang et al.
2022): masks and steps, enumeration, the D! construction orders, the Ising reward, the exact
optimum, training, user rewards, config errors and the CLI."""

import math

import numpy as np
import pytest
import torch

from gflownets.cli import main
from gflownets.envs import ENVIRONMENTS, Bits
from gflownets.errors import ActionError, ConfigError, DataError, TooManyStates
from gflownets.evaluation import StateGraph, distribution_metrics, optimal_tabular_policy
from gflownets.training import RunConfig, Trainer

from contracts import assert_steps_are_inverse, random_states


def ising_log_reward(bits: np.ndarray, coupling: float, field: float) -> np.ndarray:
    """The documented closed form, written independently: -E(x) on a ring, s = 2x - 1."""
    s = 2.0 * bits - 1
    d = bits.shape[1]
    bonds = sum(s[:, i] * s[:, (i + 1) % d] for i in range(d))
    return coupling * bonds + field * s.sum(axis=1)


def all_objects(dim: int) -> torch.Tensor:
    """Every complete object of `dim` bits, as states (entries 1 + bit)."""
    bits = (torch.arange(2 ** dim)[:, None] >> torch.arange(dim)) & 1
    return bits + 1


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_masks_and_steps_are_consistent(dim):
    env = Bits(dim=dim)
    states = random_states(env, 256, seed=dim, stop=0.1)
    unset = states == 0
    complete = ~unset.any(dim=1)
    mask = env.forward_mask(states)
    assert mask.shape == (256, 2 * dim + 1)
    assert torch.equal(mask[:, -1], complete)  # exit exactly when every bit is set...
    assert not mask[complete, :-1].any()  # ...and then it is the only action
    assert torch.equal(mask[:, 0:-1:2], unset) and torch.equal(mask[:, 1:-1:2], unset)
    # backward: exactly one allowed action per set bit, the one that undoes its value
    back = env.backward_mask(states)
    assert back.shape == (256, 2 * dim)
    assert torch.equal(back.sum(dim=1), (~unset).sum(dim=1))
    children = assert_steps_are_inverse(env, states)
    assert ((children >= 0) & (children <= 2)).all()
    assert torch.equal(env.is_initial(states), unset.all(dim=1))


def test_steps_write_and_clear_one_bit():
    env = Bits(dim=3)
    s0 = env.initial_states(2)
    states = env.step(s0, torch.tensor([1, 4]))  # bit 0 := 1; bit 2 := 0
    assert states.tolist() == [[2, 0, 0], [0, 0, 1]]
    assert env.objects_to_rows(states).tolist() == [[1, -1, -1], [-1, -1, 0]]
    with pytest.raises(ActionError):
        env.step(states, torch.tensor([0, 5]))  # bit 0 of row 0 is set already
    with pytest.raises(ActionError):
        env.backward_step(states, torch.tensor([0, 4]))  # row 0 holds 1 at bit 0, not 0
    assert env.backward_step(states, torch.tensor([1, 4])).tolist() == [[0, 0, 0], [0, 0, 0]]


def test_enumeration_has_every_partial_assignment():
    env = Bits(dim=3)
    states = env.enumerate_states()
    assert len(states) == 3 ** 3 == len(torch.unique(states, dim=0))
    # the closed form is the breadth-first search's state set
    assert torch.equal(torch.unique(states, dim=0), torch.unique(super(Bits, env)._enumerate(), dim=0))
    assert int(env.is_terminal(states).sum()) == 2 ** 3
    assert len(Bits(dim=10).enumerate_states()) == 3 ** 10
    with pytest.raises(TooManyStates):
        Bits(dim=11).enumerate_states()


@pytest.mark.parametrize("dim", [3, 4])
def test_every_object_is_reached_by_dim_factorial_orders(dim):
    # expand every allowed action from every trajectory (no merging): after D steps each row is
    # one construction order of a complete object
    env = Bits(dim=dim)
    states = env.initial_states(1)
    for _ in range(dim):
        rows, actions = env.forward_mask(states)[:, :-1].nonzero(as_tuple=True)
        states = env.step(states[rows], actions)
    assert env.is_terminal(states).all()
    objects, counts = torch.unique(states, dim=0, return_counts=True)
    assert len(objects) == 2 ** dim
    assert (counts == math.factorial(dim)).all()


def test_default_reward_is_the_ising_ring():
    env = Bits(dim=5, coupling=0.7, field=-0.3)
    objects = all_objects(5)
    expected = ising_log_reward(env.objects_to_rows(objects).astype(float), 0.7, -0.3)
    np.testing.assert_allclose(env.log_reward(objects).numpy(), expected, rtol=0, atol=1e-12)
    ones = torch.full((1, 5), 2)
    assert env.log_reward(ones).item() == pytest.approx(0.7 * 5 - 0.3 * 5)
    # partial states (fldb): the energy of the bits set so far; s0 has none
    assert env.intermediate_log_reward(env.initial_states(1)).item() == 0.0
    partial = torch.tensor([[2, 2, 0, 0, 1]])  # 1, 1, unset, unset, 0: one bond (+1), one (-1) on the ring
    assert env.intermediate_log_reward(partial).item() == pytest.approx(0.7 * (1 - 1) - 0.3 * (1 + 1 - 1))


def test_features_are_one_hot_per_position():
    env = Bits(dim=4)
    states = env.enumerate_states()
    features = env.features(states)
    assert features.shape == (81, env.feature_dim) == (81, 12)
    blocks = features.view(81, 4, 3)
    assert (blocks.sum(dim=2) == 1).all()
    assert torch.equal(blocks.argmax(dim=2), states)


def test_exact_optimal_policy_reproduces_the_target():
    graph = StateGraph(Bits(dim=4))
    exact = graph.terminal_distribution(optimal_tabular_policy(graph))
    assert distribution_metrics(exact, graph.target)["l1"] < 1e-9
    assert graph.target.max() / graph.target.min() > 10  # a target far from uniform


def test_training_learns_the_target():
    config = RunConfig(env="bits", env_args={"dim": 4}, iters=300, batch_size=32, hidden=64,
                       eval_every=0, seed=0)
    summary = Trainer(config, progress=False).run()
    assert summary["l1"] < 0.1


def test_a_user_reward_function_gets_bit_rows():
    seen = []

    def reward(bits):
        seen.append(bits)
        return 1.0 + bits.sum(dim=1).double()

    env = Bits(dim=3, reward_fn=reward)
    objects = all_objects(3)
    log_r = env.log_reward(objects)
    assert set(torch.cat(seen).unique().tolist()) <= {0, 1}
    assert torch.allclose(log_r, (objects - 1).sum(dim=1).double().add(1).log())
    config = RunConfig(iters=5, batch_size=8, hidden=16, eval_every=0)
    summary = Trainer(config, env=env, progress=False).run()
    assert summary["log_z_true"] == pytest.approx(math.log(2 ** 3 + 3 * 2 ** 2), rel=1e-12)


def test_rows_round_trip_and_bad_rows_are_data_errors():
    env = Bits(dim=4)
    assert env.object_columns == ["b0", "b1", "b2", "b3"]
    objects = all_objects(4)
    rows = env.objects_to_rows(objects)
    assert set(np.unique(rows)) == {0, 1}
    assert torch.equal(env.objects_from_rows(rows), objects)
    env.validate_objects(objects)
    with pytest.raises(DataError, match="b2"):
        env.objects_from_rows(np.array([[0, 1, 2, 0]]))
    with pytest.raises(DataError):
        env.objects_from_rows(np.array([[0, 1, 1]]))
    with pytest.raises(DataError):
        env.validate_objects(torch.tensor([[1, 0, 2, 2]]))


def test_mutations_flip_one_bit():
    env = Bits(dim=6)
    objects = all_objects(6)
    mutants = env.mutate(objects, torch.Generator().manual_seed(0))
    assert env.is_terminal(mutants).all()
    assert ((mutants != objects).sum(dim=1) == 1).all()


@pytest.mark.parametrize("options", [dict(dim=0), dict(dim=65), dict(dim=-3), dict(coupling=float("inf")),
                                     dict(coupling=float("nan")), dict(field=float("-inf")),
                                     dict(field=float("nan")), dict(height=3)])
def test_bad_config_values_are_config_errors(options):
    with pytest.raises(ConfigError):
        Bits(**options)


def test_registered_and_trains_from_the_cli(tmp_path):
    assert ENVIRONMENTS["bits"] is Bits
    assert main(["train", "bits", "--dim", "3", "--iters", "20", "--quiet", "--out", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run").is_dir()
