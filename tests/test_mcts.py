"""MCTS as a sampler (#17): maximum-entropy search over the tree of construction paths counts an
object once per path, so its visits converge to the trajectory-level distribution R(x) x
paths(x) and not to the target R(x) (seed 003's bias); where every object has one path (a tree-
shaped space) the two coincide and the visits approach the target. Reward calls are counted."""

import math

import pytest
import torch

from gflownets.baselines import MCTSSampler
from gflownets.envs import Hypergrid, Sequence, Sets
from gflownets.envs.conditional import ConditionalEnv, Temperature
from gflownets.errors import ConfigError
from gflownets.evaluation import StateGraph
from gflownets.evaluation.metrics import distribution_metrics
from gflownets.policies import UniformPolicy


def l1(p: torch.Tensor, q: torch.Tensor) -> float:
    return distribution_metrics(p, q)["l1"]


def test_visits_converge_to_the_trajectory_level_distribution_not_the_target():
    """Sets of 1 to 3 of 4 items (s! orders for s items); beta small so that the target spreads
    over every size and the two distributions are 0.61 apart in L1."""
    env = Sets(n_items=4, set_size=3, min_size=1, beta=0.5)
    graph = StateGraph(env)
    biased = graph.trajectory_level_distribution()
    assert l1(biased, graph.target) > 0.55  # what the thresholds below separate
    sampler = MCTSSampler(env, epsilon=0.03)
    generator = torch.Generator().manual_seed(0)
    visited = torch.cat([sampler.step(generator) for _ in range(600)])
    assert sampler.n_nodes == 1 + 4 + 12 + 24  # every path is a node: no transposition
    visits = sampler.visit_distribution(graph)
    assert float(visits.sum()) == pytest.approx(1.0, abs=1e-12)
    assert l1(visits, biased) < 0.1, l1(visits, biased)
    assert l1(visits, graph.target) > 0.45, l1(visits, graph.target)
    sizes = graph.terminal_states.sum(dim=1)
    mass = lambda p: [float(p[sizes == s].sum()) for s in (1, 2, 3)]  # noqa: E731
    assert mass(visits)[2] > 1.6 * mass(graph.target)[2] and mass(visits)[0] < mass(graph.target)[0] / 2
    # the objects the simulations finished follow the visits (they are the same walks)
    assert l1(graph.empirical_distribution(visited), visits) < 0.02
    # the soft value of the root is exactly log sum over paths of R, and the Boltzmann policy of
    # the values (no exploration) is the trajectory-level distribution, once every edge is known
    exact = float(torch.logsumexp(graph.log_rewards + graph.path_counts().log(), dim=0))
    assert sampler.tree[()].soft_value(1.0) == pytest.approx(exact, rel=1e-9)
    assert l1(sampler.policy_distribution(graph), biased) < 0.01


def test_visits_approach_the_target_where_every_object_has_one_path():
    """Append-only sequences of 1 to 3 letters: a tree, so trajectory level and target agree."""
    env = Sequence(alphabet="AB", max_length=3, min_length=1)
    graph = StateGraph(env)
    assert (graph.path_counts() == 1).all()
    uniform = graph.terminal_distribution(UniformPolicy(env))
    assert l1(uniform, graph.target) > 0.5
    sampler = MCTSSampler(env, epsilon=0.03)
    generator = torch.Generator().manual_seed(0)
    for _ in range(400):
        sampler.step(generator)
    assert l1(sampler.visit_distribution(graph), graph.target) < 0.08
    assert l1(sampler.policy_distribution(graph), graph.target) < 0.01


def test_a_lower_temperature_sharpens_the_soft_values():
    """tau = 1/2: the soft values are tau log sum over paths of R^(1/tau), and the Boltzmann
    policy draws objects in proportion to R(x)^2 x paths(x)."""
    env = Sets(n_items=4, set_size=3, min_size=1, beta=0.5)
    graph = StateGraph(env)
    sampler = MCTSSampler(env, temperature=0.5)
    generator = torch.Generator().manual_seed(1)
    for _ in range(300):
        sampler.step(generator)
    log_weights = 2 * graph.log_rewards + graph.path_counts().log()
    assert sampler.tree[()].soft_value(0.5) == pytest.approx(0.5 * float(torch.logsumexp(log_weights, 0)), rel=1e-9)
    sharpened = (log_weights - torch.logsumexp(log_weights, 0)).exp()
    assert l1(sampler.policy_distribution(graph), sharpened) < 0.01


def test_reward_calls_objects_and_determinism():
    env = Sets(n_items=5, set_size=3, min_size=2)
    graph = StateGraph(env)
    sampler = MCTSSampler(env, simulations=5)
    # before any step, the tree is empty and its sampler is the uniform policy
    assert torch.allclose(sampler.visit_distribution(graph), graph.terminal_distribution(UniformPolicy(env)))
    runs = []
    for _ in range(2):
        sampler = MCTSSampler(env, simulations=5)
        generator = torch.Generator().manual_seed(3)
        runs.append(torch.cat([sampler.step(generator) for _ in range(30)]))
        assert sampler.reward_calls == 150
    assert torch.equal(runs[0], runs[1]) and runs[0].shape == (150, 5)
    assert (graph.terminal_positions(runs[0]) >= 0).all()  # finished objects only
    assert sampler.n_nodes <= 150 and sampler.learned_distribution(graph).sum() == pytest.approx(1.0)
    visits = sum(node.visits.sum() for node in sampler.tree.values() if len(node.key) == 0)
    assert visits == 150  # every simulation goes through the root


@pytest.mark.parametrize("options,match", [
    (dict(simulations=0), "simulations"), (dict(simulations=2.5), "simulations"),
    (dict(simulations=True), "simulations"), (dict(temperature=0.0), "temperature"),
    (dict(temperature=math.nan), "temperature"), (dict(temperature=math.inf), "temperature"),
    (dict(epsilon=-0.1), "epsilon"), (dict(epsilon=math.nan), "epsilon"),
])
def test_bad_arguments(options, match):
    with pytest.raises(ConfigError, match=match):
        MCTSSampler(Sets(n_items=4, set_size=2), **options)


def test_refuses_conditional_environments_and_foreign_graphs():
    with pytest.raises(ConfigError, match="conditional"):
        MCTSSampler(ConditionalEnv(Hypergrid(ndim=2, height=4), Temperature(0.5, 4.0)))
    sampler = MCTSSampler(Sets(n_items=4, set_size=2))
    sampler.step(torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="state graph"):
        sampler.visit_distribution(StateGraph(Hypergrid(ndim=2, height=4)))
    with pytest.raises(ConfigError, match="state graph"):  # same shapes, other states
        sampler.visit_distribution(StateGraph(Sets(n_items=4, set_size=1)))
