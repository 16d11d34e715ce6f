"""The benchmarks run end to end on our trainers alone (no peers), on tiny budgets."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_quality_at_equal_wall_time_reads_every_run_at_its_groups_fastest_time():
    sys.path.insert(0, str(ROOT / "bench"))
    from common import add_equal_time

    def run(system, seed, points):
        return {"system": system, "seed": seed, "seconds": points[-1][0],
                "curve": [{"seconds": s, "l1": v} for s, v in points]}
    runs = [run("fast", 0, [(1.0, 0.5), (2.0, 0.2)]), run("slow", 0, [(1.5, 0.9), (3.9, 0.6), (8.0, 0.1)]),
            run("late", 0, [(2.5, 0.3), (5.0, 0.05)]),  # first evaluated after the fast run had finished
            run("fast", 1, [(1.0, 0.4), (3.0, 0.3)]), run("slow", 1, [(2.0, 0.7), (3.0, 0.2), (6.0, 0.1)])]
    add_equal_time(runs, "l1")
    assert [r["equal_time_seconds"] for r in runs] == [2.0, 2.0, 2.0, 3.0, 3.0]
    assert [r["l1_at_equal_time"] for r in runs] == [0.2, 0.9, None, 0.3, 0.2]


def test_bench_hypergrid_quick_ours_only(tmp_path):
    out = tmp_path / "hypergrid.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "hypergrid.py"), "--quick", "--dims", "2",
                           "--iters", "50", "--ours", "eager", "--peers", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    # (the compiled path's child process is the same one with --compile; test_compiled covers it,
    # and a cold compile here cost half a minute)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert [r["system"] for r in result["runs"]] == ["ours"]
    (run,) = result["runs"]
    assert run["iters_per_s"] > 0 and run["peak_rss_mb"] > 0 and run["compile_seconds"] == 0
    assert 0 <= run["l1_samples"] <= 2


def test_bench_scaling_one_cell_per_task(tmp_path):
    out = tmp_path / "scaling.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "scaling.py"), "--dims", "2", "--heights", "4",
                           "--batches", "16", "--seconds", "0.3", "--out", str(out)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    grid, bits, dag, ising, sets = result["cells"]
    assert [cell["task"] for cell in result["cells"]] == ["hypergrid", "bitseq", "dag", "ising", "sets"]
    for cell in result["cells"]:
        assert cell["iterations"] >= 3 and cell["iters_per_s"] > 0 and cell["batch"] == 16
        assert 0 < cell["network_gflops"] < result["machine"]["matmul_gflops_2048"] * 2
    # H=4, D=2: trajectories visit 1 to 7 states; append-only 15 tokens: 16 states; d = 5 DAGs: 1 to 11
    assert 1 <= grid["states_per_trajectory"] <= 7 and (grid["ndim"], grid["height"]) == (2, 4)
    assert bits["states_per_trajectory"] == 16
    assert 1 <= dag["states_per_trajectory"] <= 11
    # D = 9 bits: s0 and one state per written bit, 10; 4 of 10 items: s0 and one per item added, 5
    assert ising["states_per_trajectory"] == 10 and sets["states_per_trajectory"] == 5


def test_bench_iteration_profile_splits_an_iteration(tmp_path):
    """bench/iteration_profile.py: the timed pieces cover the iteration, the floors are below it,
    and the targets come from the peers' rows of the results folder given."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "sets_speed.json").write_text(json.dumps({"summary": [
        {"system": "ours", "iters_per_s": 500.0}, {"system": "torchgfn", "iters_per_s": 100.0}]}))
    out = tmp_path / "profile.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "iteration_profile.py"), "--tasks", "sets",
                           "--paths", "eager", "--iters", "20", "--warmup", "3", "--peers-from", str(results),
                           "--out", str(out)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(out.read_text())["rows"]
    assert row["task"] == "sets" and row["path"] == "eager"
    assert row["sample_ms"] > 0 and row["gradient_ms"] > 0 and row["adam_ms"] > 0
    # the timed pieces are the iteration: what falls outside them is the loop's own bookkeeping
    assert 0 <= row["other_ms"] < 0.5 * row["total_ms"]
    assert 0 < row["matmul_floor_ms"] < row["total_ms"] and 0 < row["update_floor_ms"] < row["total_ms"]
    assert row["states_per_iteration"] == 16 * 5  # 4 of 10 items: s0 and one state per item, 16 trajectories
    assert row["peers_ms"] == {"torchgfn": 10.0} and row["target_7x_torchgfn_ms"] == pytest.approx(10 / 7)
    assert "target_2x_gfnx_ms" not in row


def test_bench_ebgfn_ising_quick(tmp_path):
    """bench/ebgfn.py: the three samplers and their equal-time variants on a 3 x 3 lattice."""
    out = tmp_path / "ebgfn.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "ebgfn.py"), "ising", "--side", "3", "--iters", "20",
                           "--seeds", "1", "--n-test", "200", "--hidden", "16", "--equal-time", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert [r["method"] for r in result["runs"]] == ["eb-gfn", "gibbs", "gwg", "gibbs@time", "gwg@time"]
    for run in result["runs"]:
        assert run["kl_true_learned"] >= 0 and run["rmse_J"] > 0 and run["log_z_exact"]
    assert result["runs"][1]["energy_evals_per_it"] == result["runs"][0]["energy_evals_per_it"]


def test_bench_molecules_fragments_tiny_budget(tmp_path):
    """bench/molecules.py fragments: each method's measures at each quarter of its reward calls."""
    out = tmp_path / "molecules.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "molecules.py"), "fragments", "--budget", "96",
                           "--seeds", "0", "--methods", "gfn", "random", "--policy", "mlp", "--samples", "100",
                           "--out", str(out)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["method"] for r in rows] == ["gfn", "gfn: samples after training", "random"]
    for row in (rows[0], rows[2]):
        calls = [p["reward_calls"] for p in row["curve"]]
        assert len(calls) == 4 and calls[-1] == 96 and all(c >= m for c, m in zip(calls, (24, 48, 72, 96)))
        assert 0 < row["top100_score"] <= 1 and 0 < row["top100_diversity"] <= 1


def test_bench_bitseq_speed_ours_eager_only(tmp_path):
    """bench/bitseq_speed.py end to end on our eager trainer alone (no peers, no compilation)."""
    out = tmp_path / "bitseq_speed.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bitseq_speed.py"), "--systems", "ours-eager",
                           "--iters", "20", "--seeds", "0", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["settings"]["beta"] == 240 and result["settings"]["test_size"] == 1000
    (run,) = result["runs"]
    assert run["system"] == "ours-eager" and run["seed"] == 0 and run["iterations"] == 20
    assert run["seconds"] > 0 and run["iters_per_s"] > 0 and run["peak_rss_mb"] > 0
    assert run["trajectories_per_s"] == pytest.approx(16 * run["iters_per_s"])
    assert run["compile_seconds"] == 0
    for suffix in ("", "_raw"):
        assert -1 <= run[f"spearman{suffix}"] <= 1 and run[f"logp_minus_logr_std{suffix}"] > 0
    assert abs(run["logp_minus_logr_mean"]) < 1e3
    assert 0 <= run["modes_found"] <= 60
    # the trainer's own test-set Spearman at its last evaluation is the harness's, of the same weights
    assert run["curve"][-1]["iteration"] == 20 and run["curve"][-1]["seconds"] <= run["seconds"]
    assert run["curve"][-1]["spearman"] == pytest.approx(run["spearman"], abs=1e-9)
    (row,) = result["summary"]
    assert row["system"] == "ours-eager" and row["n"] == 1 and row["iters_per_s"] == run["iters_per_s"]
    # alone, a run's equal time is its own: its quality then is its last evaluation's
    assert run["equal_time_seconds"] == run["seconds"] and row["spearman_at_equal_time"] == run["spearman"]
    # and the summary can be made again from the stored runs alone
    before = result["summary"]
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bitseq_speed.py"), "--resummarise",
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    again = json.loads(out.read_text())
    assert again["summary"] == before and again["runs"] == result["runs"] and "resummarised" in again
    assert any(line.lstrip().startswith("ours-eager") for line in result["table"])


FAKE_BITSEQ_PEER = """
import argparse, json
import numpy as np
parser = argparse.ArgumentParser()
for name in ("--task", "--samples-out", "--iters", "--seed", "--batch-size", "--eval-every", "--evals-out"):
    parser.add_argument(name)
args = parser.parse_args()
task = np.load(args.task)
log_r = task["test_log_r"]
backwards = -log_r  # a sampler whose order is the reverse of R's, then one that matches R
np.savez(args.evals_out, iterations=np.array([10, 20]), seconds=np.array([0.5, 1.0]),
         log_probs=np.stack([backwards, log_r - 7.0]).astype(np.float32))
np.save(args.samples_out, task["test_tokens"][:32])
print(json.dumps({"iterations": 20, "seconds": 1.0, "iters_per_s": 20.0, "trajectories_per_s": 320.0,
                  "compile_seconds": 0.0, "peak_rss_mb": 1.0}))
"""


def test_bench_bitseq_speed_scores_a_peers_evaluations(tmp_path, monkeypatch):
    """The harness's side of a bit-sequence peer: each evaluation's test-set log p is scored
    (Spearman, log p - log R), and time to quality is the first evaluation above the level."""
    import numpy as np

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import bitseq_speed

    script = tmp_path / "fake_peer.py"
    script.write_text(FAKE_BITSEQ_PEER)
    monkeypatch.setitem(bitseq_speed.PEERS, "fake", (script, []))
    task, env, test, log_r = bitseq_speed.make_task(tmp_path)
    result = bitseq_speed.run_peer("fake", sys.executable, 20, 0, task, env, log_r)
    first, last = result["curve"]
    assert first["spearman"] == pytest.approx(-1.0) and last["spearman"] == pytest.approx(1.0)
    assert result["seconds_to_level"] == 1.0 and result["spearman"] == pytest.approx(1.0)
    assert result["logp_minus_logr_mean"] == pytest.approx(-7.0, abs=1e-4)
    assert result["logp_minus_logr_std"] < 1e-4
    assert 1 <= result["modes_found"] <= 60
    assert np.isfinite(result["iters_per_s"])


FAKE_DAG_PEER = """
import argparse, json
import numpy as np
parser = argparse.ArgumentParser()
for name in ("--task", "--iters", "--seed", "--batch-size", "--eval-every", "--evals-out", "--exploration"):
    parser.add_argument(name)
args = parser.parse_args()
adjacency = np.load(args.task)["states"].astype(np.int64)
n, d = adjacency.shape[:2]
closure = adjacency.copy()
for _ in range(d):
    closure = ((closure + closure @ adjacency) > 0).astype(np.int64)
allowed = (adjacency == 0) & (closure.transpose(0, 2, 1) == 0) & ~np.eye(d, dtype=bool)
mask = np.concatenate([allowed.reshape(n, -1), np.ones((n, 1), dtype=bool)], axis=1)
uniform = np.where(mask, -np.log(mask.sum(axis=1, keepdims=True)), -np.inf).astype(np.float32)
np.savez(args.evals_out, iterations=np.array([10, 20]), seconds=np.array([0.5, 1.0]),
         log_probs=np.stack([uniform, uniform]))
print(json.dumps({"iterations": 20, "seconds": 1.0, "iters_per_s": 20.0, "trajectories_per_s": 640.0,
                  "compile_seconds": 0.0, "peak_rss_mb": 1.0}))
"""


def test_bench_dag_speed_scores_a_peer_as_our_evaluator_does(tmp_path, monkeypatch):
    """The harness's side of a peer: the task file's reward table looks up every DAG's log R; a
    log P_F table of the exact optimum scores JSD 0; a wrong mask is refused; and a (fake) peer
    handing over the uniform policy's table, its mask computed apart in NumPy, gets the JSD our
    own evaluator gives our uniform policy."""
    import numpy as np

    from gflownets.evaluation import distribution_metrics, optimal_tabular_policy
    from gflownets.policies import UniformPolicy

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import dag_speed
    import table_bench

    task_file = tmp_path / "task.npz"
    graph = table_bench.make_task(dag_speed.TASK, task_file, seed=1)
    stored = np.load(task_file)
    keys = table_bench.bit_keys(stored["states"])
    assert graph.n_states == len(np.unique(keys)) == 29281 and stored["terminal"].all()
    assert np.array_equal(stored["log_r_sorted"][np.searchsorted(stored["keys_sorted"], keys)], stored["log_r"])
    assert np.array_equal(stored["log_r"], graph.log_rewards.numpy())

    optimal = graph.forward_log_probs(optimal_tabular_policy(graph)).masked_fill(~graph.forward_mask, -np.inf)
    assert table_bench.exact_metrics(graph, optimal.float().numpy())["jsd"] < 1e-6
    wrong = optimal.float().numpy()
    wrong[0, 1] = -np.inf if np.isfinite(wrong[0, 1]) else 0.0
    with pytest.raises(ValueError, match="differ from ours on 1 states"):
        table_bench.check_mask(graph, wrong, "wrong")

    script = tmp_path / "fake_peer.py"
    script.write_text(FAKE_DAG_PEER)
    monkeypatch.setitem(dag_speed.TASK.peers, "fake", (script, []))
    result = table_bench.run_peer(dag_speed.TASK, "fake", sys.executable, 20, 1, 10, task_file, graph)
    expected = distribution_metrics(graph.terminal_distribution(UniformPolicy(graph.env)), graph.target)
    assert [point["iteration"] for point in result["curve"]] == [10, 20]
    assert result["jsd"] == pytest.approx(expected["jsd"], rel=1e-5) and 0.1 < expected["jsd"] < np.log(2)
    assert result["l1"] == pytest.approx(expected["l1"], rel=1e-5)


@pytest.mark.parametrize("name", ["ising_speed", "sets_speed"])
def test_bench_table_tasks_write_what_their_peers_read(name, tmp_path, monkeypatch):
    """The Ising and sets task files: states in the peers' encoding, one key per finished object,
    the reward table reproducing our log R, and our own uniform policy's table scored exactly."""
    import importlib

    import numpy as np

    from gflownets.evaluation import distribution_metrics
    from gflownets.policies import UniformPolicy

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import table_bench

    task = importlib.import_module(name).TASK
    task_file = tmp_path / "task.npz"
    graph = table_bench.make_task(task, task_file, seed=0)
    stored = np.load(task_file)
    terminal = stored["terminal"]
    assert terminal.sum() == len(graph.terminal_ids) < graph.n_states == len(stored["states"])
    assert set(np.unique(stored["states"])) <= {-1, 0, 1}
    keys = table_bench.bit_keys(task.flat_bits(stored["states"][terminal]))
    assert len(np.unique(keys)) == len(keys)
    assert np.array_equal(stored["log_r_sorted"][np.searchsorted(stored["keys_sorted"], keys)],
                          graph.log_rewards.numpy())
    assert np.isnan(stored["log_r"][~terminal]).all()
    uniform = graph.forward_log_probs(UniformPolicy(graph.env)).masked_fill(~graph.forward_mask, -np.inf)
    table_bench.check_mask(graph, uniform.numpy(), "uniform")
    expected = distribution_metrics(graph.terminal_distribution(UniformPolicy(graph.env)), graph.target)["l1"]
    assert table_bench.exact_metrics(graph, uniform.numpy())["l1"] == pytest.approx(expected)


def test_bench_dag_speed_ours_eager_only(tmp_path):
    """bench/dag_speed.py end to end on our eager trainer alone: the exact JSD curve every 20
    iterations, the raw weights' JSD and the noise floor."""
    out = tmp_path / "dag_speed.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "dag_speed.py"), "--systems", "ours-eager",
                           "--iters", "40", "--eval-every", "20", "--seeds", "0", "--out", str(out)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    (run,) = result["runs"]
    assert run["system"] == "ours-eager" and run["iterations"] == 40 and run["compile_seconds"] == 0
    assert [point["iteration"] for point in run["curve"]] == [20, 40]
    assert all(0 < point["jsd"] < 0.7 for point in run["curve"]) and run["jsd"] == run["curve"][-1]["jsd"]
    assert 0 < run["jsd_raw"] < 0.7 and run["trajectories_per_s"] == pytest.approx(32 * run["iters_per_s"])
    assert 0 < result["settings"]["noise_floor_jsd"]["0"] < 0.01
    assert any(line.lstrip().startswith("ours-eager") for line in result["table"])


def test_bench_ehrlich_generalisation_tiny_budget(tmp_path):
    """bench/ehrlich_tb.py --oracle-seeds: the GFlowNet's default recipe and MCMC per function at
    equal oracle calls, on a budget of 3000 calls."""
    out = tmp_path / "ehrlich_generalise.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "ehrlich_tb.py"), "--oracle-seeds", "0,6",
                           "--train-seeds", "0", "--mcmc-seeds", "2", "--calls", "3000", "--samples", "200",
                           "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert [row["oracle_seed"] for row in result["summary"]] == [0, 6]
    assert [row["held_out"] for row in result["summary"]] == [True, True]
    assert result["recipe"]["mutations"] > 0 and result["calls"] == 3000
    for run in result["runs"]:
        # each run stops at the first iteration (or MCMC step) that reaches the budget
        assert 3000 <= run["calls"] < 3000 + 200 and 0 < run["max_f"] <= 1
        assert run["first_f=1_calls"] is None or run["first_f=1_calls"] <= run["calls"]
        assert (run["distinct_f=1"] > 0) == (run["max_f"] == 1) and run["seconds"] > 0
    gfn = [run for run in result["runs"] if run["method"] == "GFlowNet"]
    assert len(gfn) == 2 and all(0 <= r["sampler_fraction_f=1"] <= 1 and 0 < r["sampler_top100_f"] <= 1 for r in gfn)
    assert sum(run["method"] == "MCMC" for run in result["runs"]) == 4
