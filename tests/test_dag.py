"""Structure learning (issue 4): the DAG environment's masks and closure, the BGe/BDe scores and
their deltas, modified detailed balance, structure metrics, training quality and the CLI."""

import csv
import itertools
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gflownets.cli import main
from gflownets.envs import DAG
from gflownets.envs.dag_data import erdos_renyi_dag, read_data_csv, sample_discrete, sample_linear_gaussian
from gflownets.envs.dag_scores import BDeScore, BGeScore, GraphPrior
from gflownets.errors import ConfigError, DataError
from gflownets.evaluation import StateGraph, distribution_metrics, optimal_tabular_policy
from gflownets.measures.structure import auroc, edge_marginals, expected_shd, shd
from gflownets.objectives import estimated_log_z, get_objective
from gflownets.policies import MLPPolicy
from gflownets.policies.distributions import masked_log_softmax
from gflownets.sampling import Trajectories, sample_backward, sample_forward
from gflownets.training import RunConfig, Trainer

from contracts import assert_steps_are_inverse, random_states


def reachability(adjacency: np.ndarray) -> np.ndarray:
    """Brute force: depth-first search from every node."""
    d = len(adjacency)
    reach = np.zeros((d, d), dtype=bool)
    for start in range(d):
        stack = list(np.nonzero(adjacency[start])[0])
        while stack:
            node = stack.pop()
            if not reach[start, node]:
                reach[start, node] = True
                stack.extend(np.nonzero(adjacency[node])[0])
    return reach


def is_acyclic(adjacency: np.ndarray) -> bool:
    return not reachability(adjacency).diagonal().any()


ENVS = {d: DAG(nodes=d) for d in (1, 2, 3, 4, 5, 6, 8)}


# ---------------------------------------------------------------------------- environment
def test_number_of_dags_enumerated():
    """OEIS A003024: labelled DAGs on 1..5 nodes."""
    assert [len(DAG(nodes=d).enumerate_states()) for d in range(1, 6)] == [1, 3, 25, 543, 29281]


@settings(max_examples=30, deadline=None)
@given(d=st.sampled_from([2, 3, 4, 5, 6, 8]), seed=st.integers(0, 2**31 - 1))
def test_mask_and_closure_equal_brute_force(d, seed):
    env = ENVS[d]
    states = random_states(env, 24, seed, stop=0.15)
    adjacency, closure = env.adjacency(states).numpy(), env.closure(states).numpy()
    mask = env.forward_mask(states).numpy()
    assert mask[:, -1].all()  # every graph is terminal
    for k in range(len(states)):
        a = adjacency[k]
        assert np.array_equal(closure[k].astype(bool), reachability(a))
        for i, j in itertools.product(range(d), repeat=2):
            with_edge = a.copy()
            with_edge[i, j] = 1
            allowed = i != j and a[i, j] == 0 and is_acyclic(with_edge)
            assert mask[k, i * d + j] == allowed, (a, i, j)
        assert np.array_equal(env.backward_mask(states[k:k + 1])[0].numpy(), a.flatten().astype(bool))


@settings(max_examples=25, deadline=None)
@given(d=st.sampled_from([3, 5, 8]), seed=st.integers(0, 2**31 - 1))
def test_step_and_backward_step_are_inverse(d, seed):
    env = ENVS[d]
    children = assert_steps_are_inverse(env, random_states(env, 32, seed, stop=0.15))
    # the incremental closure equals the one recomputed from the adjacency
    assert torch.equal(children, env.states_from_adjacency(env.adjacency(children)))


def test_every_sampled_graph_is_acyclic():
    env = DAG(nodes=8)
    policy = MLPPolicy(env, hidden=32)
    batch = sample_forward(env, policy, 256, torch.Generator().manual_seed(0), gamma=0.5)
    graphs = env.adjacency(batch.terminal_states).numpy()
    assert all(is_acyclic(a) for a in graphs)
    assert graphs.sum(axis=(1, 2)).max() > 10  # dense graphs were drawn too
    assert int(batch.lengths.max()) <= env.max_steps == 8 * 7 // 2 + 1


def test_max_parents():
    env = DAG(nodes=5, max_parents=2)
    states = random_states(env, 200, 3, stop=0.02)
    assert env.adjacency(states).sum(dim=1).max() == 2
    assert env.max_steps == 0 + 1 + 2 + 2 + 2 + 1
    full = env.forward_mask(states)[:, :-1].reshape(-1, 5, 5)
    parents = env.adjacency(states).sum(dim=1)
    assert not full[parents[:, None, :].expand(-1, 5, -1) >= 2].any()


def test_object_rows_round_trip_and_reject_cycles():
    env = DAG(nodes=4)
    states = random_states(env, 50, 1, stop=0.15)
    assert torch.equal(env.objects_from_rows(env.objects_to_rows(states)), states)
    assert env.object_columns[:3] == ["X0->X1", "X0->X2", "X0->X3"]
    cycle = np.zeros((1, 12), dtype=np.int64)
    cycle[0, env.object_columns.index("X0->X1")] = 1
    cycle[0, env.object_columns.index("X1->X0")] = 1
    with pytest.raises(DataError, match="cycle"):
        env.objects_from_rows(cycle)
    with pytest.raises(DataError, match="not 0 or 1"):
        env.objects_from_rows(np.full((1, 12), 2))


# ---------------------------------------------------------------------------- scores
def gaussian_data(d=5, n=100, seed=0):
    rng = np.random.default_rng(seed)
    graph = erdos_renyi_dag(d, d, rng)
    return graph, sample_linear_gaussian(graph, n, rng)[0]


@pytest.mark.parametrize("score,prior", [("bge", "uniform"), ("bge", "erdos_renyi"), ("bde", "uniform"),
                                         ("bde", "erdos_renyi")])
def test_delta_scores_equal_full_score_differences(score, prior):
    env = DAG(nodes=6, score=score, prior=prior, samples=60, arity=3)
    states = random_states(env, 40, 0, stop=0.3)
    rows, actions = env.forward_mask(states)[:, :-1].nonzero(as_tuple=True)
    children = env.step(states[rows], actions)
    delta = env.log_reward_change(states[rows], actions, children)
    full = env.log_reward(children) - env.log_reward(states[rows])
    assert len(delta) > 100
    assert torch.allclose(delta, full, rtol=0, atol=1e-9)


@pytest.mark.parametrize("score", ["bge", "bde"])
def test_dense_local_scores_equal_the_scores_computed_on_demand(score):
    """Up to 9 nodes every local score is one tensor and the reward traces into a compiled
    rollout; it must give the on-demand NumPy table's scores and delta scores exactly."""
    env = DAG(nodes=6, score=score, samples=60, arity=3)
    assert env.reward_compiles and env.local_scores.shape == (6, 64)
    states = random_states(env, 40, 1, stop=0.3)
    adjacency = env.adjacency(states)
    assert torch.allclose(env.log_reward(states), env.scorer.score(adjacency), rtol=0, atol=1e-9)
    rows, actions = env.forward_mask(states)[:, :-1].nonzero(as_tuple=True)
    on_demand = env.scorer.delta(adjacency[rows], actions // 6, actions % 6)
    assert torch.equal(env.log_reward_change(states[rows], actions, env.step(states[rows], actions)), on_demand)
    large = DAG(nodes=10, samples=20)
    assert large.local_scores is None and not large.reward_compiles


def test_bge_matches_the_normal_wishart_marginal_likelihood_and_is_score_equivalent():
    _, data = gaussian_data(d=4, n=50)
    score = BGeScore(data)
    assert score.t == pytest.approx(0.5) and score.alpha_w == 6
    complete = torch.triu(torch.ones(4, 4), diagonal=1)[None]
    assert float(score.score(complete)) == pytest.approx(score.joint_log_marginal(), abs=1e-9)
    # every complete DAG (one per node order) scores the same: they are Markov equivalent
    orders = [torch.tensor(p) for p in itertools.permutations(range(4))]
    graphs = torch.stack([complete[0][p][:, p] for p in orders])
    scores = score.score(graphs)
    assert torch.allclose(scores, scores[0].expand_as(scores), atol=1e-9)
    # a -> b -> c, a <- b <- c and a <- b -> c are equivalent; the collider a -> b <- c is not
    def graph(*edges):
        a = torch.zeros(1, 4, 4)
        for i, j in edges:
            a[0, i, j] = 1
        return a
    chain, back, fork, collider = (score.score(graph(*e)) for e in
                                   ([(0, 1), (1, 2)], [(1, 0), (2, 1)], [(1, 0), (1, 2)], [(0, 1), (2, 1)]))
    assert torch.allclose(chain, back) and torch.allclose(chain, fork)
    assert not torch.allclose(chain, collider)


def test_bge_prefers_the_true_graph_with_much_data():
    graph, data = gaussian_data(d=4, n=5000, seed=3)
    env = DAG(nodes=4, samples=5000, data_seed=3)
    env_graph = StateGraph(env)
    best = env.adjacency(env_graph.terminal_states[env_graph.target.argmax()][None])[0].numpy()
    # the best graph is in the true graph's equivalence class: same skeleton
    assert np.array_equal(best + best.T > 0, env.true_graph + env.true_graph.T > 0)


def test_bde_matches_pgmpy():
    pgmpy_bdeu = pytest.importorskip("pgmpy.structure_score", reason="pgmpy not installed: "
                                     "the BDeu comparison needs `pip install pgmpy`").BDeu
    import pandas as pd

    rng = np.random.default_rng(0)
    graph = erdos_renyi_dag(5, 6, rng)
    data = sample_discrete(graph, 200, rng, arity=3)
    ours = BDeScore(data, arities=[3] * 5, ess=2.0)
    frame = pd.DataFrame(data, columns=[f"X{i}" for i in range(5)])
    theirs = pgmpy_bdeu(frame, equivalent_sample_size=2.0, state_names={c: [0, 1, 2] for c in frame})
    for node in range(5):
        others = [i for i in range(5) if i != node]
        for k in range(3):
            for parents in itertools.combinations(others, k):
                expected = theirs.local_score(f"X{node}", tuple(f"X{p}" for p in parents))
                assert ours.local(node, list(parents)) == pytest.approx(float(expected), abs=1e-8)


def test_graph_prior_and_config_errors():
    prior = GraphPrior("erdos_renyi", 5, 5.0)
    p = 0.5
    assert float(prior.log_prob(torch.tensor([3]))[0]) == pytest.approx(10 * np.log(p))
    with pytest.raises(ConfigError):
        GraphPrior("erdos_renyi", 3, 3.0)  # p = 1
    for bad in ({"score": "bic"}, {"nodes": 0}, {"prior": "flat"}, {"data": "/no/such.csv"}, {"arity": 1}):
        with pytest.raises(ConfigError):
            DAG(**bad)


def test_data_csv(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b,c\n1.0,2.5,-1\n0.5,0.1,3\n0.2,0.3,0.4\n")
    env = DAG(data=str(path))
    assert env.d == 3 and env.names == ["a", "b", "c"] and env.true_graph is None
    assert env.object_columns[0] == "a->b"
    labels = tmp_path / "labels.csv"
    labels.write_text("rain,wet\nyes,y\nno,n\nyes,y\n")
    discrete = DAG(data=str(labels), score="bde")
    assert discrete.data.tolist() == [[1, 1], [0, 0], [1, 1]]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,x\n")
    with pytest.raises(DataError, match="row 1, column b"):
        read_data_csv(bad, discrete=False)


# ---------------------------------------------------------------------------- metrics
def test_structure_metrics_by_hand():
    true = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    graphs = torch.from_numpy(np.stack([true, true.T, np.zeros((3, 3), dtype=int)]))
    assert shd(graphs, true).tolist() == [0, 2, 2]
    assert expected_shd(graphs, true, torch.tensor([0.5, 0.25, 0.25])) == pytest.approx(1.0)
    marginals = edge_marginals(graphs, torch.tensor([0.5, 0.25, 0.25]))
    assert marginals[0, 1] == pytest.approx(0.5) and marginals[1, 0] == pytest.approx(0.25)
    assert auroc(true.astype(float), true) == 1.0
    assert auroc(true.T.astype(float), true) == pytest.approx(0.25)  # 2 positives at 0, 2 of 4 negatives at 1
    assert auroc(np.zeros((3, 3)), true) == 0.5
    assert auroc(np.zeros((3, 3)), np.zeros((3, 3))) is None


# ---------------------------------------------------------------------------- modified DB
def small_batch(env, policy, seed):
    g = torch.Generator().manual_seed(seed)
    forward = sample_forward(env, policy, 64, g, gamma=0.3)
    return Trajectories.cat([forward, sample_backward(env, policy, forward.terminal_states, g)])


@pytest.mark.parametrize("backward", ["uniform", "random"])
def test_modified_db_is_zero_at_the_optimum_and_positive_when_perturbed(backward):
    env = DAG(nodes=3, samples=30)
    graph = StateGraph(env)
    log_pb = None
    if backward == "random":
        logits = torch.randn(graph.n_states, env.n_actions - 1, generator=torch.Generator().manual_seed(7),
                             dtype=torch.float64)
        log_pb = masked_log_softmax(logits, env.backward_mask(graph.states))
    policy = optimal_tabular_policy(graph, log_pb)
    assert distribution_metrics(graph.terminal_distribution(policy), graph.target)["l1"] < 1e-12
    batch = small_batch(env, policy, 0)
    assert float(get_objective("mdb")(policy, batch).detach()) < 1e-20
    target = optimal_tabular_policy(graph, log_pb)
    assert float(get_objective("mdb", target=target)(policy, batch).detach()) < 1e-20
    assert estimated_log_z(policy, "mdb") == pytest.approx(float(graph.log_z), abs=1e-9)

    with torch.no_grad():
        policy.forward_table.add_(0.3 * torch.randn(policy.forward_table.shape,
                                                    generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    assert float(get_objective("mdb")(policy, batch).detach()) > 1e-4
    # with a target network, no gradient flows into the target side
    loss = get_objective("mdb", target=target)(policy, batch)
    loss.backward()
    assert target.forward_table.grad is None and policy.forward_table.grad.abs().sum() > 0


def test_modified_db_refuses_environments_with_non_terminal_states():
    from gflownets.envs import Sets
    env = Sets(n_items=4, set_size=2)
    policy = MLPPolicy(env, hidden=8)
    with pytest.raises(ConfigError, match="terminal"):
        get_objective("mdb")(policy, sample_forward(env, policy, 4))
    with pytest.raises(ConfigError, match="terminal"):
        get_objective("mdb").check_env(env)


# ---------------------------------------------------------------------------- training
def test_dag_gflownet_learns_the_exact_posterior_on_4_nodes():
    """A light version of bench/dag.py (d = 5 there): the exact JSD after a short run."""
    torch.set_num_threads(1)
    settings = {**DAG.run_defaults, "iters": 1500, "eval_every": 0, "hidden": 128}
    config = RunConfig(env="dag", env_args={"nodes": 4, "samples": 100}, **settings)
    summary = Trainer(config, progress=False).run()
    assert summary["jsd"] < 0.02, summary
    assert summary["edge_marginal_mae"] < 0.02
    assert summary["log_z"] == pytest.approx(summary["log_z_true"], abs=0.5)
    for key in ("expected_shd", "auroc", "expected_shd_posterior", "auroc_posterior"):
        assert key in summary


def test_resume_with_target_network_equals_uninterrupted_run(tmp_path):
    settings = {**DAG.run_defaults, "iters": 40, "eval_every": 0, "hidden": 16, "checkpoint_every": 20,
                "replay_batch": 8, "batch_size": 8}
    config = RunConfig(env="dag", env_args={"nodes": 3}, **settings)
    straight = Trainer(config, tmp_path / "a", progress=False).run()
    half = RunConfig(**{**config.to_dict(), "iters": 20})
    Trainer(half, tmp_path / "b", progress=False).run()
    resumed = Trainer(config, tmp_path / "b", progress=False, resume=True).run()
    assert resumed["jsd"] == straight["jsd"] and resumed["log_z"] == straight["log_z"]


def test_cli_train_dag(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "dag", "--nodes", "4", "--samples", "50", "--score", "bge", "--seed", "0",
                 "--iters", "60", "--hidden", "32", "--final-samples", "500", "--quiet", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in ("jsd", "edge_marginal_mae", "expected_shd", "auroc", "expected_shd_samples", "auroc_samples"):
        assert key in summary, key
    assert summary["objective"] == "mdb"  # the environment's run defaults
    assert (out / "plots" / "edge_marginals.png").stat().st_size > 1000

    # a config file overrides the environment's run defaults only where it says so
    config = tmp_path / "run.yaml"
    config.write_text("iters: 5\nhidden: 8\nenv_args:\n  nodes: 3\n")
    assert main(["train", "dag", "--config", str(config), "--quiet", "--out", str(tmp_path / "cfg")]) == 0
    summary = json.loads((tmp_path / "cfg" / "summary.json").read_text())
    assert summary["objective"] == "mdb" and summary["iterations"] == 5

    # user data: a CSV with a header of node names, discrete labels scored with BDe
    data = tmp_path / "data.csv"
    rng = np.random.default_rng(0)
    values = sample_discrete(erdos_renyi_dag(3, 2, rng), 80, rng)
    with open(data, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["smoke", "cancer", "xray"])
        writer.writerows(values.tolist())
    out = tmp_path / "user"
    assert main(["train", "dag", "--data", str(data), "--score", "bde", "--iters", "30", "--hidden", "16",
                 "--quiet", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "jsd" in summary and "edge_marginal_mae" in summary and "expected_shd" not in summary
