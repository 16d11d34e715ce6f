"""Checks every environment must pass, shared by the environment test files."""

import torch


def random_states(env, n, seed, stop=0.2):
    """Random reachable states: uniform random walks from s0, each step stopping with
    probability `stop` (and wherever no move is allowed)."""
    g = torch.Generator().manual_seed(seed)
    states = env.initial_states(n)
    for _ in range(env.max_steps - 1):
        mask = env.forward_mask(states)[:, :-1]
        going = mask.any(dim=1) & (torch.rand(n, generator=g) >= stop)
        if not going.any():
            break
        actions = torch.multinomial(mask[going].float(), 1, generator=g).squeeze(1)
        states = states.clone()
        states[going] = env.step(states[going], actions)
    return states


def assert_steps_are_inverse(env, states):
    """backward_step(step(s, a), a) == s for every allowed a, and step(backward_step(s, a), a) == s
    for every allowed backward a; masks agree on both sides of each edge."""
    rows, actions = env.forward_mask(states)[:, :-1].nonzero(as_tuple=True)
    children = env.step(states[rows], actions)
    assert env.backward_mask(children)[torch.arange(len(actions)), actions].all()
    assert torch.equal(env.backward_step(children, actions), states[rows])
    rows, actions = env.backward_mask(states).nonzero(as_tuple=True)
    parents = env.backward_step(states[rows], actions)
    assert env.forward_mask(parents)[torch.arange(len(actions)), actions].all()
    assert torch.equal(env.step(parents, actions), states[rows])
    return children
