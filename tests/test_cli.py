"""The `gflownets` command as a user meets it: files written, CSV round trips, one-line errors."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import one_error_line, run_cli

FAST = ["--iters", "30", "--batch-size", "8", "--hidden", "32", "--eval-every", "10", "--quiet"]


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "grid"
    assert run_cli("train", "hypergrid", "--ndim", 2, "--height", 6, "--objective", "tb", "--seed", 0,
                   *FAST, "--out", out) == 0
    return out


def test_train_writes_the_run_folder(grid_run):
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt"):
        assert (grid_run / name).is_file(), name
    for name in ("training.png", "distribution.png", "policy.png"):
        assert (grid_run / "plots" / name).stat().st_size > 1000, name
    summary = json.loads((grid_run / "summary.json").read_text())
    for key in ("env", "objective", "iterations", "seconds", "l1", "l1_mean", "tv", "jsd", "log_z",
                "log_z_true", "modes_found", "n_modes"):
        assert key in summary, key
    assert summary["iterations"] == 30 and summary["env"] == "hypergrid" and summary["objective"] == "tb"
    assert 0 <= summary["l1"] <= 2 and summary["seconds"] > 0
    lines = [json.loads(line) for line in (grid_run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "l1" in line] == [10, 20, 30]
    seconds = [line["seconds"] for line in lines]  # training time so far, evaluation excluded
    assert 0 < seconds[0] and seconds == sorted(seconds) and seconds[-1] <= summary["seconds"]


def test_sample_then_offline_training_round_trip(grid_run, tmp_path, capsys):
    csv_path = tmp_path / "samples.csv"
    assert run_cli("sample", grid_run, "-n", 50, "--out", csv_path) == 0
    rows = list(csv.reader(csv_path.open()))
    assert rows[0] == ["x0", "x1", "log_reward"]
    assert len(rows) == 51
    assert all(0 <= int(v) < 6 for row in rows[1:] for v in row[:2])
    out = tmp_path / "offline"
    assert run_cli("train", "hypergrid", "--ndim", 2, "--height", 6, "--offline", csv_path, *FAST,
                   "--out", out) == 0
    assert json.loads((out / "summary.json").read_text())["iterations"] == 30


def test_evaluate_recomputes_the_summary(grid_run, capsys):
    capsys.readouterr()
    assert run_cli("evaluate", grid_run) == 0
    result = json.loads(capsys.readouterr().out)
    summary = json.loads((grid_run / "summary.json").read_text())
    assert result["l1"] == pytest.approx(summary["l1"], abs=1e-12)
    assert result["iterations"] == 30


def test_resume_extends_a_run(grid_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(grid_run, run)
    assert run_cli("train", "hypergrid", "--out", run, "--resume", "--iters", 40, "--quiet") == 0
    assert json.loads((run / "summary.json").read_text())["iterations"] == 40


def test_config_file_and_overrides(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("preset: tutorial\nobjective: db\niters: 5\nhidden: 16\nenv_args:\n  r0: 0.02\n")
    out = tmp_path / "run"
    assert run_cli("train", "hypergrid", "--config", config, "--iters", 7, "--quiet", "--out", out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["objective"] == "db" and summary["iterations"] == 7
    resolved = (out / "config.yaml").read_text()
    assert "r0: 0.02" in resolved and "r2_upper_inclusive: true" in resolved and "hidden: 16" in resolved


def test_sets_environment_trains(tmp_path):
    out = tmp_path / "sets"
    assert run_cli("train", "sets", "--n-items", 6, "--set-size", 3, "--objective", "subtb", *FAST,
                   "--out", out) == 0
    assert (out / "plots" / "distribution.png").is_file()
    csv_path = tmp_path / "sets.csv"
    assert run_cli("sample", out, "-n", 5, "--out", csv_path) == 0
    assert list(csv.reader(csv_path.open()))[0] == ["item0", "item1", "item2", "log_reward"]


@pytest.mark.parametrize("args,match", [
    (["--bogus", 1], "No such option '--bogus'"),
    (["--height", 1], "height must be >= 2, got 1"),
    (["--ndim", 0], "ndim must be >= 1"),
    (["--r1", -0.5], "r1 must be a finite value >= 0"),
    (["--r0", -1], "r0 must be > 0"),
    (["--exploration", 1.5], "exploration (gamma) must be in [0, 1], got 1.5"),
    (["--exploration", -0.2], "exploration (gamma) must be in [0, 1]"),
    (["--objective", "xx"], "Invalid value for '--objective'"),
    (["--iters", "many"], "Invalid value for '--iters'"),
    (["--batch-size", 0], "batch_size must be > 0"),
    (["--preset", "huge"], "unknown preset 'huge'"),
    (["--offline", "/no/such/file.csv"], "offline data file not found"),
])
def test_bad_options_are_one_line_errors(capsys, tmp_path, args, match):
    err = one_error_line(capsys, "train", "hypergrid", *args, "--out", tmp_path / "x")
    assert match in err


def test_bad_config_files(capsys, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("objective: tb\nlearning_rate: 0.1\n")
    assert "unknown config file" in one_error_line(capsys, "train", "hypergrid", "--config", config,
                                                   "--out", tmp_path / "x")
    config.write_text("env_args:\n  heigth: 4\n")
    assert "unknown hypergrid option 'heigth'" in one_error_line(capsys, "train", "hypergrid", "--config",
                                                                config, "--out", tmp_path / "x")
    config.write_text("env: sets\n")
    assert "is for env 'sets'" in one_error_line(capsys, "train", "hypergrid", "--config", config,
                                                 "--out", tmp_path / "x")


@pytest.mark.parametrize("content,match", [
    ("x0,x1\n0,0\n1,oops\n", "row 2, column x1: 'oops' is not an integer"),
    ("x0,x1\n0,0\n3\n", "row 2 has 1 column(s), hypergrid objects need 2"),
    ("0,0,-1.2\n2,9,-1.0\n", "row 2: value 9 in column x1 is outside [0, 5]"),
    ("x0,x1\n", "no objects"),
])
def test_malformed_offline_rows_are_named(capsys, tmp_path, content, match):
    data = tmp_path / "data.csv"
    data.write_text(content)
    err = one_error_line(capsys, "train", "hypergrid", "--height", 6, "--offline", data, *FAST,
                         "--out", tmp_path / "x")
    assert match in err


def test_checkpoint_of_another_environment(capsys, grid_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(grid_run, run)
    assert "holds a hypergrid run, not sets" in one_error_line(capsys, "train", "sets", "--out", run, "--resume")
    assert "was written for hypergrid(ndim=2, height=6" in one_error_line(
        capsys, "train", "hypergrid", "--ndim", 3, "--out", run, "--resume")
    assert "no checkpoint.pt" in one_error_line(capsys, "train", "hypergrid", "--out", tmp_path / "none",
                                                "--resume")


def test_installed_entry_point(tmp_path):
    exe = Path(sys.executable).parent / "gflownets"
    result = subprocess.run([str(exe), "train", "hypergrid", "--height", "1", "--out", str(tmp_path / "x")],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert result.stderr.strip() == "error: height must be >= 2, got 1"
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "train" in result.stdout
