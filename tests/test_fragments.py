"""Molecules from fragments (issue 19): the fragment library (every fragment and every join
sanitises, the attachment rule), the `fragments` environment (masks by brute force, exact
inverse steps, one parent per state on enumerated instances, 100% sanitisation of thousands of
uniform samples, CSV rows), training to a small exact L1 (MLP and graph policy) and the CLI."""

import json
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_helpers import run_cli
from contracts import assert_steps_are_inverse, random_states
from gflownets.chemistry.fragment_library import KINDS, LIBRARY, MAX_POINTS, assemble, compatible, parse_fragment
from gflownets.chemistry.molecules import parse_smiles
from gflownets.envs import ENVIRONMENTS
from gflownets.envs.fragments import Fragments
from gflownets.errors import ConfigError, DataError
from gflownets.evaluation import StateGraph, distribution_metrics, optimal_tabular_policy
from gflownets.policies import UniformPolicy
from gflownets.policies.graph import GraphPolicy
from gflownets.sampling import sample_forward
from gflownets.training import RunConfig, Trainer

pytest.importorskip("rdkit.Chem")

TINY = dict(vocabulary="ethylene,oxygen,fluoro", max_fragments=3)
#: configurations the property tests draw from (a cheap score: the masks do not depend on it)
CONFIGS = {
    "default": dict(),
    "tiny": TINY,
    "small-min": dict(vocabulary="6", max_fragments=5, min_fragments=3),
    "one-node": dict(vocabulary="4", max_fragments=1),
    "halogens": dict(vocabulary="fluoro,chloro,oxygen,amine,methylsulfonyl,carbonyl", max_fragments=4),
}
ENVS = {name: Fragments(**kw, score="mw(0,1000)") for name, kw in CONFIGS.items()}


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


# ---------------------------------------------------------------------- brute force, independent of the env
def decode(env, row):
    """(fragments, parents, parent points, own points) of the nodes of one row, as lists."""
    N = env.max_fragments
    blocks = [[int(x) for x in row[k * N:(k + 1) * N]] for k in range(4)]
    n = sum(f >= 0 for f in blocks[0])
    return [b[:n] for b in blocks]


def kinds_of(env, f):
    return parse_fragment(env.fragments[f].smiles).kinds


def used_points(env, row):
    fragment, parent, parent_point, own = decode(env, row)
    used = Counter()
    for k in range(1, len(fragment)):
        used[(k, own[k])] += 1
        used[(parent[k], parent_point[k])] += 1
    return used


def is_state(env, row) -> bool:
    """Nodes fill a prefix; the root has no parent; each node k >= 1 hangs from an earlier node by
    existing, compatible points, each point used at most once; padding is -1 everywhere."""
    N = env.max_fragments
    fragment, parent, parent_point, own = decode(env, row)
    n = len(fragment)
    if any(int(x) != -1 for k in range(4) for x in row[k * N + n:(k + 1) * N]):
        return False
    if n and (parent[0], parent_point[0], own[0]) != (-1, -1, -1):
        return False
    for k in range(1, n):
        if not 0 <= parent[k] < k:
            return False
        pk, ck = kinds_of(env, fragment[parent[k]]), kinds_of(env, fragment[k])
        if not (0 <= parent_point[k] < len(pk) and 0 <= own[k] < len(ck)):
            return False
        if not compatible(pk[parent_point[k]], ck[own[k]]):
            return False
    return all(count == 1 for count in used_points(env, row).values())


def brute_forward_mask(env, row) -> np.ndarray:
    """The forward mask from its definition, with ports enumerated here in vocabulary order."""
    fragment, *_ = decode(env, row)
    n, A = len(fragment), MAX_POINTS
    ports = [(f, b) for f in range(env.n_fragments) for b in range(len(kinds_of(env, f)))]
    used = used_points(env, row)
    mask = np.zeros(env.n_actions, dtype=bool)
    for i in range(n):
        kinds = kinds_of(env, fragment[i])
        for a in range(len(kinds)):
            for q, (f, b) in enumerate(ports):
                mask[(i * A + a) * len(ports) + q] = (n < env.max_fragments and not used[(i, a)]
                                                      and compatible(kinds[a], kinds_of(env, f)[b]))
    mask[env.first_offset:-1] = n == 0
    mask[-1] = n >= 1 and (n >= env.min_fragments or not mask[:-1].any())
    return mask


# ---------------------------------------------------------------------- the library
def test_library_fragments_and_rule():
    """32 named fragments, 1..3 points each, no stereo marks; each fragment capped, and each pair
    of compatible points joined, sanitises and parses back; the rule is symmetric and refuses
    heteroatom-heteroatom bonds but sulfonamides and acyl links."""
    from rdkit import Chem

    assert len(LIBRARY) == 32 and len({f.name for f in LIBRARY}) == 32
    assert all("," not in f.name and "@" not in f.smiles and "/" not in f.smiles for f in LIBRARY)
    for f in LIBRARY:
        p = parse_fragment(f.smiles)
        assert 1 <= len(p.atoms) <= MAX_POINTS and set(p.kinds) <= set(KINDS)
        capped = Chem.MolToSmiles(assemble([f.smiles], []))
        assert "*" not in capped and parse_smiles([capped])[0] is not None
    for a in KINDS:
        for b in KINDS:
            assert compatible(a, b) == compatible(b, a)
    assert compatible("C", "X") and compatible("N", "S") and compatible("C*", "O")
    assert not any(compatible(a, b) for a, b in [("O", "O"), ("N", "N"), ("N", "O"), ("X", "X"), ("C*", "X"),
                                                 ("S", "O"), ("S", "S"), ("N", "X")])
    smiles = [f.smiles for f in LIBRARY]
    for i, fi in enumerate(smiles):  # every fragment joined to every fragment at every compatible pair
        for j, fj in enumerate(smiles):
            for a, ka in enumerate(parse_fragment(fi).kinds):
                for b, kb in enumerate(parse_fragment(fj).kinds):
                    if compatible(ka, kb):
                        mol = assemble([fi, fj], [(1, b, 0, a)])
                        assert parse_smiles([Chem.MolToSmiles(mol)])[0] is not None, (fi, fj, a, b)


# ---------------------------------------------------------------------- environment
def test_registered_sizes_and_s0():
    assert ENVIRONMENTS["fragments"] is Fragments
    env = ENVS["default"]
    assert env.n_fragments == 32 and env.max_fragments == 9 and env.n_ports == 55
    assert env.n_actions == 9 * 3 * 55 + 32 + 1
    s0 = env.initial_states(1)
    assert (s0 == -1).all() and not env.forward_mask(s0)[0, -1] and env.smiles(s0) == [None]
    assert env.forward_mask(s0)[0, env.first_offset:-1].all()


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(sorted(CONFIGS)), seed=st.integers(0, 2**31 - 1), stop=st.sampled_from([0.05, 0.2, 0.5]))
def test_masks_match_brute_force_on_random_states(name, seed, stop):
    env = ENVS[name]
    states = random_states(env, 12, seed, stop=stop)
    forward = env.forward_mask(states).numpy()
    for row, mask in zip(states.numpy(), forward):
        assert is_state(env, row), row
        assert np.array_equal(mask, brute_forward_mask(env, row)), row
    rows, actions = env.forward_mask(states)[:, :-1].nonzero(as_tuple=True)
    children = env.step(states[rows], actions)
    assert all(is_state(env, row) for row in children[::7].numpy())


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(sorted(CONFIGS)), seed=st.integers(0, 2**31 - 1), stop=st.sampled_from([0.05, 0.2, 0.5]))
def test_step_and_backward_step_are_inverse_and_parents_are_exact(name, seed, stop):
    """Both directions invert each other on random trees; the backward mask allows exactly the
    undoings whose mechanical result is a state from which that forward action leads back (brute
    force over every backward action), which is one action in every state but s0."""
    env = ENVS[name]
    states = random_states(env, 16, seed, stop=stop)
    assert_steps_are_inverse(env, states)
    backward = env.backward_mask(states)
    assert (backward.sum(dim=1) == (env.n_nodes(states) >= 1).long()).all()
    n_back = env.n_actions - 1
    for k, state in enumerate(states):
        candidates = env._backward_step(state.expand(n_back, -1), torch.arange(n_back))
        parent = candidates[0]  # the removal of the last node, whatever the action
        assert (candidates == parent).all()
        if not is_state(env, parent.numpy()) or (state == -1).all():
            assert not backward[k].any()
            continue
        allowed = torch.as_tensor(brute_forward_mask(env, parent.numpy())[:-1])
        leads_back = (env._step(parent.expand(n_back, -1), torch.arange(n_back)) == state).all(dim=1)
        assert torch.equal(backward[k], allowed & leads_back), state.tolist()


@pytest.mark.parametrize("kw", [TINY, dict(vocabulary="4", max_fragments=3),
                                dict(vocabulary="fluoro,chloro,amine,methylsulfonyl", max_fragments=4)])
def test_each_parent_is_enumerated_once_on_enumerated_instances(kw):
    """Over every state of tiny instances: each edge appears once, the backward mask is exactly
    the set of forward actions into each state, each state but s0 has one parent, and the exact
    optimal sampler reaches the target."""
    env = Fragments(**kw, score="mw(0,1000)")
    states = env.enumerate_states()
    keys = {tuple(row): i for i, row in enumerate(states.tolist())}
    assert len(keys) == len(states)
    parents, actions = env.forward_mask(states)[:, :-1].nonzero(as_tuple=True)
    children = [keys[tuple(row)] for row in env.step(states[parents], actions).tolist()]
    edges = Counter(zip(children, actions.tolist()))
    assert max(edges.values()) == 1 and len(set(children)) == len(children) == len(states) - 1
    brute = torch.zeros(len(states), env.n_actions - 1, dtype=torch.bool)
    for child, action in edges:
        brute[child, action] = True
    assert torch.equal(env.backward_mask(states), brute)
    graph = StateGraph(env)
    exact = graph.terminal_distribution(optimal_tabular_policy(graph))
    assert distribution_metrics(exact, graph.target)["l1"] < 1e-9


def test_state_counts_and_enumeration_refusal():
    assert len(Fragments(**TINY).enumerate_states()) == 136
    assert len(Fragments(vocabulary="4", max_fragments=3).enumerate_states()) == 1184
    trainer = Trainer(RunConfig(env="fragments", iters=0, eval_every=0), progress=False)
    assert trainer.graph is None  # the default space is refused from its level sizes


def test_thousands_of_uniform_samples_sanitise():
    """3000 uniform rollouts of the default environment: every finished molecule, and a sample
    of the intermediate states, sanitises and parses back from its SMILES, without stereo marks
    and without the bonds the attachment rule forbids."""
    from rdkit import Chem

    env = Fragments()
    trajectories = sample_forward(env, UniformPolicy(env), 3000, torch.Generator().manual_seed(0))
    objects = trajectories.terminal_states
    smiles = env.smiles(objects)
    mols = parse_smiles([s or "" for s in smiles])
    assert all(m is not None for m in mols)
    assert len(set(smiles)) > 2500 and not any("@" in s or "/" in s or "\\" in s for s in smiles)
    forbidden = [Chem.MolFromSmarts(p) for p in ("[OX2]-[OX2]", "[#7]-[#7]", "[#7]-[#8]", "[F,Cl,Br]-[!#6]",
                                                 "[#16]-[#16]", "[F,Cl,Br]-[CX3]=O")]
    assert not any(m.HasSubstructMatch(p) for m in mols for p in forbidden)
    visited = trajectories.states[trajectories.valid][::11]
    visited = visited[env.n_nodes(visited) > 0]
    assert all(m is not None for m in parse_smiles([s or "" for s in env.smiles(visited)]))
    log_r = env.log_reward(objects[:500])
    assert torch.isfinite(log_r).all()
    metrics = env.sample_metrics(objects[:500], log_r)
    assert metrics["molecule_validity"] == 1.0 and metrics["molecule_uniqueness"] > 0.9


def test_reward_is_qed_of_the_molecule():
    from rdkit import Chem
    from rdkit.Chem import QED

    env = Fragments(**TINY)
    # ethylene (0) as node 0; oxygen (1) on its point 1 and fluoro (2) on its point 0, each by point 0
    state = torch.tensor([[0, 1, 2, -1, 0, 0, -1, 1, 0, -1, 0, 0]])
    assert env.smiles(state) == ["OCCF"]
    expected = 16 * np.log(QED.qed(Chem.MolFromSmiles("OCCF")))
    assert float(env.log_reward(state)[0]) == pytest.approx(expected, abs=1e-12)
    assert "OCCF" in env._score_cache


def test_objects_round_trip_and_bad_rows_are_named():
    env = ENVS["small-min"]
    objects = random_states(env, 32, 0, stop=0.1)
    objects = objects[env.n_nodes(objects) > 0]
    rows = env.objects_to_rows(objects)
    assert torch.equal(env.objects_from_rows(rows), objects)
    N = env.max_fragments
    assert env.object_columns[:2] == ["fragment0", "fragment1"] and env.object_columns[N] == "parent0"
    # benzene (0) with ethylene (1) on its point 0 by the ethylene's point 1
    good = np.array([0, 1, -1, -1, -1] + [-1, 0, -1, -1, -1] + [-1, 0, -1, -1, -1] + [-1, 1, -1, -1, -1])
    assert env.objects_from_rows(good[None]).shape == (1, 4 * N)

    def bad(change, words):
        row = good.copy()
        change(row)
        with pytest.raises(DataError, match=words):
            env.objects_from_rows(np.stack([good, row]))

    bad(lambda r: r.__setitem__(1, 99), "row 2: fragment value 99")
    bad(lambda r: r.__setitem__(slice(0, 5), -1), "row 2: the molecule has no fragment")
    bad(lambda r: r.__setitem__(3, 0), "row 2: fragments must fill slots")
    bad(lambda r: r.__setitem__(N, 0), "row 2: parent, parent_point and point must be -1")
    bad(lambda r: r.__setitem__(N + 1, 1), "row 2: node 1 hangs from parent1=1")
    bad(lambda r: r.__setitem__(2 * N + 1, 5), "row 2: parent_point1=5: benzene has 3 point")
    bad(lambda r: r.__setitem__(3 * N + 1, 2), "row 2: point1=2: ethylene has 2 point")

    def twice(r):  # a third node, oxygen, on the benzene's point 0 again
        r[2], r[N + 2], r[2 * N + 2], r[3 * N + 2] = 2, 0, 0, 0
    bad(twice, "row 2: node 2's join uses a point that is already used")

    def peroxide(r):  # oxygen on oxygen
        r[0], r[1] = 2, 2
    bad(peroxide, "row 2: node 1 .oxygen. may not join oxygen")
    with pytest.raises(DataError, match="columns"):
        env.objects_from_rows(good[None, :-1])


@pytest.mark.parametrize("kw", [dict(vocabulary="nope"), dict(vocabulary="0"), dict(vocabulary="33"),
                                dict(vocabulary="fluoro,fluoro"), dict(max_fragments=0), dict(max_fragments=41),
                                dict(min_fragments=10), dict(min_fragments=0), dict(score="nope"), dict(floor=0.0),
                                dict(transform="square"), dict(beta=float("inf"))])
def test_bad_configs_name_the_option(kw):
    option = next(iter(kw))
    with pytest.raises(ConfigError, match=option):
        Fragments(**kw)
    with pytest.raises(ConfigError, match=option):
        RunConfig(env="fragments", env_args=kw).validate()


# ---------------------------------------------------------------------- policies, training, CLI
def test_graph_policy_shapes_and_samples_sanitise():
    for name in ("tiny", "one-node", "default"):
        env = ENVS[name]
        policy = GraphPolicy(env, hidden=16, layers=2)
        states = random_states(env, 10, 1, stop=0.2)
        out = policy(states)
        assert out.forward_logits.shape == (10, env.n_actions) and out.backward_logits.shape == (10, env.n_actions - 1)
        assert (out.forward_logits == 0).all()
    env = Fragments()
    policy = GraphPolicy(env, hidden=32, layers=2)
    for head in (policy.node_head, policy.graph_head):  # a non-uniform untrained policy
        torch.nn.init.normal_(head[-1].weight, std=1.0)
    objects = sample_forward(env, policy, 500, torch.Generator().manual_seed(1)).terminal_states
    assert all(m is not None for m in parse_smiles([s or "" for s in env.smiles(objects)]))


@pytest.mark.parametrize("policy", ["mlp", "graph"])
def test_training_reaches_a_small_exact_l1(policy):
    """ethylene, oxygen, fluoro and at most 3 nodes: 136 states. Trajectory balance, evaluated
    exactly over states and over molecules."""
    extra = dict(hidden=64, layers=3) if policy == "graph" else {}
    result = Trainer(RunConfig(env="fragments", env_args=TINY, policy=policy, iters=400, batch_size=16,
                               eval_every=0, seed=0, **extra), progress=False).run()
    assert result["l1"] < 0.1 and result["l1_molecules"] <= result["l1"] + 1e-12
    assert result["n_molecules"] == 13
    assert result["expected_score"] == pytest.approx(result["expected_score_target"], abs=0.01)


def test_cli_trains_and_samples(tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", "fragments", "--vocabulary", "4", "--max-fragments", 3, "--iters", 50,
                   "--out", out, "--quiet") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_args"]["max_fragments"] == 3 and 0 <= summary["l1"] <= 2
    assert (out / "plots" / "top_molecules.png").is_file()
    assert run_cli("sample", out, "-n", 20, "--out", tmp_path / "samples.csv") == 0
    header = (tmp_path / "samples.csv").read_text().splitlines()[0]
    assert header.startswith("fragment0,fragment1,fragment2,parent0")
