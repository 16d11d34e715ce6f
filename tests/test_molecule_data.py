"""Molecules in and out (issue 19): offline data files of SMILES read into the states of the
three molecule environments (every state round-trips through its SMILES; molecules an
environment cannot build are refused with the reason), and the RDKit scores served by reward
worker processes with the values of one process."""

import json

import numpy as np
import pytest
import torch

from cli_helpers import one_error_line, run_cli
from gflownets.envs import Atoms, FragmentChains, Fragments
from gflownets.errors import ConfigError, DataError
from gflownets.policies import UniformPolicy
from gflownets.reward_pool import RewardPool
from gflownets.sampling import sample_forward
from gflownets.training import RunConfig, Trainer
from gflownets.training.io import read_objects_csv

pytest.importorskip("rdkit.Chem")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GFLOWNETS_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)


def uniform_molecules(env, n, seed=0):
    return sample_forward(env, UniformPolicy(env), n, torch.Generator().manual_seed(seed)).terminal_states


def write_smiles(path, smiles, extra=True):
    """A SMILES file as users keep them: a header, the SMILES column not first, another column."""
    lines = ["name,smiles,activity"] + [f"m{i},{s},{i / 10}" for i, s in enumerate(smiles)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("env", [Atoms(score="mw(0,1000)"), Atoms(elements="C,N,O", start="any", max_bond=2),
                                 Fragments(score="mw(0,1000)"),
                                 Fragments(vocabulary="6", max_fragments=5, min_fragments=3)],
                         ids=["atoms", "atoms-any-start", "fragments", "fragments-min"])
def test_every_sampled_molecule_is_read_back_from_its_smiles(env, tmp_path):
    """Uniform samples (fragments: up to 9 fragments, every size) written as SMILES are read
    back as states of the environment that build the same molecules, with finite rewards."""
    objects = uniform_molecules(env, 60)
    smiles = env.smiles(objects)
    read = read_objects_csv(write_smiles(tmp_path / "mols.csv", smiles), env)
    assert read.shape == objects.shape and env.smiles(read) == smiles
    env.validate_objects(read)
    assert torch.isfinite(env.log_reward(read)).all()


def test_atoms_numbers_a_molecule_one_way_and_refuses_what_it_cannot_build(tmp_path):
    env = Atoms()
    # one state per molecule, whatever the SMILES spelling; aromatic rings read in Kekule form
    a, b = env.objects_from_descriptions("smiles", ["OCC", "C(O)C"]), env.objects_from_descriptions("smiles", ["CCO"])
    assert torch.equal(a[0], a[1]) and torch.equal(a[0], b[0])
    phenol = env.objects_from_descriptions("smiles", ["c1ccccc1O"])
    assert env.smiles(phenol) == ["Oc1ccccc1"] and int(phenol[0, :9].max()) <= 2
    for smiles, reason in [("CCX", "not a valid SMILES"), ("CC.O", "not one connected"),
                           ("CC[Na]", "element Na"), ("C[NH3+]", "charged"), ("CS(=O)(=O)C", "valence"),
                           ("C" * 10, "more than max_atoms=9"), ("OO", "no C atom")]:
        with pytest.raises(DataError, match=reason):
            env.objects_from_descriptions("smiles", ["CC", smiles])
    with pytest.raises(DataError, match="row 2"):
        env.objects_from_descriptions("smiles", ["CC", "CCX"])
    with pytest.raises(DataError, match="above max_bond=1"):
        Atoms(max_bond=1).objects_from_descriptions("smiles", ["C=C"])


def test_fragments_refuses_a_molecule_no_tree_of_its_fragments_makes():
    env = Fragments(vocabulary="ethylene,oxygen,fluoro", max_fragments=3)
    assert env.smiles(env.objects_from_descriptions("smiles", ["OCCF"])) == ["OCCF"]
    with pytest.raises(DataError, match="none of the 3 fragments"):
        env.objects_from_descriptions("smiles", ["CN"])
    with pytest.raises(DataError, match="no tree of at most 3"):
        env.objects_from_descriptions("smiles", ["OCCCCO"])  # four carbons: two ethylenes and two oxygens


def test_fragment_chains_read_the_first_chain_of_a_molecule():
    env = FragmentChains(fragments=3, length=3)
    smiles = list(env.table.smiles)
    chains = env.objects_from_descriptions("smiles", smiles)
    assert env.smiles(chains) == smiles
    first = [int(np.flatnonzero(env.table.molecule == m)[0]) for m in range(len(smiles))]
    assert env.chain_index(chains).tolist() == first
    with pytest.raises(DataError, match="none of the 25 molecules"):
        env.objects_from_descriptions("smiles", ["CCO"])


def test_a_smiles_header_is_needed_and_other_environments_refuse_it(tmp_path):
    env = Atoms()
    path = tmp_path / "mols.csv"
    path.write_text("CCO\nCCN\n")
    with pytest.raises(DataError, match="or a header naming a 'smiles' column"):
        read_objects_csv(path, env)
    path.write_text("smiles\nCCO\n\n")  # blank lines are skipped
    assert env.smiles(read_objects_csv(path, env)) == ["CCO"]
    path.write_text("smiles,name\nCCO,a\n,b\n")
    with pytest.raises(DataError, match="row 2 has no smiles value"):
        read_objects_csv(path, env)
    with pytest.raises(DataError, match="cannot be read from a 'smiles' column"):
        from gflownets.envs import Hypergrid
        Hypergrid().objects_from_descriptions("smiles", ["CCO"])


def test_offline_training_from_smiles_on_the_command_line(tmp_path):
    env = Atoms(elements="C,O", max_atoms=4)
    data = write_smiles(tmp_path / "mols.csv", env.smiles(uniform_molecules(env, 40)))
    out = tmp_path / "run"
    assert run_cli("train", "atoms", "--preset", "tiny", "--offline", data, "--iters", 20, "--out", out, "--quiet") == 0
    assert json.loads((out / "summary.json").read_text())["iterations"] == 20


def test_reward_workers_score_molecules_with_the_values_of_one_process():
    """`reward_workers` run the RDKit scores of new molecules in worker processes: the same
    log-rewards as in one process, bit for bit; the environment keeps its own cache (a
    reward cache is refused for it)."""
    config = dict(env="fragments", env_args={"score": "qed*sa", "beta": 8}, batch_size=24, exact=False,
                  eval_every=0, iters=2, threads=1)
    rewards = []
    for workers in (0, 2):
        trainer = Trainer(RunConfig(**config, reward_workers=workers), progress=False)
        assert isinstance(trainer.env.score_smiles, RewardPool) == (workers > 0)
        trainer.train_step()
        rewards.append(trainer.last_batch.log_rewards)
        trainer.close()
        assert not isinstance(trainer.env.score_smiles, RewardPool)
    assert torch.equal(rewards[0], rewards[1])
    with pytest.raises(ConfigError, match="with its own cache"):
        RunConfig(**config, reward_cache=100).validate()
    with pytest.raises(ConfigError, match="hypergrid's default reward"):
        RunConfig(env="hypergrid", reward_workers=2).validate()


def test_reward_workers_flag_on_the_command_line(tmp_path, capsys):
    assert run_cli("train", "fragments", "--vocabulary", "4", "--max-fragments", 3, "--iters", 3,
                   "--reward-workers", 1, "--out", tmp_path / "run", "--quiet") == 0
    err = one_error_line(capsys, "train", "fragment-chains", "--preset", "tiny", "--reward-workers", 1,
                         "--out", tmp_path / "run2", "--quiet")
    assert "reward_workers" in err


def test_a_score_given_as_reward_points_to_the_score_option(capsys, tmp_path):
    err = one_error_line(capsys, "train", "fragments", "--reward", "qed,sa", "--out", tmp_path / "run", "--quiet")
    assert "--score qed,sa" in err


def test_fragment_swaps_are_symmetric_valid_and_drive_the_mixed_mcmc():
    """Every (node, fragment) swap of every finished object of a small instance gives a state of
    the environment; the proposal counts x -> y equal y -> x (so Metropolis chains sample R);
    the "mixed" MCMC baseline alternates swaps and regrown last fragments."""
    from gflownets.baselines import make_baseline
    from gflownets.evaluation import StateGraph

    env = Fragments(vocabulary="6", max_fragments=3, score="mw(0,1000)")
    objects = StateGraph(env).terminal_states
    n = env.n_nodes(objects)
    index = {tuple(row.tolist()): i for i, row in enumerate(objects)}
    counts = torch.zeros(len(objects), len(objects), dtype=torch.long)
    changed = 0
    for node in range(env.max_fragments):
        for new in range(env.n_fragments):
            rows = (n > node).nonzero()[:, 0]
            mutants = env.swap(objects[rows], torch.full((len(rows),), node), torch.full((len(rows),), new))
            assert all(env._row_problem(m.numpy()) is None for m in mutants)
            targets = torch.tensor([index[tuple(m.tolist())] for m in mutants])
            counts.index_put_((rows, targets), torch.ones(len(rows), dtype=torch.long), accumulate=True)
            changed += int((mutants != objects[rows]).any(dim=1).sum())
    assert changed > len(objects) and torch.equal(counts, counts.T)
    sampler = make_baseline("mcmc", env, n_chains=8, proposal="mixed")
    generator = torch.Generator().manual_seed(0)
    visited = torch.cat([sampler.step(generator) for _ in range(20)])
    assert 0 < sampler.acceptance <= 1 and len(torch.unique(visited, dim=0)) > 8
