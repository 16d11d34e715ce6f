"""Rewards scored by worker processes (`--reward-workers`) and remembered per object
(`--reward-cache`) are the single-process values bit for bit, in the batch's order; a timeout,
a worker that dies and an exception of the user's function are RewardErrors that say what
happened; a run trains the same with workers and a cache as without, and leaves no worker
behind. Starting a worker costs seconds (it imports torch): the tests share one pool."""

import json
import multiprocessing
import os
import signal
import time

import pytest
import torch

from cli_helpers import run_cli
from gflownets.envs import Hypergrid
from gflownets.errors import ConfigError, RewardError
from gflownets.reward_pool import CachedReward, RewardPool, serve_reward
from gflownets.training import RunConfig, load_checkpoint_file
from plugins.user_code import TRAP_EXITS, TRAP_HANGS, TRAP_RAISES, squares, trap

SPEC = "plugins.user_code:squares"
#: every object of Hypergrid(ndim=2, height=8), and those on which `trap` behaves
GRID = torch.cartesian_prod(torch.arange(8), torch.arange(8))
SAFE = GRID[[tuple(row) not in (TRAP_EXITS, TRAP_HANGS, TRAP_RAISES) for row in GRID.tolist()]]


def children() -> set[int]:
    """Process ids of this process's live worker processes."""
    return {process.pid for process in multiprocessing.active_children()}


def grid(reward) -> Hypergrid:
    return Hypergrid(ndim=2, height=8, reward_fn=reward)


@pytest.fixture(scope="module")
def pool():
    with RewardPool(trap, workers=3) as pool:
        yield pool
    assert multiprocessing.active_children() == []


def test_workers_give_the_single_process_values_bit_for_bit_in_order(pool):
    objects = SAFE[torch.randperm(len(SAFE), generator=torch.Generator().manual_seed(0))[:10]]
    values = pool(objects)  # 10 objects in chunks of 4, 3 and 3
    assert values.dtype == torch.float64 and torch.equal(values, trap(objects))
    assert torch.equal(pool(objects[:2]), trap(objects[:2]))  # fewer objects than workers
    assert torch.equal(pool(GRID[:0]), trap(GRID[:0]))
    # through the environment, as training scores them
    assert torch.equal(grid(pool).log_reward(SAFE), grid(trap).log_reward(SAFE))


def test_an_error_in_a_worker_names_the_object_as_in_one_process(pool):
    batch = torch.cat([SAFE[:5], torch.tensor([TRAP_RAISES]), SAFE[5:9]])
    with pytest.raises(RewardError) as alone:
        grid(trap).log_reward(batch)
    with pytest.raises(RewardError) as served:
        grid(pool).log_reward(batch)
    assert str(served.value) == str(alone.value)
    assert "reward function failed on object [6, 7] (batch row 5): KeyError" in str(served.value)
    assert isinstance(served.value.__cause__, KeyError)


def test_a_batch_past_the_timeout_stops_the_workers_naming_the_option(pool, monkeypatch):
    pool(SAFE[:1])  # a started worker: what times out is the reward, not the start
    monkeypatch.setattr(pool, "timeout", 1.0)
    started = time.perf_counter()
    with pytest.raises(RewardError, match=r"more than 1 s for a batch of 2 objects .*raise --reward-timeout"):
        grid(pool).log_reward(torch.tensor([SAFE[0].tolist(), TRAP_HANGS]))
    assert time.perf_counter() - started < 10
    assert multiprocessing.active_children() == []  # the hung worker was killed
    monkeypatch.undo()  # (a new worker takes more than 1 s to start)
    assert torch.equal(pool(SAFE[:1]), trap(SAFE[:1]))  # and the next batch gets a new one


def test_a_worker_that_dies_is_an_error_and_the_next_batch_gets_new_workers(pool):
    with pytest.raises(RewardError, match=r"^a reward worker died \(exit code 3\) while scoring a batch of 2 objects "
                                          r"with plugins.user_code:trap \(first: \[\[0, 0\], \[0, 7\]\]\)"):
        grid(pool).log_reward(torch.tensor([[0, 0], TRAP_EXITS]))
    assert multiprocessing.active_children() == []
    assert torch.equal(pool(SAFE[:1]), trap(SAFE[:1]))
    # a worker killed between batches (out of memory, kill -9): the next batch says so
    (worker,) = multiprocessing.active_children()
    os.kill(worker.pid, signal.SIGKILL)
    with pytest.raises(RewardError, match=r"^a reward worker died \(killed by signal SIGKILL\)"):
        grid(pool).log_reward(SAFE[:2])
    assert multiprocessing.active_children() == []


def test_a_pool_needs_a_function_that_workers_can_load_and_is_recorded_as_it():
    with pytest.raises(ConfigError, match="by name .* or unpickle it; .*lambda"):
        RewardPool(lambda objects: objects.sum(dim=1), workers=2)
    assert RewardPool(SPEC, workers=2).name == SPEC  # starts no worker until called
    assert RunConfig().describing(grid(RewardPool(squares, workers=2))).reward == SPEC
    assert RunConfig().describing(grid(CachedReward(squares, 4))).reward == SPEC


def test_the_cache_scores_each_object_once_and_keeps_the_last_ones_used():
    calls = []

    def counted(objects):
        calls.append(objects.tolist())
        return squares(objects)

    cached = CachedReward(counted, size=4)
    batch = GRID[[0, 1, 2, 1, 0]]
    assert torch.equal(cached(batch), squares(batch))
    assert calls == [[[0, 0], [0, 1], [0, 2]]]  # each distinct object once
    assert torch.equal(cached(GRID[[2, 3, 4]]), squares(GRID[[2, 3, 4]]))
    assert calls[1:] == [[[0, 3], [0, 4]]]  # (0, 2) is remembered
    assert len(cached) == 4  # the bound: (0, 0), used least recently, is forgotten ...
    assert torch.equal(cached(GRID[[0]]), squares(GRID[[0]]))
    assert calls[2:] == [[[0, 0]]]  # ... and scored again
    assert (cached.hits, cached.misses) == (3, 6)


def test_served_rewards_go_through_the_cache_to_the_workers_until_released():
    env, before = grid(trap), children()
    release = serve_reward(env, workers=1, timeout=60, cache=100)
    served = env.reward_fn
    assert isinstance(served, CachedReward) and isinstance(served.function, RewardPool)
    first = env.log_reward(SAFE[:6])
    assert torch.equal(env.log_reward(SAFE[:8]), grid(trap).log_reward(SAFE[:8]))
    assert torch.equal(first, env.log_reward(SAFE[:6]))
    assert (served.misses, served.hits) == (8, 12)  # only the 2 new objects reached the worker
    release()
    assert env.reward_fn is trap and children() <= before


@pytest.mark.parametrize("options,match", [
    ({"reward_workers": -1, "reward": SPEC}, "reward_workers must be >= 0"),
    ({"reward_cache": -5, "reward": SPEC}, "reward_cache must be >= 0"),
    ({"reward_timeout": 0, "reward": SPEC}, "reward_timeout must be > 0"),
    ({"reward_workers": 2}, "reward_workers and reward_cache serve a reward function of yours"),
    ({"reward_cache": 10}, "reward_workers and reward_cache serve a reward function of yours"),
])
def test_the_config_refuses_invalid_reward_options(options, match):
    with pytest.raises(ConfigError, match=match):
        RunConfig(**options).validate()


def test_a_cli_run_with_workers_and_a_cache_trains_as_one_without(tmp_path, capsys):
    command = ["train", "hypergrid", "--ndim", 2, "--height", 4, "--reward", SPEC, "--iters", 20, "--batch-size", 8,
               "--hidden", 16, "--eval-every", 10, "--final-samples", 50, "--quiet"]
    assert run_cli(*command, "--out", tmp_path / "plain") == 0
    before = children()
    assert run_cli(*command, "--reward-workers", 2, "--reward-cache", 8, "--out", tmp_path / "pool") == 0
    assert children() <= before  # (the other tests' pool may be running)
    summaries = []
    for name in ("plain", "pool"):
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        summaries.append({k: v for k, v in summary.items() if "second" not in k})
    assert summaries[0] == summaries[1]
    policies = [load_checkpoint_file(tmp_path / name / "checkpoint.pt")["policy"] for name in ("plain", "pool")]
    assert all(torch.equal(policies[0][key], policies[1][key]) for key in policies[0])
    assert "reward_workers: 2" in (tmp_path / "pool" / "config.yaml").read_text()
    # how rewards are computed is no part of the experiment: a resume may change it
    assert run_cli("train", "hypergrid", "--resume", "--iters", 25, "--reward", SPEC, "--reward-workers", 0,
                   "--quiet", "--out", tmp_path / "pool") == 0
    assert json.loads((tmp_path / "pool" / "summary.json").read_text())["iterations"] == 25
    assert run_cli("train", "hypergrid", "--ndim", 2, "--reward-workers", 2, "--quiet", "--out", tmp_path / "x") == 1
    assert "reward_workers and reward_cache serve a reward function of yours" in capsys.readouterr().err
