"""A reward that fails on some object is an error that names the object, never a silent skip:
exact evaluation (`try_state_graph`) gives up only on environments too large to enumerate."""

import pytest
import torch

from gflownets.envs import DAG, Hypergrid, Sequence, Sets
from gflownets.errors import RewardError, TooManyStates
from gflownets.evaluation import try_state_graph

#: the one cell the rewards below fail on: a far corner, reached by few trajectories
RARE = (6, 7)


def raising_reward(objects: torch.Tensor) -> torch.Tensor:
    table = {tuple(row): 1.0 + sum(row) for row in objects.tolist() if tuple(row) != RARE}
    return torch.tensor([table[tuple(row)] for row in objects.tolist()])  # KeyError at RARE


def nan_reward(objects: torch.Tensor) -> torch.Tensor:
    rare = (objects == torch.tensor(RARE)).all(dim=1)
    return torch.where(rare, float("nan"), 1.0 + objects.sum(dim=1).double())


@pytest.mark.parametrize("reward,match", [
    (raising_reward, r"reward function failed on object \[6, 7\] \(batch row \d+\): KeyError: \(6, 7\)"),
    (nan_reward, r"reward is invalid for 1 object\(s\); first: \[6, 7\] -> nan"),
])
def test_exact_evaluation_reports_a_reward_failing_on_one_cell(reward, match):
    env = Hypergrid(ndim=2, height=8, reward_fn=reward)
    with pytest.raises(RewardError, match=match):
        try_state_graph(env)


def test_a_failing_log_reward_names_the_object_and_the_error():
    def log_reward(objects):
        if (objects == torch.tensor([1, 3])).all(dim=1).any():  # the user sees item indices
            raise ZeroDivisionError("no score for items 1 and 3")
        return torch.zeros(len(objects))

    env = Sets(n_items=4, set_size=2, log_reward_fn=log_reward)
    with pytest.raises(RewardError, match="log-reward function failed on object .*ZeroDivisionError: "
                                          "no score for items 1 and 3") as info:
        env.log_reward(torch.tensor([[1, 1, 0, 0], [0, 1, 0, 1], [1, 0, 1, 0]]))
    assert "[1, 3]" in str(info.value)  # the object, as its CSV row: items 1 and 3
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_a_failure_of_the_whole_batch_names_its_first_objects():
    def batch_only(objects):
        if len(objects) > 2:
            raise RuntimeError("batch too large")
        return torch.ones(len(objects))

    env = Hypergrid(ndim=2, height=4, reward_fn=batch_only)
    with pytest.raises(RewardError, match=r"on a batch of 4 object\(s\) \(first: \[0, 0\], \[0, 1\], \[0, 2\], "
                                          r"\.\.\.\): RuntimeError: batch too large"):
        env.log_reward(torch.tensor([[0, 0], [0, 1], [0, 2], [0, 3]]))


def test_a_reward_error_of_the_user_passes_unchanged():
    def strict(objects):
        raise RewardError("my own message")

    with pytest.raises(RewardError, match="^my own message$"):
        Hypergrid(ndim=2, height=4, reward_fn=strict).log_reward(torch.tensor([[0, 0]]))


@pytest.mark.parametrize("env", [
    Hypergrid(ndim=12, height=8),
    Sets(n_items=40, set_size=20),
    Sequence(max_length=20),
    DAG(nodes=7),
], ids=lambda e: e.name)
def test_only_too_many_states_skips_exact_evaluation(env):
    with pytest.raises(TooManyStates, match="too many"):
        env.enumerate_states()
    assert try_state_graph(env) is None


def test_too_many_states_found_by_search():
    env = Sets(n_items=6, set_size=3)
    env.max_enumerable_states = 10
    with pytest.raises(TooManyStates, match="more than 10 states"):
        super(Sets, env)._enumerate()
