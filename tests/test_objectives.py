"""Each objective is zero at the exact optimal flows and positive away from them."""

import pytest
import torch

from gflownets.evaluation import StateGraph, distribution_metrics, optimal_tabular_policy
from gflownets.objectives import OBJECTIVES, forward_looking_log_flow, get_objective, trajectory_terms
from gflownets.policies import MLPPolicy
from gflownets.policies.distributions import masked_log_softmax
from gflownets.sampling import Trajectories, sample_backward, sample_forward


def random_backward_policy(graph, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(graph.n_states, graph.env.n_actions - 1, generator=g, dtype=torch.float64)
    return masked_log_softmax(logits, graph.env.backward_mask(graph.states))


def batches(env, policy, generator):
    forward = sample_forward(env, policy, 64, generator, gamma=0.3)
    backward = sample_backward(env, policy, forward.terminal_states, generator)
    return Trajectories.cat([forward, backward])


def optimum_for(name, graph, policy):
    """The optimum in the parametrisation of objective `name`: forward-looking DB's flow head
    holds log F(s) - log R~(s) instead of log F(s)."""
    if name == "fldb":
        with torch.no_grad():
            policy.flow_table.copy_(forward_looking_log_flow(graph.env, graph.states, policy.flow_table))
    return policy


@pytest.mark.parametrize("backward", ["uniform", "random"])
@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_zero_at_optimal_flows_and_positive_when_perturbed(small_env, name, backward, generator):
    graph = StateGraph(small_env)
    if name in ("mdb",) and not graph.forward_mask[:, -1].all():
        pytest.skip("modified detailed balance needs every state to be terminal")
    log_pb = random_backward_policy(graph, 7) if backward == "random" else None
    policy = optimum_for(name, graph, optimal_tabular_policy(graph, log_pb))
    # the optimum samples the target exactly
    assert distribution_metrics(graph.terminal_distribution(policy), graph.target)["l1"] < 1e-12
    batch = batches(small_env, policy, generator)
    loss = get_objective(name, subtb_lambda=0.7)(policy, batch)
    assert float(loss.detach()) < 1e-20

    with torch.no_grad():
        policy.forward_table.add_(0.3 * torch.randn(policy.forward_table.shape, generator=generator,
                                                    dtype=torch.float64))
    assert float(get_objective(name)(policy, batch).detach()) > 1e-4


@pytest.mark.parametrize("name", ["tb", "db", "subtb"])
def test_wrong_log_z_is_penalised(small_env, name, generator):
    graph = StateGraph(small_env)
    policy = optimal_tabular_policy(graph)
    batch = batches(small_env, policy, generator)
    with torch.no_grad():
        policy.log_z.add_(0.5)
    assert float(get_objective(name)(policy, batch).detach()) > 1e-3


def test_trajectory_balance_by_hand(generator):
    """TB computed from the padded terms equals the textbook sum over one trajectory."""
    from gflownets.envs import Hypergrid
    env = Hypergrid(ndim=2, height=5)
    policy = MLPPolicy(env, hidden=16)
    batch = sample_forward(env, policy, 8, generator)
    i = int(batch.lengths.argmax())
    total = policy.log_z.clone()
    for t in range(int(batch.lengths[i])):
        s = batch.states[i, t:t + 1]
        a = int(batch.actions[i, t])
        out = policy(s)
        total = total + masked_log_softmax(out.forward_logits, env.forward_mask(s))[0, a]
        if a != env.exit_action:
            s_next = batch.states[i, t + 1:t + 2]
            total = total - masked_log_softmax(policy(s_next).backward_logits,
                                               env.backward_mask(s_next))[0, a]
    expected = (total - batch.log_rewards[i]).pow(2)
    single = Trajectories(batch.states[i:i + 1], batch.actions[i:i + 1], batch.lengths[i:i + 1],
                          batch.log_rewards[i:i + 1])
    assert torch.allclose(get_objective("tb")(policy, single), expected.float(), rtol=1e-5)


def test_subtb_with_small_lambda_approaches_db_and_terms_are_padded(generator):
    from gflownets.envs import Hypergrid
    env = Hypergrid(ndim=2, height=6)
    policy = MLPPolicy(env, hidden=32)
    batch = sample_forward(env, policy, 16, generator)
    terms = trajectory_terms(policy, batch)
    assert (terms.log_pf[~terms.valid] == 0).all() and (terms.log_pb[~terms.valid] == 0).all()
    assert torch.isfinite(terms.log_points).all()
    # exit steps carry no backward term
    last = batch.lengths - 1
    assert (terms.log_pb[torch.arange(len(batch)), last] == 0).all()


def test_no_nan_gradients_where_only_exit_is_allowed():
    """At the far corner every move is masked; at s0 every backward action is. Gradients stay finite."""
    from gflownets.envs import Hypergrid
    env = Hypergrid(ndim=2, height=3)
    policy = MLPPolicy(env, hidden=8)
    corner = torch.tensor([[0, 0], [0, 1], [1, 1], [1, 2], [2, 2], [-1, -1]])
    batch = Trajectories(corner[None], torch.tensor([[1, 0, 1, 0, 2, -1]]), torch.tensor([5]),
                         env.log_reward(torch.tensor([[2, 2]])))
    for name in OBJECTIVES:
        policy.zero_grad()
        loss = get_objective(name)(policy, batch)
        loss.backward()
        assert torch.isfinite(loss)
        assert all(torch.isfinite(p.grad).all() for p in policy.parameters() if p.grad is not None), name
