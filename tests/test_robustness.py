"""Trustworthy runs: every bad input a user can hand over (files that are binary or not UTF-8,
CSV cells and columns that do not fit, data that makes a metric undefined, corrupt run files,
reward functions that return the wrong thing, sizes that do not fit in memory, folders that
cannot be written) is one `error: ...` line and a non-zero exit, or a clear exception in
Python; never a traceback, and never a silently wrong result."""

from __future__ import annotations

import json
import re
import math
import os
import shutil

import numpy as np
import pytest
import torch

from cli_helpers import one_error_line, run_cli
from gflownets.cli import main
from gflownets.envs import DAG, Hypergrid, Sets
from gflownets.errors import CheckpointError, ConfigError, DataError, RewardError
from gflownets.training import RunConfig, load_run
from gflownets.training.io import atomic_write_json, read_objects_csv

TINY = ["--iters", "3", "--batch-size", "4", "--hidden", "8", "--quiet"]


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, as every non-Python JSON reader does."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("robust") / "grid"
    assert run_cli("train", "hypergrid", "--ndim", 2, "--height", 4, *TINY, "--out", out) == 0
    return out


# ---------------------------------------------------------------------- 1. binary and non-UTF-8 files
@pytest.mark.parametrize("content,match", [
    (b"\xff\xfe\x00\x01binary", "it holds NUL bytes (a binary file, or UTF-16)"),
    (b"iters: 3\n# caf\xe9\n", "is not UTF-8 text (byte 0xe9 at offset 14)"),
    (b"iters: [1,\n  2", "is not valid YAML"),
    (b"- 1\n- 2\n", "must hold a mapping of keys to values, not list"),
    (b"1: 2\nx: 3\n", "unknown config file"),
])
def test_unreadable_config_files_are_named(capsys, tmp_path, content, match):
    config = tmp_path / "bad.yaml"
    config.write_bytes(content)
    err = one_error_line(capsys, "train", "hypergrid", "--config", config, "--out", tmp_path / "x")
    assert match in err and "bad.yaml" in err


def test_a_config_file_with_a_byte_order_mark_is_read(tmp_path):
    config = tmp_path / "bom.yaml"
    config.write_bytes("\ufeffiters: 3\nhidden: 8\n".encode())
    assert run_cli("train", "hypergrid", "--height", 4, "--config", config, "--quiet", "--out", tmp_path / "x") == 0


@pytest.mark.parametrize("content,match", [
    (b"x0,x1\n1,2\n\xff\xfe\n", "is not UTF-8 text (byte 0xff at offset 10)"),
    (b"x0,x1\n1,2\x00\n", "it holds NUL bytes"),
])
def test_unreadable_offline_and_dag_data_files_are_named(capsys, tmp_path, content, match):
    data = tmp_path / "data.csv"
    data.write_bytes(content)
    err = one_error_line(capsys, "train", "hypergrid", "--height", 4, "--offline", data, *TINY,
                         "--out", tmp_path / "x")
    assert match in err and "offline data file" in err and "data.csv" in err
    err = one_error_line(capsys, "train", "dag", "--data", data, *TINY, "--out", tmp_path / "y")
    assert match in err and "data.csv" in err


# ---------------------------------------------------------------------- 2-3. offline CSV cells and columns
GRID = Hypergrid(ndim=2, height=4)


def read(tmp_path, content: str, env=GRID) -> torch.Tensor:
    path = tmp_path / "data.csv"
    path.write_text(content)
    return read_objects_csv(path, env)


@pytest.mark.parametrize("content,match", [
    ("x0,x1\n1,99999999999999999999999\n", r"row 1, column x1: '99999999999999999999999' is out of range"),
    ("x0,x1\n1,2\n-99999999999999999999999,1\n", r"row 2, column x0: .* is out of range"),
    ("x0,x1\n1,2\n3,1.5\n", "row 2, column x1: '1.5' is not an integer"),
    ("x0,x1\n1," + "9" * 5000 + "\n", r"row 1, column x1: '9999.*' is not an integer"),
    # more columns than the objects have: refused, naming the extra column, not dropped
    ("x0,x1,x2\n1,2,3\n", "column 3 of the header is 'x2', not 'log_reward'"),
    ("x0,x1,log_reward,note\n1,2,-1.0,ok\n", "the header has an extra column 'note'"),
    ("x0,x1\n1,2,-1.5\n", "row 1 has 3 values, the header names 2 columns"),
    ("1,2,3\n", r"row 1 has 3 columns, hypergrid objects have 2 \(x0, x1\); column 3 \('3'\) is not a log_reward"),
    ("1,2,-1.5,0\n", "row 1 has 4 columns"),
    # fewer columns, or other names
    ("x0\n1\n", r"the header names 1 column\(s\); hypergrid objects have the columns x0, x1"),
    ("1\n", r"row 1 has 1 column\(s\), hypergrid objects need 2 \(x0, x1\)"),
    ("a,b\n1,2\n", "column 1 of the header is 'a', not 'x0'"),
    ("x1,x0\n1,2\n", "column 1 of the header is 'x1', not 'x0'"),
    ("x0,x1\n", "no objects"),
    ("", "no objects"),
    ("x0,x1\n1," + "2" * 200_000 + "\n", "line 2: not valid CSV"),  # past the csv module's field limit
])
def test_offline_rows_that_do_not_fit_are_refused(tmp_path, content, match):
    with pytest.raises(DataError, match=match):
        read(tmp_path, content)


@pytest.mark.parametrize("content", [
    "x0,x1\n1,2\n3,0\n",
    "x0,x1,log_reward\n1,2,-1.5\n3,0,-0.5\n",
    "\ufeffx0,x1\n1,2\n3,0\n",  # a spreadsheet's byte-order mark
    "x0,x1,\n1,2,\n3,0,\n",  # a spreadsheet's trailing commas
    " x0 , x1 \r\n 1 , 2 \r\n\r\n3,0\r\n",
    "1,2\n3,0\n",
    "1,2,-1.5\n3,0,-inf\n",  # sample's log_reward, without a header
])
def test_offline_files_in_the_written_form_are_read(tmp_path, content):
    assert read(tmp_path, content).tolist() == [[1, 2], [3, 0]]


def test_the_offline_csv_that_sample_writes_trains(grid_run, tmp_path):
    data = tmp_path / "samples.csv"
    assert run_cli("sample", grid_run, "-n", 10, "--out", data) == 0
    assert read_objects_csv(data, GRID).shape == (10, 2)


def test_sets_rows_name_their_item_columns(tmp_path):
    sets = Sets(n_items=4, set_size=2)
    assert read(tmp_path, "item0,item1,log_reward\n0,3,-1.0\n", sets).tolist() == [[1, 0, 0, 1]]
    with pytest.raises(DataError, match="column 2 of the header is 'x1', not 'item1'"):
        read(tmp_path, "item0,x1\n0,3\n", sets)


# ---------------------------------------------------------------------- 4. data that makes a metric undefined
def test_dag_data_of_one_column_is_refused(capsys, tmp_path):
    data = tmp_path / "one.csv"
    data.write_text("a\n1.0\n2.0\n0.5\n")
    err = one_error_line(capsys, "train", "dag", "--data", data, *TINY, "--out", tmp_path / "x")
    assert "structure learning needs at least 2 nodes (columns), the header names 1" in err
    with pytest.raises(DataError, match="at least 2 nodes"):
        DAG(data=str(data))


def test_dag_data_too_large_to_score_is_refused(tmp_path):
    """Squares of 1e160 overflow the BGe score's sums (a traceback, or every reward 0, before)."""
    data = tmp_path / "big.csv"
    data.write_text("a,b,c\n1,1e160,3\n2,1,0\n")
    with pytest.raises(DataError, match=r"values as large as 1e\+160 are too large to score"):
        DAG(data=str(data))
    data.write_text("a,b,c\n1,1e150,3\n2,1,0\n")
    assert DAG(data=str(data)).d == 3


def test_atomic_write_json_never_writes_nan_or_infinity(tmp_path):
    path = tmp_path / "summary.json"
    atomic_write_json(path, {"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": (np.float64("nan"), 2),
                             "e": "nan", "f": 0.5, "g": None, "h": True})
    assert strict_json(path.read_text()) == {"a": None, "b": [1.0, None, {"c": None}], "d": [None, 2],
                                             "e": "nan", "f": 0.5, "g": None, "h": True}


def test_a_dag_of_one_node_writes_valid_json(tmp_path, monkeypatch):
    """Synthetic data of one node still trains (its edge metric is a mean over no pairs of
    nodes): summary.json says null, not NaN."""
    monkeypatch.setattr("gflownets.plotting.write_plots", lambda run, folder: [])
    out = tmp_path / "dag1"
    with pytest.warns(RuntimeWarning):  # numpy: "Mean of empty slice"
        assert run_cli("train", "dag", "--nodes", 1, *TINY, "--out", out) == 0
    assert strict_json((out / "summary.json").read_text())["edge_marginal_mae"] is None


# ---------------------------------------------------------------------- 5. corrupt summary.json
@pytest.mark.parametrize("content,match", [
    (b"{bad", "is not valid JSON"),
    (b"", "is not valid JSON"),
    (b"[1, 2]", "must hold a JSON object of metrics, not list"),
    (b"null", "must hold a JSON object of metrics, not NoneType"),
    (b"\xff\xfe", "is not UTF-8 text"),
])
def test_report_names_a_corrupt_summary(capsys, grid_run, tmp_path, content, match):
    run = tmp_path / "run"
    shutil.copytree(grid_run, run)
    (run / "summary.json").write_bytes(content)
    err = one_error_line(capsys, "report", grid_run, run)
    assert match in err and "summary.json" in err


def test_report_reads_an_old_summary_with_nan(capsys, grid_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(grid_run, run)
    (run / "summary.json").write_text('{"env": "hypergrid", "l1": NaN, "iterations": 3}')
    assert run_cli("report", run) == 0
    assert "nan" in capsys.readouterr().out


# ---------------------------------------------------------------------- 6. corrupt checkpoints
def edited_checkpoint(grid_run, tmp_path, edit) -> str:
    run = tmp_path / "run"
    shutil.copytree(grid_run, run)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    edit(state)
    torch.save(state, run / "checkpoint.pt")
    return run


@pytest.mark.parametrize("config,match", [
    ([1, 2], "damaged: config missing or of the wrong type"),
    ("hypergrid", "damaged: config missing or of the wrong type"),
    ({"env": "hypergrid", "iters": "many"}, "checkpoint config: iters must be of type int, got 'many'"),
    ({"env": "hypergrid", 3: 4}, "unknown checkpoint config key"),
])
def test_a_checkpoint_with_a_malformed_config_is_a_checkpoint_error(capsys, grid_run, tmp_path, config, match):
    run = edited_checkpoint(grid_run, tmp_path, lambda state: state.update(config=config))
    with pytest.raises(CheckpointError, match=match):
        load_run(run)
    for command in (["evaluate", run], ["sample", run, "--out", tmp_path / "s.csv"]):
        assert match in one_error_line(capsys, *command)
    err = one_error_line(capsys, "train", "hypergrid", "--ndim", 2, "--height", 4, "--out", run, "--resume", "--quiet")
    assert "config" in err


@pytest.mark.parametrize("key", ["config", "env", "step", "policy", "optimizer", "source", "generator"])
def test_a_checkpoint_without_one_of_its_parts_is_a_checkpoint_error(grid_run, tmp_path, key):
    run = edited_checkpoint(grid_run, tmp_path, lambda state: state.pop(key))
    with pytest.raises(CheckpointError, match=f"damaged: {key} missing"):
        load_run(run)


def test_a_resumed_run_without_its_checkpoint_config_is_one_error_line(capsys, grid_run, tmp_path):
    run = edited_checkpoint(grid_run, tmp_path, lambda state: state.pop("config"))
    err = one_error_line(capsys, "train", "hypergrid", "--ndim", 2, "--height", 4, "--out", run, "--resume", "--quiet")
    assert "checkpoint.pt" in err


def test_a_torn_last_metrics_line_is_dropped_on_resume(grid_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(grid_run, run)
    with open(run / "metrics.jsonl", "a") as log:
        log.write('{"step": 4, "lo')  # a crash mid-append
    assert run_cli("train", "hypergrid", "--ndim", 2, "--height", 4, *TINY, "--iters", 5, "--out", run,
                   "--resume") == 0
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 5


# ---------------------------------------------------------------------- 7. what user reward functions return
EXPECTED = r"expected a 1-D float tensor or array of 3 value\(s\), one per object"
OBJECTS = torch.tensor([[0, 0], [1, 2], [3, 3]])


@pytest.mark.parametrize("result,match", [
    (lambda x: 1.0, r"returned a float \(1.0\)"),
    (lambda x: 7, r"returned an int \(7\)"),
    (lambda x: None, "returned None"),
    (lambda x: "abc", r"returned a str \('abc'\)"),
    (lambda x: {"a": 1}, r"returned a dict"),
    (lambda x: np.ones((len(x), 2)), r"returned a NumPy array of float64 values of shape \(3, 2\) for 3 objects"),
    (lambda x: torch.ones(len(x), 2), r"returned a float32 tensor of shape \(3, 2\) for 3 objects"),
    (lambda x: torch.tensor(2.0), r"returned a float32 tensor of shape \(\) for 3 objects"),
    (lambda x: [1.0] * (len(x) - 1), "returned 2 values for 3 objects"),
    (lambda x: [], "returned 0 values for 3 objects"),
    (lambda x: ["1"] * len(x), r"returned a list of str values \['1', '1', '1'\]"),
    (lambda x: [[1], [1, 2], [3]], "returned a list that is not an array of numbers"),
    (lambda x: torch.ones(len(x), dtype=torch.complex64), "returned a complex64 tensor"),
])
@pytest.mark.parametrize("kind", ["reward_fn", "log_reward_fn"])
def test_a_reward_function_returning_the_wrong_thing_is_named(result, match, kind):
    what = "log-reward" if kind == "log_reward_fn" else "reward"
    env = Hypergrid(ndim=2, height=4, **{kind: result})
    with pytest.raises(RewardError, match=f"^{what} function {match}.*; {EXPECTED}"):
        env.log_reward(OBJECTS)


@pytest.mark.parametrize("result", [
    lambda x: 1.0 + x.sum(dim=1).double(),
    lambda x: (1.0 + x.sum(dim=1)).tolist(),
    lambda x: tuple((1 + x.sum(dim=1)).tolist()),
    lambda x: (1.0 + x.sum(dim=1)).numpy(),
    lambda x: (1.0 + x.sum(dim=1, keepdim=True)).float(),  # a model's (B, 1) output column
    lambda x: (1.0 + x.sum(dim=1)).float().requires_grad_(),  # detached, not refused
], ids=["tensor", "list", "tuple", "array", "column", "requires-grad"])
def test_a_reward_function_returning_one_value_per_object_is_accepted(result):
    log_r = Hypergrid(ndim=2, height=4, reward_fn=result).log_reward(OBJECTS)
    assert torch.allclose(log_r, torch.tensor([1.0, 4.0, 7.0], dtype=torch.float64).log())
    assert log_r.dtype == torch.float64 and not log_r.requires_grad and log_r.grad_fn is None


def test_a_cli_reward_returning_a_scalar_is_one_error_line(capsys, tmp_path):
    err = one_error_line(capsys, "train", "hypergrid", "--height", 4, "--reward", "builtins:len", *TINY,
                         "--out", tmp_path / "x")
    assert "reward function returned an int" in err and "one per object" in err


# ---------------------------------------------------------------------- 8. memory and file system
def test_absurd_sizes_are_one_error_line(capsys, tmp_path):
    for option in (["--hidden", 100_000_000], ["--batch-size", 10_000_000_000]):
        err = one_error_line(capsys, "train", "hypergrid", "--height", 4, *option, "--quiet", "--out", tmp_path / "x")
        assert option[0][2:].replace("-", "_") in err or "out of memory" in err


@pytest.mark.parametrize("failure,shown", [
    (lambda: torch.empty(2**60, dtype=torch.uint8), "out of memory (an allocation of 1.07e+09 GiB): reduce --batch-size"),
    (lambda: np.empty(2**60, dtype=np.uint8), "out of memory: reduce --batch-size"),
    (lambda: [0] * 2**62, "out of memory: reduce --batch-size"),
], ids=["torch", "numpy", "python"])
def test_an_allocation_that_fails_anywhere_is_one_line(capsys, tmp_path, monkeypatch, failure, shown):
    """What a size that passes the caps but not the machine ends in (allocated for real: each
    of these fails at once, whatever the machine's memory)."""
    monkeypatch.setattr(RunConfig, "validate", lambda self, *args, **kwargs: failure())
    err = one_error_line(capsys, "train", "hypergrid", "--quiet", "--out", tmp_path / "x")
    assert err.startswith(f"error: {shown}") and "--hidden or --layers" in err


def test_other_runtime_errors_are_not_taken_for_memory(tmp_path, monkeypatch):
    def bug(self, *args, **kwargs):
        raise RuntimeError("a bug")
    monkeypatch.setattr(RunConfig, "validate", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["train", "hypergrid", "--quiet", "--out", str(tmp_path / "x")])


def test_a_run_folder_below_a_file_is_one_error_line(capsys, grid_run, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    err = one_error_line(capsys, "train", "hypergrid", "--height", 4, *TINY, "--out", blocker / "run")
    assert "a_file" in err and ("Not a directory" in err or "not a folder" in err)
    err = one_error_line(capsys, "sample", grid_run, "-n", 2, "--out", blocker / "samples.csv")
    assert err == f"error: {blocker}: is a file, not a folder"


def test_a_failing_write_is_one_error_line(capsys, grid_run, tmp_path, monkeypatch):
    def full(path):
        raise OSError(28, "No space left on device", str(path))
    monkeypatch.setattr("gflownets.training.io.make_parent", full)
    err = one_error_line(capsys, "sample", grid_run, "-n", 2, "--out", tmp_path / "samples.csv")
    assert err == f"error: {tmp_path / 'samples.csv'}: No space left on device"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_one_error_line(capsys, grid_run, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        err = one_error_line(capsys, "sample", grid_run, "-n", 2, "--out", locked / "samples.csv")
        assert "Permission denied" in err
    finally:
        locked.chmod(0o755)


def test_config_errors_stay_config_errors():
    """from_dict's checks do not turn a config file's errors into checkpoint errors."""
    with pytest.raises(ConfigError, match="unknown config key"):
        RunConfig.from_dict({"learning_rate": 1})
    with pytest.raises(ConfigError, match="the config must be a mapping"):
        RunConfig.from_dict(["iters"])
    assert not issubclass(ConfigError, CheckpointError)


# ---------------------------------------------------------------------- the fuzzer's first finds
@pytest.mark.parametrize("args, match", [
    (["hypergrid", "--seed", "-1"], "seed must be in"),
    (["hypergrid", "--seed", "99999999999999999"], "seed must be in"),
    (["sets", "--reward-seed", "-3"], "reward_seed must be in"),
    (["bitseq", "--mode-seed", str(2**64)], "mode_seed must be in"),
    (["hypergrid", "--temperature", "1e-183"], "temperature must be in"),
    (["sets", "--objective", "mdb"], "mdb .* needs every state of sets to be terminal"),
])
def test_values_that_crashed_deep_inside_are_refused_up_front(capsys, tmp_path, args, match):
    err = one_error_line(capsys, "train", *args, *TINY, "--out", tmp_path / "run")
    assert re.search(match, err), err


def test_collinear_dag_data_is_a_data_error(tmp_path, capsys):
    rng = np.random.default_rng(0)
    column = rng.normal(size=40) * 1e10  # two equal columns at a scale where the prior's ridge vanishes
    data = tmp_path / "obs.csv"
    np.savetxt(data, np.stack([column, column, rng.normal(size=40)], axis=1), delimiter=",", header="a,b,c",
               comments="")
    err = one_error_line(capsys, "train", "dag", "--data", data, *TINY, "--out", tmp_path / "run")
    assert "not positive definite" in err and "standardise" in err


def test_undefined_metrics_are_null_in_every_json_file(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("train", "dag", "--nodes", 1, *TINY, "--eval-every", 1, "--log-every", 1, "--out", out) == 0
    for text in [(out / "summary.json").read_text(), *(out / "metrics.jsonl").read_text().splitlines()]:
        json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} written"))
