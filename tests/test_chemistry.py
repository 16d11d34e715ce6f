"""Molecules with RDKit (issue 19, first part): rewards, metrics and the exactly evaluable
`fragment-chains` environment. Every test caches its tables in its own temporary folder."""

import json
import time
import zipfile

import numpy as np
import pytest
import torch

from cli_helpers import run_cli
from gflownets.chemistry import fragments as fragments_module
from gflownets.chemistry import metrics, rewards
from gflownets.chemistry.fragments import (FRAGMENTS, all_chains, canonical_chain_smiles, chain_index, chain_smiles,
                                           chain_table)
from gflownets.chemistry.rewards import MolecularReward, parse_reward
from gflownets.envs import ENVIRONMENTS, FragmentChains
from gflownets.errors import ConfigError, DataError, RewardError
from gflownets.evaluation import StateGraph, distribution_metrics, optimal_tabular_policy
from gflownets.training import RunConfig, Trainer

Chem = pytest.importorskip("rdkit.Chem")
from rdkit.Chem import QED  # noqa: E402

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
CAFFEINE = "CN1C=NC2=C1C(=O)N(C(=O)N2C)C"


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("GFLOWNETS_CACHE", str(folder))
    return folder


# ---------------------------------------------------------------------- rewards
def test_qed_and_sa_match_rdkit_and_published_values():
    mols = [Chem.MolFromSmiles(s) for s in (ASPIRIN, CAFFEINE, "c1ccccc1")]
    q = rewards.qed()(mols)
    assert np.allclose(q, [QED.qed(m) for m in mols], rtol=0, atol=1e-12)
    assert q[0] == pytest.approx(0.55, abs=0.005) and q[1] == pytest.approx(0.538, abs=0.005)  # Bickerton et al.
    raw = rewards.sa_raw(mols)
    assert raw[0] == pytest.approx(1.58, abs=0.01) and raw[2] == pytest.approx(1.0)  # Ertl & Schuffenhauer's scale
    assert np.allclose(rewards.sa()(mols), (10 - raw) / 9)
    assert np.allclose(parse_reward("qed*sa").scores([ASPIRIN, CAFFEINE]), q[:2] * (10 - raw[:2]) / 9)


def test_windows_are_one_inside_and_decay_outside():
    mols = [Chem.MolFromSmiles(s) for s in ("C", "CCCCCCCCCC", "CCCCCCCCCCCCCCCCCCCC", ASPIRIN)]
    from rdkit.Chem import Crippen, Descriptors, rdMolDescriptors

    logp = np.array([Crippen.MolLogP(m) for m in mols])
    score = rewards.window("logp", 0.0, 4.0)(mols)
    inside = (logp >= 0) & (logp <= 4)
    assert np.all(score[inside] == 1.0)
    assert np.allclose(score[~inside], np.exp(-0.5 * np.maximum(logp - 4, -logp)[~inside] ** 2))
    assert score[2] < score[1] < 1.0  # longer alkane, further outside
    mw = rewards.window("mw", 100, 200, width=10)(mols)
    assert mw[3] == 1.0 and 100 <= Descriptors.MolWt(mols[3]) <= 200
    tpsa = parse_reward("tpsa(70,80)").scores([ASPIRIN, "C"])  # aspirin: 63.6
    assert tpsa[0] == pytest.approx(np.exp(-0.5 * ((70 - rdMolDescriptors.CalcTPSA(mols[3])) / 20) ** 2))
    assert tpsa[1] == pytest.approx(np.exp(-0.5 * (70 / 20) ** 2))  # methane: 0


def test_tanimoto_is_one_for_the_target_itself():
    score = rewards.tanimoto(ASPIRIN)
    values = score([Chem.MolFromSmiles(s) for s in ("O=C(O)c1ccccc1OC(C)=O", "c1ccccc1C(=O)O", "CCCC")])
    assert values[0] == 1.0 and 0 < values[1] < 1 and values[2] < values[1]
    with pytest.raises(ConfigError, match="not a valid SMILES"):
        rewards.tanimoto("C1CC(")


def test_temperature_and_invalid_smiles(capfd):
    smiles = [ASPIRIN, "not a molecule", "C1CC", ""]
    q = QED.qed(Chem.MolFromSmiles(ASPIRIN))
    power = parse_reward("qed", beta=4)
    log_r = power.log_rewards(smiles)
    assert log_r[0] == pytest.approx(4 * np.log(q)) and np.all(log_r[1:] == -np.inf)
    assert power(smiles)[0] == pytest.approx(q ** 4) and np.all(power(smiles)[1:] == 0)
    assert parse_reward("qed", beta=4, transform="exp").log_rewards(smiles)[0] == pytest.approx(4 * q)
    assert parse_reward("qed", transform="exp").log_rewards(smiles)[1] == -np.inf  # invalid: the floor
    assert capfd.readouterr().err == ""  # RDKit's parse errors are silenced
    with pytest.raises(ConfigError, match="transform"):
        parse_reward("qed", transform="log")


def test_spec_parsing_and_errors():
    assert parse_reward("qed*sa").spec == parse_reward(" qed , sa ").spec == "qed*sa"
    assert parse_reward("QED*logp(1,3)*mw(200,500,25)").spec == "qed*logp(1,3,1)*mw(200,500,25)"
    canonical = Chem.MolToSmiles(Chem.MolFromSmiles(ASPIRIN))
    assert parse_reward("tanimoto(O=C(O)c1ccccc1OC(C)=O)").spec == f"tanimoto({canonical})"
    for spec, message in [("qed*banana", "unknown score 'banana'; known: qed, sa, logp"), ("", "spec is needed"),
                          ("qed**sa", "empty score"), ("logp(1)", "logp takes"), ("logp(a,b)", "must be numbers"),
                          ("logp(3,1)", "low <= high"), ("qed(1)", "no arguments"), ("tanimoto()", "one target"),
                          ("tanimoto(C1C", "unbalanced"), ("no_such_module_xyz:f", "cannot import"),
                          ("math:sqrt(bytes)", "a function takes"), ("1qed", "cannot read")]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            parse_reward(spec)


def test_user_functions_of_molecules_and_smiles(tmp_path, monkeypatch):
    (tmp_path / "my_scores.py").write_text(
        "def atoms(mol):\n    return mol.GetNumAtoms() / 100\n\n"
        "calls = []\n\ndef lengths(smiles):\n    calls.append(len(smiles))\n"
        "    return [len(s) / 100 for s in smiles]\n")
    monkeypatch.chdir(tmp_path)
    per_mol = parse_reward("my_scores:atoms")
    batched = parse_reward("my_scores:lengths(smiles-batch)*qed")
    smiles = ["CCO", "bad(", ASPIRIN]
    assert np.allclose(per_mol.scores(smiles), [0.03, 0, 0.13])
    import my_scores

    expected = np.array([3 / 100, 0, len(Chem.MolToSmiles(Chem.MolFromSmiles(ASPIRIN))) / 100])
    assert np.allclose(batched.scores(smiles), expected * parse_reward("qed").scores(smiles))
    assert my_scores.calls == [2]  # one call with the valid molecules only
    assert per_mol.identity is not None and "source-sha256" in per_mol.identity
    assert rewards.custom(lambda m: 0.5).identity is not None  # a lambda in a file has source
    broken = MolecularReward((rewards.custom(lambda mols: [1.0], on="mol-batch"),))
    with pytest.raises(RewardError, match="returned 1 values for 2 molecules"):
        broken.scores(["C", "CC"])
    nan = MolecularReward((rewards.custom(lambda m: float("nan")),))
    with pytest.raises(RewardError, match="is nan for C"):
        nan.scores(["C"])


# ---------------------------------------------------------------------- metrics
def test_metrics_on_hand_made_smiles(tmp_path):
    smiles = ["CCO", "OCC", "not-a-molecule", "c1ccccc1", ASPIRIN, CAFFEINE]
    scores = [0.2, 0.3, 0.9, 0.5, 0.95, 0.92]
    assert metrics.validity(smiles) == pytest.approx(5 / 6)
    assert metrics.uniqueness(smiles) == pytest.approx(4 / 5)  # CCO == OCC
    assert metrics.novelty(smiles, ["C(C)O", "c1ccccc1"]) == pytest.approx(2 / 4)
    assert metrics.top_k_reward(smiles, scores, k=2) == pytest.approx((0.95 + 0.92) / 2)
    assert metrics.top_k(smiles, scores, k=4)[2].tolist() == [0.95, 0.92, 0.5, 0.3]  # the best of the duplicates
    assert metrics.tanimoto_diversity([ASPIRIN, "O=C(O)c1ccccc1OC(C)=O"]) == 0.0  # one molecule twice
    assert 0.5 < metrics.top_k_diversity(smiles, scores, k=3) <= 1.0
    assert np.isnan(metrics.tanimoto_diversity(["CCO"]))
    # modes: dodecanol and tridecanol have equal Morgan fingerprints (similarity 1 > 0.7), so count once
    c12, c13 = "CCCCCCCCCCCCO", "CCCCCCCCCCCCCO"
    assert rewards.tanimoto(c12)([Chem.MolFromSmiles(c13)])[0] == 1.0
    assert metrics.modes([c12, c13, CAFFEINE, "CCO"], [0.9, 0.95, 0.8, 0.1], threshold=0.5) == [
        c13, Chem.MolToSmiles(Chem.MolFromSmiles(CAFFEINE))]
    assert metrics.count_modes([c12, c13, CAFFEINE, "CCO"], [0.9, 0.95, 0.8, 0.1], threshold=0.85) == 1
    assert metrics.count_modes([c12, CAFFEINE, "CCO"], [0.9, 0.8, 0.1], threshold=0.0) == 3
    summary = metrics.molecule_metrics(smiles, scores, k=2, threshold=0.5, reference=["CCO"])
    assert summary["validity"] == pytest.approx(5 / 6) and summary["modes"] == 3 and summary["novelty"] == 0.75
    out = metrics.draw_top_molecules(smiles, scores, tmp_path / "plots" / "top.png", k=4)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------- fragments
def test_linear_fragments_equal_their_attachment_forms_and_every_chain_sanitises():
    """All 11^3 chains of three: the string join equals joining the [*] forms with molzip; and a
    random 2000 chains of five sanitise (all 161,051 are checked whenever the full table is built)."""
    def zipped(chain):
        parts = []
        for k, i in enumerate(chain):
            head = f"[*:{k}]" if k else "[H]"
            tail = f"[*:{k + 1}]" if k < len(chain) - 1 else "[H]"
            parts.append(FRAGMENTS[i].attached.replace("[*]", "<h>", 1).replace("[*]", tail).replace("<h>", head))
        return Chem.MolToSmiles(Chem.RemoveHs(Chem.molzip(Chem.MolFromSmiles(".".join(parts)))))

    start = time.perf_counter()
    chains = all_chains(len(FRAGMENTS), 3)
    assert canonical_chain_smiles(chains, FRAGMENTS) == [zipped(c) for c in chains.tolist()]
    five = np.random.default_rng(0).integers(0, len(FRAGMENTS), size=(2000, 5))
    canonical = canonical_chain_smiles(five, FRAGMENTS)
    assert all(Chem.MolFromSmiles(s) is not None for s in canonical)
    print(f"1331 chains of 3 (with molzip) and 2000 of 5 assembled in {time.perf_counter() - start:.1f} s")


def test_chain_numbering():
    chains = all_chains(4, 3)
    assert chains.shape == (64, 3) and chains[6].tolist() == [0, 1, 2]
    assert np.array_equal(chain_index(chains, 4), np.arange(64))
    assert chain_smiles(np.array([[0, 1, 2]]), FRAGMENTS) == ["c1ccc(cc1)C(=O)NO"]


def test_enumeration_holds_every_chain_once_with_the_exact_target():
    env = FragmentChains(fragments=4, length=3)
    graph = StateGraph(env)
    chains = graph.terminal_states.numpy()
    assert len(chains) == 4 ** 3 and len({tuple(c) for c in chains.tolist()}) == 4 ** 3
    assert graph.n_states == 1 + 4 + 16 + 64
    assert torch.equal(graph.path_counts(), torch.full((64,), 4.0, dtype=torch.float64))  # 2^(L-1) orders
    assert graph.target.sum().item() == pytest.approx(1.0, abs=1e-12)
    # the table lookup is the reward of the assembled molecule, computed again here from its SMILES
    smiles = canonical_chain_smiles(chains, env.fragments)
    direct = parse_reward("qed", beta=env.config.beta).log_rewards(smiles)
    assert np.allclose(graph.log_rewards.numpy(), direct, rtol=0, atol=1e-12)
    assert env.smiles(graph.terminal_states) == smiles
    distinct = len(set(smiles))
    print(f"fragment-chains 4 fragments, length 3: {len(chains)} chains, {distinct} distinct molecules")
    assert distinct == env.n_molecules <= len(chains)
    assert distinct < len(chains)  # p-phenylene-O-p-phenylene read backwards is the same molecule
    optimum = optimal_tabular_policy(graph)
    assert distribution_metrics(graph.terminal_distribution(optimum), graph.target)["l1"] < 1e-10
    exact = env.exact_metrics(graph, graph.target)
    assert exact["l1_molecules"] == 0 and exact["n_molecules"] == distinct
    assert exact["expected_score"] == pytest.approx(exact["expected_score_target"])


def test_disk_cache_is_written_once_reused_and_plain_data(cache_dir, monkeypatch):
    first = FragmentChains(fragments=3, length=3)
    files = sorted(p.name for p in cache_dir.iterdir())
    assert len(files) == 2 and all(f.endswith(".npz") for f in files)  # molecules, and scores of one spec
    for path in cache_dir.iterdir():
        with zipfile.ZipFile(path) as archive:  # plain .npy members only
            assert all(name.endswith(".npy") for name in archive.namelist())
        with np.load(path, allow_pickle=False) as data:  # no pickle needed to read any array
            assert all(data[name].dtype != object for name in data.files)

    def fail(*args, **kwargs):
        raise AssertionError("recomputed")

    monkeypatch.setattr(fragments_module, "canonical_chain_smiles", fail)
    monkeypatch.setattr(MolecularReward, "score_molecules", fail)
    again = FragmentChains(fragments=3, length=3, beta=2.0)  # the temperature is applied after the cache
    assert torch.equal(again.chain_scores, first.chain_scores)
    assert torch.allclose(again.chain_log_rewards, first.chain_log_rewards / first.config.beta * 2.0)
    assert again.table.seconds == {"molecules": 0.0, "scores": 0.0}
    with pytest.raises(AssertionError, match="recomputed"):  # another score: molecules cached, scores computed
        FragmentChains(fragments=3, length=3, score="qed*sa")
    monkeypatch.undo()
    monkeypatch.setenv("GFLOWNETS_CACHE", str(cache_dir))
    for path in cache_dir.iterdir():  # a damaged file is computed again and replaced
        path.write_bytes(b"not a zip file")
    table = chain_table(first.fragments, 3, parse_reward("qed"))
    assert table.seconds["molecules"] > 0 and np.array_equal(table.chain_scores, first.chain_scores.numpy())
    assert chain_table(first.fragments, 3, parse_reward("qed")).seconds == {"molecules": 0.0, "scores": 0.0}
    anonymous = MolecularReward((rewards.custom(eval("lambda mol: 0.5")),))  # no source to key a cache by
    assert anonymous.identity is None
    before = sorted(cache_dir.iterdir())
    assert np.all(chain_table(first.fragments, 3, anonymous).scores == 0.5)
    assert sorted(cache_dir.iterdir()) == before  # computed, never cached


def test_append_only_and_exponential_temperature():
    env = FragmentChains(fragments=2, length=2, prepend=False, transform="exp", beta=2.0)
    graph = StateGraph(env)
    assert torch.equal(graph.path_counts(), torch.ones(4, dtype=torch.float64))  # one order per chain
    qed = parse_reward("qed").scores(env.smiles(graph.terminal_states))
    assert np.allclose(graph.log_rewards.numpy(), 2.0 * qed)


def test_config_errors():
    assert ENVIRONMENTS["fragment-chains"] is FragmentChains
    for options, message in [(dict(fragments=0), "fragments must be in"), (dict(fragments=12), "fragments must be in"),
                             (dict(length=0), "length must be"),
                             (dict(fragments=11, length=7), "chains, more than"),
                             (dict(score="qed*nope"), "unknown score"), (dict(transform="sqrt"), "transform"),
                             (dict(floor=0.0), "floor")]:
        with pytest.raises(ConfigError, match=message):
            FragmentChains(fragments=options.pop("fragments", 3), length=options.pop("length", 2), **options)


def test_training_on_a_tiny_vocabulary_reaches_the_exact_target():
    config = RunConfig(env="fragment-chains", env_args={"fragments": 3, "length": 3, "beta": 4.0}, iters=400,
                       batch_size=16, eval_every=0, seed=0)
    summary = Trainer(config, progress=False).run()
    assert summary["l1"] < 0.05, summary["l1"]  # 0.010 to 0.013 over seeds 0-2
    assert summary["n_molecules"] <= 27 and summary["l1_molecules"] <= summary["l1"] + 1e-9


def test_sample_metrics_of_molecules():
    env = FragmentChains(fragments=4, length=3)
    objects = torch.tensor([[0, 1, 0], [0, 1, 0], [0, 2, 0], [3, 3, 3]])
    out = env.sample_metrics(objects, env.log_reward(objects))
    assert out["molecule_uniqueness"] == 0.75
    assert 0 < out["top100_tanimoto_diversity"] <= 1 and out["molecule_modes"] >= 0


def test_cli_trains_and_draws_the_top_molecules(tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", "fragment-chains", "--fragments", 3, "--length", 3, "--iters", 200, "--quiet",
                   "--out", out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env"] == "fragment-chains" and "l1" in summary and "l1_molecules" in summary
    for name in ("top_molecules.png", "best_molecules.png", "distribution.png"):
        assert (out / "plots" / name).read_bytes()[:4] == b"\x89PNG"


def test_importing_the_package_does_not_import_rdkit():
    """RDKit (0.1 s and more to import) loads only when a molecule is first needed."""
    import subprocess
    import sys

    code = "import sys, gflownets.envs, gflownets.chemistry; assert 'rdkit' not in sys.modules, 'rdkit imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sampled_molecules_are_written_with_their_smiles_and_read_back(tmp_path):
    """`gflownets sample` writes each molecule's SMILES after its log-reward; an offline data file
    may keep that column (it is ignored when read), a misnamed one is refused."""
    from gflownets.training.io import read_objects_csv, write_objects_csv

    env = FragmentChains(fragments=4, length=3)
    objects = torch.tensor([[0, 1, 2], [3, 3, 0]])
    path = tmp_path / "mols.csv"
    write_objects_csv(path, env, objects, env.log_reward(objects))
    header, *rows = [line.split(",") for line in path.read_text().splitlines()]
    assert header == ["t0", "t1", "t2", "log_reward", "smiles"]
    assert [row[-1] for row in rows] == env.smiles(objects)
    assert all(Chem.MolFromSmiles(row[-1]) is not None for row in rows)
    assert torch.equal(read_objects_csv(path, env), objects)
    path.write_text(path.read_text().replace("smiles", "name"))
    with pytest.raises(DataError, match="then optionally log_reward, smiles"):
        read_objects_csv(path, env)
