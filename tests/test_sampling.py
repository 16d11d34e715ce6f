"""Samplers against exact distributions: forward rollouts, backward walks, exploration."""

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from gflownets.envs import BitSeq, Hypergrid, Sets
from gflownets.evaluation import StateGraph
from gflownets.policies import MLPPolicy, exploration_probs, sample_categorical
from gflownets.sampling import PAD, sample_backward, sample_forward


def assert_matches(expected: torch.Tensor, counts: torch.Tensor):
    """Chi-square goodness of fit (seeded, so not flaky) plus a per-object 5-sigma band. Objects
    expected fewer than 5 times are pooled into one cell, as the chi-square approximation needs:
    otherwise one extra draw of an object expected 0.1 times adds 8 to the statistic."""
    n = counts.sum()
    expected_counts = expected.numpy() * float(n)
    rare = expected_counts < 5
    observed, wanted = counts.numpy()[~rare], expected_counts[~rare]
    if rare.any():
        observed = np.append(observed, counts.numpy()[rare].sum())
        wanted = np.append(wanted, expected_counts[rare].sum())
    assert chisquare(observed, wanted).pvalue > 1e-4
    sigma = np.sqrt(expected_counts * (1 - expected.numpy()))
    assert (np.abs(counts.numpy() - expected_counts) <= 5 * sigma + 1).all()


@pytest.mark.parametrize("env", [Hypergrid(ndim=2, height=6), Hypergrid(ndim=3, height=3),
                                 Sets(n_items=6, set_size=3)], ids=lambda e: e.name)
def test_exact_distribution_equals_empirical_of_1e5_samples(env):
    torch.manual_seed(3)
    policy = MLPPolicy(env, hidden=32)
    with torch.no_grad():  # a peaked, far-from-uniform policy
        for p in policy.parameters():
            p.mul_(4)
    graph = StateGraph(env)
    exact = graph.terminal_distribution(policy)
    assert abs(float(exact.sum()) - 1) < 1e-12
    objects = sample_forward(env, policy, 100_000, torch.Generator().manual_seed(0)).terminal_states
    counts = torch.bincount(graph.terminal_positions(objects), minlength=len(exact))
    assert_matches(exact, counts)


def test_trajectories_are_consistent_and_padded(generator):
    env = Hypergrid(ndim=3, height=4)
    batch = sample_forward(env, MLPPolicy(env, hidden=16), 200, generator, gamma=0.5)
    assert (batch.states[:, 0] == 0).all()
    for i in range(len(batch)):
        n = int(batch.lengths[i])
        assert batch.actions[i, n - 1] == env.exit_action
        assert (batch.actions[i, n:] == PAD).all() and (batch.states[i, n:] == PAD).all()
        if n > 1:
            moved = env.step(batch.states[i, :n - 1], batch.actions[i, :n - 1])
            assert torch.equal(moved, batch.states[i, 1:n])
    assert torch.equal(batch.log_rewards, env.log_reward(batch.terminal_states))


def test_rollouts_from_given_states_complete_them(generator):
    """Local search's completion step: partial trajectories that begin at the given states and
    end in objects reachable from them (hypergrid: no coordinate decreases)."""
    env = Hypergrid(ndim=3, height=5)
    policy = MLPPolicy(env, hidden=16)
    starts = torch.randint(0, 5, (300, 3), generator=generator)
    batch = sample_forward(env, policy, 300, generator, gamma=0.3, start=starts)
    assert torch.equal(batch.states[:, 0], starts)
    assert (batch.terminal_states >= starts).all()
    assert (batch.actions[torch.arange(300), batch.lengths - 1] == env.exit_action).all()
    assert torch.equal(batch.log_rewards, env.log_reward(batch.terminal_states))
    corner = torch.full((4, 3), 4)  # only exit is allowed there: zero moves
    assert (sample_forward(env, policy, 4, generator, start=corner).lengths == 1).all()


@pytest.mark.parametrize("env", [Hypergrid(ndim=2, height=5), Sets(n_items=5, set_size=3)], ids=lambda e: e.name)
def test_backward_walks_end_in_the_objects_and_start_at_s0(env, generator):
    policy = MLPPolicy(env, hidden=16)
    objects = sample_forward(env, policy, 300, generator, gamma=1.0).terminal_states
    batch = sample_backward(env, policy, objects, generator)
    assert torch.equal(batch.terminal_states, objects)
    assert env.is_initial(batch.states[:, 0]).all()
    for i in range(len(batch)):
        n = int(batch.lengths[i])
        assert batch.actions[i, n - 1] == env.exit_action
        if n > 1:
            assert torch.equal(env.step(batch.states[i, :n - 1], batch.actions[i, :n - 1]), batch.states[i, 1:n])


def test_backward_walks_skip_the_network_where_a_state_has_one_parent():
    """Append-only sequences: every state has one parent, so the walk takes it without the
    network, with the same trajectories and random stream as when the network is asked; where
    states have several parents (prepending), the learned P_B is asked."""
    append_only, prepending = (BitSeq(length=12, token_bits=3, num_modes=4, prepend=prepend) for prepend in (False, True))
    for env, asks in ((append_only, False), (prepending, True)):
        policy = MLPPolicy(env, hidden=8)
        objects = env.test_set(50)
        calls = []
        hook = policy.register_forward_hook(lambda *args: calls.append(1))
        walked_gen, uniform_gen = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        walked = sample_backward(env, policy, objects, walked_gen)
        hook.remove()
        assert bool(calls) == asks
        if not asks:  # the uniform P_B picks the only parent too: identical walks and streams
            uniform = sample_backward(env, MLPPolicy(env, hidden=8, backward="uniform"), objects, uniform_gen)
            assert torch.equal(walked.actions, uniform.actions) and torch.equal(walked.states, uniform.states)
            assert torch.equal(walked_gen.get_state(), uniform_gen.get_state())


def test_backward_walk_samples_p_b_not_argmax():
    """From (2, 2), the uniform P_B walks every one of the 6 monotone paths equally often
    (the tutorial's argmax would always take the same one)."""
    env = Hypergrid(ndim=2, height=3)
    policy = MLPPolicy(env, hidden=8, backward="uniform")
    objects = torch.tensor([[2, 2]]).repeat(6000, 1)
    batch = sample_backward(env, policy, objects, torch.Generator().manual_seed(0))
    paths, counts = torch.unique(batch.actions, dim=0, return_counts=True)
    assert len(paths) == 6
    # P(path) = product of uniform P_B choices: paths through an edge of the grid are likelier
    probs = {}
    for path in paths.tolist():
        s, p = torch.tensor([[2, 2]]), 1.0
        for a in reversed(path[:-1]):
            p /= int(env.backward_mask(s).sum())
            s = env.backward_step(s, torch.tensor([a]))
        probs[tuple(path)] = p
    expected = torch.tensor([probs[tuple(p)] for p in paths.tolist()], dtype=torch.float64)
    assert abs(float(expected.sum()) - 1) < 1e-12
    assert_matches(expected, counts)


def test_exploration_mixture_and_sampler():
    logits = torch.tensor([[5.0, 0.0, -3.0, 1.0]])
    mask = torch.tensor([[True, True, False, True]])
    probs = exploration_probs(logits, mask, gamma=0.4, temperature=2.0)
    policy = torch.softmax(torch.tensor([2.5, 0.0, 0.5]), 0)
    expected = 0.6 * policy + 0.4 / 3
    assert torch.allclose(probs[0, [0, 1, 3]], expected)
    assert probs[0, 2] == 0
    draws = sample_categorical(probs.expand(200_000, 4), torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=4)
    assert counts[2] == 0
    assert_matches(expected.double(), counts[[0, 1, 3]])
    # gamma = 1 is uniform over allowed actions whatever the logits
    assert torch.allclose(exploration_probs(logits, mask, gamma=1.0)[0], torch.tensor([1 / 3, 1 / 3, 0, 1 / 3]))
