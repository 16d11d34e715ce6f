"""What a run folder protects: an earlier run is not overwritten, a resumed run applies and names
changed settings, a data file edited after training is refused (or accepted and recorded), and
a batch whose loss or gradients are not finite stops the run with its objects and a checkpoint
of the last good state, or is skipped when asked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import one_error_line, run_cli
from gflownets.errors import RewardError, TrainingError
from gflownets.training import RunConfig, Trainer, load_checkpoint_file, load_run

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--iters", "20", "--batch-size", "8", "--hidden", "16", "--eval-every", "10", "--quiet"]


@pytest.fixture(autouse=True)
def _user_modules_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))


def test_an_earlier_run_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("train", "hypergrid", "--ndim", 2, "--height", 4, *FAST, "--out", out) == 0
    before = (out / "checkpoint.pt").read_bytes()
    one_error_line(capsys, "train", "hypergrid", "--ndim", 2, "--height", 4, *FAST, "--out", out)
    assert (out / "checkpoint.pt").read_bytes() == before
    one_error_line(capsys, "train", "hypergrid", *FAST, "--out", out, "--resume", "--overwrite")
    (out / "plots" / "stale.png").write_bytes(b"old")
    assert run_cli("train", "hypergrid", "--ndim", 2, "--height", 5, *FAST, "--seed", 1, "--out", out,
                   "--overwrite") == 0
    assert load_checkpoint_file(out / "checkpoint.pt")["env"]["height"] == 5
    assert not (out / "plots" / "stale.png").exists()
    with pytest.raises(Exception, match="already holds a run"):
        Trainer(RunConfig(iters=1), out, progress=False)


def test_an_empty_out_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_error_line(capsys, "train", "hypergrid", *FAST, "--out", "")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(Exception, match="empty"):
        Trainer(RunConfig(iters=1), "", progress=False)


def test_a_resumed_run_applies_and_names_changed_settings(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("train", "hypergrid", "--ndim", 2, "--height", 4, *FAST, "--out", out) == 0
    capsys.readouterr()
    assert run_cli("train", "hypergrid", "--iters", 30, "--lr", 0.5, "--quiet", "--out", out, "--resume") == 0
    err = capsys.readouterr().err
    assert "lr 0.001 -> 0.5" in err and "iters 20 -> 30" in err
    resumed = load_run(out)
    assert [group["lr"] for group in resumed.optimizer.param_groups] == [0.5, resumed.config.lr_logz]


def _offline_csv(path: Path, rows: list[tuple[int, int]]) -> Path:
    path.write_text("x0,x1\n" + "".join(f"{a},{b}\n" for a, b in rows))
    return path


def test_an_offline_file_changed_after_training_is_refused_or_accepted(tmp_path, capsys):
    data = _offline_csv(tmp_path / "data.csv", [(0, 0), (3, 3), (0, 3), (3, 0)] * 4)
    out = tmp_path / "run"
    assert run_cli("train", "hypergrid", "--ndim", 2, "--height", 4, *FAST, "--offline", data, "--out", out) == 0
    _offline_csv(data, [(1, 1)] * 16)
    one_error_line(capsys, "train", "hypergrid", "--iters", 30, "--quiet", "--out", out, "--resume")
    assert run_cli("train", "hypergrid", "--iters", 30, "--quiet", "--out", out, "--resume",
                   "--accept-changed-data") == 0
    recorded = load_checkpoint_file(out / "checkpoint.pt")["data_files"]
    assert list(recorded) == [str(data)] and len(recorded[str(data)]) == 64  # the new contents' hash
    assert run_cli("train", "hypergrid", "--iters", 40, "--quiet", "--out", out, "--resume") == 0


def test_a_dag_data_file_changed_after_training_is_refused_or_accepted(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "obs.csv"
    np.savetxt(data, rng.normal(size=(40, 3)), delimiter=",", header="a,b,c", comments="")
    out = tmp_path / "run"
    assert run_cli("train", "dag", "--data", data, *FAST, "--out", out) == 0
    np.savetxt(data, rng.normal(size=(40, 3)) * 5, delimiter=",", header="a,b,c", comments="")
    capsys.readouterr()
    assert run_cli("evaluate", out) != 0
    err = capsys.readouterr().err
    assert "obs.csv changed since" in err and "--accept-changed-data" in err and len(err.splitlines()) == 1
    assert run_cli("evaluate", out, "--accept-changed-data") == 0


def test_a_non_finite_loss_stops_with_its_objects_and_the_last_good_state(tmp_path):
    config = RunConfig(env="hypergrid", env_args={"ndim": 2, "height": 4}, iters=50, batch_size=8,
                       log_reward="tests.plugins.slow_reward:huge_log_reward", checkpoint_every=0, eval_every=0)
    trainer = Trainer(config, tmp_path / "run", progress=False)
    with pytest.raises(TrainingError, match=r"loss became inf at step \d+.*most extreme objects \[\[") as error:
        trainer.run()
    saved = load_checkpoint_file(tmp_path / "run" / "checkpoint.pt")
    assert f"step {saved['step']})" in str(error.value)
    for name, value in trainer.policy.state_dict().items():  # the parameters before the bad batch
        assert torch.equal(saved["policy"][name], value) and torch.isfinite(value).all()


def test_non_finite_batches_can_be_skipped(tmp_path):
    config = RunConfig(env="hypergrid", env_args={"ndim": 2, "height": 4}, iters=40, batch_size=4, log_every=5,
                       log_reward="tests.plugins.slow_reward:huge_log_reward", on_nonfinite="skip", eval_every=0)
    trainer = Trainer(config, tmp_path / "run", progress=False)
    trainer.run()
    assert 0 < trainer.skipped_batches < 40
    assert all(torch.isfinite(p).all() for p in trainer.policy.parameters())
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["skipped_batches"] == trainer.skipped_batches
    assert all(line["loss"] is None or np.isfinite(line["loss"]) for line in lines)  # None: all skipped


def test_a_built_in_reward_that_is_nan_is_refused():
    from tests.plugins.user_code import Counter

    env = Counter(bonus=float("nan"))
    with pytest.raises(RewardError, match=r"invalid for 1 object.*\[6\] -> nan"):
        env.log_reward(torch.tensor([[2], [6]]))


def test_a_nan_reward_met_in_training_names_the_step_and_the_object(tmp_path):
    config = RunConfig(env="hypergrid", env_args={"ndim": 2, "height": 4}, iters=200, batch_size=16, exact=False,
                       log_reward="tests.plugins.slow_reward:nan_log_reward", eval_every=0)
    with pytest.raises(RewardError, match=r"at step \d+: log-reward is invalid for \d+ object.*\[3, 3\] -> nan"):
        Trainer(config, tmp_path / "run", progress=False).run()


def test_a_run_too_large_for_exact_evaluation_says_so(capsys):
    Trainer(RunConfig(env="hypergrid", env_args={"ndim": 12, "height": 8}, iters=0), progress=True)
    assert "no exact evaluation (hypergrid: 8^12 states, too many to enumerate)" in capsys.readouterr().err
