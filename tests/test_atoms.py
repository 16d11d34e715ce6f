"""Molecules atom by atom (issue 19): the `atoms` environment (valence masks, exact inverse steps,
parents enumerated once, every molecule sanitises in RDKit) and the message-passing `graph`
policy (shapes, chunking, training to a small exact L1, the CLI)."""

import json
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_helpers import one_error_line, run_cli
from contracts import assert_steps_are_inverse, random_states
from gflownets.chemistry.molecules import parse_smiles
from gflownets.envs import ENVIRONMENTS
from gflownets.envs.atoms import VALENCES, Atoms
from gflownets.errors import ConfigError, DataError
from gflownets.evaluation import StateGraph, distribution_metrics, optimal_tabular_policy
from gflownets.policies import UniformPolicy
from gflownets.policies.graph import GraphPolicy
from gflownets.sampling import sample_forward
from gflownets.training import RunConfig, Trainer

pytest.importorskip("rdkit.Chem")

#: configurations the property tests draw from: fixed and empty starts, every element, single
#: bonds only, a minimum size, and one atom (no pairs at all)
CONFIGS = {
    "default": dict(),
    "CO-any": dict(elements="C,O", max_atoms=5, start="any"),
    "all-elements": dict(elements=",".join(VALENCES), max_atoms=7, start="N", min_atoms=3),
    "single-bonds": dict(elements="C,N", max_atoms=6, max_bond=1),
    "one-atom": dict(elements="C,F", max_atoms=1),
    "halogens": dict(elements="C,F,Cl", max_atoms=6, start="any", min_atoms=4),
}
ENVS = {name: Atoms(**kw, score="mw(0,1000)") for name, kw in CONFIGS.items()}  # a cheap score


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


# ---------------------------------------------------------------------- brute force, independent of the env
def decode(env, row):
    """(elements, bond-order matrix) of one state row, in plain Python."""
    N = env.max_atoms
    nodes = [int(x) for x in row[:N]]
    orders = np.zeros((N, N), dtype=int)
    for p, (i, j) in enumerate(zip(env.pair_i.tolist(), env.pair_j.tolist())):
        orders[i, j] = orders[j, i] = int(row[N + p])
    return nodes, orders


def is_state(env, row) -> bool:
    """Whether a row is a state of `env`: atoms fill a prefix of the slots (one at least unless
    s0 is empty), atom 0 is the start element, orders in [0, max_bond] only between atoms,
    valences respected, and each atom k >= 1 bonded to an atom of smaller index."""
    nodes, orders = decode(env, row)
    n = sum(x >= 0 for x in nodes)
    if any(x < -1 or x >= env.n_elements for x in nodes) or any(x >= 0 for x in nodes[n:]):
        return False
    if (orders < 0).any() or (orders > env.max_bond).any() or orders[n:].any():
        return False
    if env.start_element is not None and (n == 0 or nodes[0] != env.start_element):
        return False
    valence = [VALENCES[env.elements[x]] for x in nodes[:n]]
    if any(orders[k].sum() > valence[k] for k in range(n)):
        return False
    return all(orders[k, :k].any() for k in range(1, n))


def brute_forward_mask(env, row) -> np.ndarray:
    """The forward mask from its definition: an atom on any atom with a free valence while a slot
    is left, a bond between two atoms with free valences below max_bond, the first atom of an empty
    graph, exit at min_atoms or where nothing else is allowed."""
    N, T = env.max_atoms, env.n_elements
    nodes, orders = decode(env, row)
    n = sum(x >= 0 for x in nodes)
    free = [VALENCES[env.elements[nodes[k]]] - orders[k].sum() if k < n else 0 for k in range(N)]
    mask = np.zeros(env.n_actions, dtype=bool)
    for i in range(N):
        for t in range(T):
            mask[i * T + t] = i < n and n < N and free[i] >= 1
    for p, (i, j) in enumerate(zip(env.pair_i.tolist(), env.pair_j.tolist())):
        mask[N * T + p] = j < n and free[i] >= 1 and free[j] >= 1 and orders[i, j] < env.max_bond
    if env.n_first:
        mask[N * T + env.n_pairs:-1] = n == 0
    mask[-1] = n >= 1 and (n >= env.min_atoms or not mask[:-1].any())
    return mask


# ---------------------------------------------------------------------- environment
def test_registered_and_s0():
    assert ENVIRONMENTS["atoms"] is Atoms
    env = ENVS["default"]
    assert env.elements == ["C", "N", "O", "F", "S", "Cl"] and env.max_atoms == 9
    assert env.smiles(env.initial_states(1)) == ["C"]
    empty = ENVS["CO-any"].initial_states(1)
    assert (empty[0, :5] == -1).all() and (empty[0, 5:] == 0).all()
    assert not ENVS["CO-any"].forward_mask(empty)[0, -1]  # an empty graph is no molecule


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(sorted(CONFIGS)), seed=st.integers(0, 2**31 - 1), stop=st.sampled_from([0.02, 0.1, 0.3]))
def test_masks_respect_valence_on_random_states(name, seed, stop):
    env = ENVS[name]
    states = random_states(env, 24, seed, stop=stop)
    forward = env.forward_mask(states).numpy()
    for row, mask in zip(states.numpy(), forward):
        assert is_state(env, row), row
        assert np.array_equal(mask, brute_forward_mask(env, row)), row
    rows, actions = env.forward_mask(states)[:, :-1].nonzero(as_tuple=True)
    children = env.step(states[rows], actions)
    assert all(is_state(env, row) for row in children.numpy())


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(sorted(CONFIGS)), seed=st.integers(0, 2**31 - 1), stop=st.sampled_from([0.02, 0.1, 0.3]))
def test_step_and_backward_step_are_inverse_and_parents_are_exact(name, seed, stop):
    """Both directions invert each other on random graphs; and a backward action is allowed
    exactly where undoing it mechanically gives a state from which that forward action leads
    back (brute force over every backward action of every state)."""
    env = ENVS[name]
    states = random_states(env, 24, seed, stop=stop)
    assert_steps_are_inverse(env, states)
    backward = env.backward_mask(states)
    n_back = env.n_actions - 1
    rows = torch.arange(len(states)).repeat_interleave(n_back)
    actions = torch.arange(n_back).repeat(len(states))
    candidates = env._backward_step(states[rows], actions)
    for k, (candidate, action) in enumerate(zip(candidates.numpy(), actions.tolist())):
        state = states[rows[k]]
        parent = is_state(env, candidate) and brute_forward_mask(env, candidate)[action] \
            and torch.equal(env._step(torch.as_tensor(candidate)[None], torch.tensor([action]))[0], state)
        assert bool(backward[rows[k], action]) == bool(parent), (state.tolist(), action)
    assert (backward.any(dim=1) == (env.n_atoms(states) > (1 if env.start_element is not None else 0))).all()


@pytest.mark.parametrize("kw", [dict(elements="C,O", max_atoms=4), dict(elements="C,N,O", max_atoms=4, start="any"),
                                dict(elements="C,F", max_atoms=5, max_bond=2)])
def test_backward_mask_enumerates_each_parent_once_on_enumerated_instances(kw):
    """Over every state of tiny instances: each edge parent -> child appears once, the backward
    mask is exactly the set of forward actions into each state, every state but s0 has a parent,
    and the exact optimal sampler reaches the target (the state graph is consistent)."""
    env = Atoms(**kw, score="mw(0,1000)")
    states = env.enumerate_states()
    keys = {tuple(row): i for i, row in enumerate(states.tolist())}
    assert len(keys) == len(states)
    parents, actions = env.forward_mask(states)[:, :-1].nonzero(as_tuple=True)
    children = [keys[tuple(row)] for row in env.step(states[parents], actions).tolist()]
    edges = Counter(zip(children, actions.tolist()))
    assert max(edges.values()) == 1
    assert max(Counter(zip(children, parents.tolist())).values()) == 1  # no two actions between two states
    brute = torch.zeros(len(states), env.n_actions - 1, dtype=torch.bool)
    for child, action in edges:
        brute[child, action] = True
    assert torch.equal(env.backward_mask(states), brute)
    assert set(brute.any(dim=1).logical_not().nonzero().flatten().tolist()) == {0}
    graph = StateGraph(env)
    exact = graph.terminal_distribution(optimal_tabular_policy(graph))
    assert distribution_metrics(exact, graph.target)["l1"] < 1e-9


def test_state_counts_and_enumeration_refusal():
    assert len(Atoms(elements="C,O", max_atoms=3).enumerate_states()) == 57
    assert len(Atoms(elements="C,O", max_atoms=4).enumerate_states()) == 722
    env = Atoms()  # refused from the edge count, before the large levels are built
    config = RunConfig(env="atoms", iters=0, eval_every=0)
    trainer = Trainer(config, progress=False)
    assert trainer.graph is None and env.max_enumerable_states == 500_000


def test_every_uniformly_sampled_molecule_sanitises():
    """4000 uniform rollouts of the default environment: every finished molecule, and every
    intermediate state, is a molecule RDKit sanitises and re-reads from its SMILES."""
    env = Atoms()
    trajectories = sample_forward(env, UniformPolicy(env), 4000, torch.Generator().manual_seed(0))
    objects = trajectories.terminal_states
    smiles = env.smiles(objects)
    assert all(m is not None for m in parse_smiles([s or "" for s in smiles]))
    assert len(set(smiles)) > 2000  # uniform rollouts rarely repeat a 9-atom molecule
    visited = trajectories.states[trajectories.valid][::7]
    assert all(m is not None for m in parse_smiles([s or "" for s in env.smiles(visited)]))
    log_r = env.log_reward(objects)
    assert torch.isfinite(log_r).all() and (log_r > np.log(1e-40)).all()  # no molecule hit the floor
    metrics = env.sample_metrics(objects, log_r)
    assert metrics["molecule_validity"] == 1.0 and metrics["molecule_uniqueness"] > 0.5
    assert 0 < metrics["top100_tanimoto_diversity"] <= 1 and metrics["molecule_modes"] >= 0


def test_reward_is_qed_of_the_molecule_and_cached():
    from rdkit import Chem
    from rdkit.Chem import QED

    env = Atoms(elements="C,O", max_atoms=3)
    # C0, O1 bonded to 0 by a double bond, O2 bonded to 0 by a single one: formic acid
    state = torch.tensor([[0, 1, 1, 2, 1, 0]])
    assert env.smiles(state) == ["O=CO"]
    expected = 16 * np.log(QED.qed(Chem.MolFromSmiles("O=CO")))
    assert float(env.log_reward(state)[0]) == pytest.approx(expected, abs=1e-12)
    assert "O=CO" in env._score_cache
    # caches far smaller than a batch: the same rewards (each batch's scores survive evictions)
    objects = random_states(ENVS["default"], 64, 3, stop=0.1)
    small = Atoms(score="mw(0,1000)")
    small._smiles_cache.size = small._score_cache.size = 3
    assert torch.equal(small.log_reward(objects), ENVS["default"].log_reward(objects))
    assert len(small._score_cache.data) == 3


def test_objects_round_trip_and_bad_rows_are_named():
    env = ENVS["all-elements"]
    objects = random_states(env, 32, 0, stop=0.1)
    rows = env.objects_to_rows(objects)
    assert torch.equal(env.objects_from_rows(rows), objects)
    assert env.object_columns[:2] == ["atom0", "atom1"] and env.object_columns[env.max_atoms] == "bond0_1"
    good = env.objects_to_rows(env.initial_states(1))[0]
    N = env.max_atoms

    def bad(change, words):
        row = good.copy()
        change(row)
        with pytest.raises(DataError, match=words):
            env.objects_from_rows(np.stack([good, row]))

    bad(lambda r: r.__setitem__(1, 99), "row 2: atom value 99")
    bad(lambda r: r.__setitem__(2, 0), "row 2: atoms must fill slots")
    bad(lambda r: r.__setitem__(0, 0), "row 2: atom0 must be the start element N")
    bad(lambda r: r.__setitem__(N, 1), "row 2: a bond joins an empty atom slot")
    bad(lambda r: r.__setitem__(N, 4), r"row 2: bond order 4 is outside \[0, 3\]")
    fluorine = env.elements.index("F")

    def overfull(r):  # N-F with a double bond: fluorine's valence is 1
        r[1] = fluorine
        r[N] = 2
    bad(overfull, r"row 2: atom1 \(F\) exceeds its valence")

    def orphan(r):  # atoms 0, 1, 2 with only the bond 0-1... and atom 2 bonded to nothing earlier
        r[1], r[2] = 0, 0
        r[N] = 1
    bad(orphan, "row 2: atom2 has no bond to an atom of smaller index")
    with pytest.raises(DataError, match="columns"):
        env.objects_from_rows(good[None, :-1])


@pytest.mark.parametrize("kw", [dict(elements="C,Q"), dict(elements="C,C"), dict(elements=""),
                                dict(max_atoms=0), dict(max_atoms=41), dict(min_atoms=10),
                                dict(start="Br"), dict(max_bond=0), dict(score="nope"), dict(floor=0.0),
                                dict(transform="square"), dict(beta=float("inf"))])
def test_bad_configs_name_the_option(kw):
    option = next(iter(kw))
    with pytest.raises(ConfigError, match=option):
        Atoms(**kw)
    with pytest.raises(ConfigError, match=option):
        RunConfig(env="atoms", env_args=kw).validate()


# ---------------------------------------------------------------------- graph policy
def test_graph_policy_shapes_uniform_start_and_chunks(monkeypatch):
    """Logits of the right shapes for every layout (graph actions with an empty s0, no pairs with
    one atom), uniform at initialisation, and the same with or without chunking."""
    for name in ("CO-any", "one-atom", "default"):
        env = ENVS[name]
        policy = GraphPolicy(env, hidden=16, layers=2)
        states = random_states(env, 20, 1, stop=0.1)
        out = policy(states)
        assert out.forward_logits.shape == (20, env.n_actions)
        assert out.backward_logits.shape == (20, env.n_actions - 1) and out.log_flow.shape == (20,)
        assert (out.forward_logits == 0).all() and (out.backward_logits == 0).all()
    for head in (policy.node_head, policy.pair_head, policy.graph_head):
        torch.nn.init.normal_(head[-1].weight)
    with torch.no_grad():
        whole = policy(states)
        monkeypatch.setattr("gflownets.policies.graph.NO_GRAD_CHUNK_ELEMENTS", 1)
        chunked = policy(states)
    for a, b in zip(whole, chunked):
        assert torch.allclose(a, b, atol=1e-5)
    one = policy(states[3:4]).forward_logits  # no leak between the graphs of a batch
    assert torch.allclose(one, whole.forward_logits[3:4], atol=1e-5)
    uniform_back = GraphPolicy(env, hidden=16, layers=1, backward="uniform", state_flow=False)(states)
    assert (uniform_back.backward_logits == 0).all() and (uniform_back.log_flow == 0).all()


def test_graph_policy_samples_sanitise_untrained_and_trained():
    env = Atoms()
    policy = GraphPolicy(env, hidden=32, layers=2)
    for head in (policy.node_head, policy.pair_head, policy.graph_head):  # a non-uniform untrained policy
        torch.nn.init.normal_(head[-1].weight, std=1.0)
    objects = sample_forward(env, policy, 1500, torch.Generator().manual_seed(1)).terminal_states
    assert all(m is not None for m in parse_smiles([s or "" for s in env.smiles(objects)]))
    config = RunConfig(env="atoms", policy="graph", hidden=32, layers=2, iters=30, batch_size=16, eval_every=0,
                       exact=False, seed=0)
    trainer = Trainer(config, progress=False)
    trainer.run()
    objects = trainer.sample_objects(1500, torch.Generator().manual_seed(2))
    assert all(m is not None for m in parse_smiles([s or "" for s in trainer.env.smiles(objects)]))


def test_graph_policy_needs_a_graph_environment(capsys, tmp_path):
    with pytest.raises(ConfigError, match="policy graph needs an environment whose states are graphs"):
        RunConfig(env="hypergrid", policy="graph").validate()
    from gflownets.envs import Hypergrid

    with pytest.raises(ConfigError, match="graph_layout"):
        GraphPolicy(Hypergrid(ndim=2, height=4))
    err = one_error_line(capsys, "train", "hypergrid", "--policy", "graph", "--out", tmp_path / "run")
    assert "graph" in err


def test_training_reaches_a_small_exact_l1():
    """Elements C, O and at most 3 atoms: 57 states, every one a finished molecule. Trajectory
    balance with the graph policy (and the MLP as a check) is evaluated exactly."""
    args = dict(elements="C,O", max_atoms=3)
    graph = Trainer(RunConfig(env="atoms", env_args=args, policy="graph", hidden=64, layers=3, iters=600,
                              batch_size=16, eval_every=0, seed=0), progress=False).run()
    assert graph["l1"] < 0.1 and graph["l1_molecules"] <= graph["l1"] + 1e-12
    mlp = Trainer(RunConfig(env="atoms", env_args=args, iters=600, batch_size=16, eval_every=0, seed=0),
                  progress=False).run()
    assert mlp["l1"] < 0.3
    assert graph["n_molecules"] == mlp["n_molecules"] < 57  # labelled forms of one molecule pooled
    assert graph["expected_score"] == pytest.approx(graph["expected_score_target"], abs=0.02)


def test_cli_trains_with_the_graph_policy(tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", "atoms", "--elements", "C,O", "--max-atoms", 4, "--policy", "graph", "--iters", 100,
                   "--hidden", 32, "--out", out, "--quiet") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_args"]["elements"] == "C,O" and 0 <= summary["l1"] <= 2
    assert (out / "plots" / "top_molecules.png").is_file()
    assert run_cli("sample", out, "-n", 20, "--out", tmp_path / "samples.csv") == 0
    header = (tmp_path / "samples.csv").read_text().splitlines()[0]
    assert header.startswith("atom0,atom1,atom2,atom3,bond0_1")
