"""Data-parallel training with torch.distributed (gloo, 2 processes under torchrun): the ranks
stay identical, the sampler matches the exact target as a one-process run with the same total
batch does, and a distributed run resumes exactly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gflownets.errors import CheckpointError
from gflownets.training import RunConfig, Trainer, load_run

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {"env": "hypergrid", "env_args": {"ndim": 2, "height": 8}, "batch_size": 32, "threads": 1,
           "iters": 400, "eval_every": 0, "log_every": 50, "seed": 3}

pytestmark = pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                                reason="torchrun is not installed next to this Python")


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    torchrun = str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([torchrun, "--standalone", "--nproc_per_node", "2", *args], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=600)
    except subprocess.TimeoutExpired:  # a hung rank: stop torchrun and its workers, not only torchrun
        os.killpg(process.pid, signal.SIGKILL)
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _train_ranks(out: Path, resume: bool = False, **options) -> None:
    result = _torchrun(str(ROOT / "tests" / "plugins" / "ddp_ranks.py"), str(out),
                       json.dumps({**OPTIONS, **options}), *(["--resume"] if resume else []))
    assert result.returncode == 0, result.stderr[-3000:]


def _rank_parameters(out: Path, rank: int) -> dict[str, torch.Tensor]:
    return torch.load(out / f"rank{rank}.pt", weights_only=True)


def test_ranks_stay_identical_and_match_the_target_as_one_process_does(tmp_path):
    _train_ranks(tmp_path / "ddp")
    first, second = _rank_parameters(tmp_path / "ddp", 0), _rank_parameters(tmp_path / "ddp", 1)
    assert all(torch.equal(first[name], second[name]) for name in first)
    for rank in (0, 1):  # the process group left no thread behind (its threads are gloo's)
        threads = json.loads((tmp_path / "ddp" / f"threads{rank}.json").read_text())
        assert not [name for name in threads if "gloo" in name], threads
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["ranks"] == 2 and summary["batch_size"] == 32
    single = Trainer(RunConfig(**OPTIONS), progress=False)
    single.run()
    l1_single = single.evaluate()["l1"]
    # the same algorithm, other random draws: as close to the target as the one-process run
    assert summary["l1"] < 0.05 and l1_single < 0.05
    assert summary["l1"] < 2 * l1_single + 0.01, (summary["l1"], l1_single)
    # the checkpoint loads in one process, for evaluation and sampling; training on needs 2 ranks
    run = load_run(tmp_path / "ddp")
    assert run.evaluate()["l1"] == pytest.approx(summary["l1"])
    with pytest.raises(CheckpointError, match="2 rank"):
        Trainer(RunConfig(**{**OPTIONS, "iters": 500}), tmp_path / "ddp", progress=False, resume=True).run()


def test_compiled_ranks_take_the_closed_form_step_and_stay_identical(tmp_path):
    """--compile under torchrun: each rank's closed-form TB gradient, averaged over the ranks,
    trains the same network on both (from rank 0's initial weights), as close to the target as
    the eager ranks get."""
    # rank 1 draws random numbers while building its environment: rank 0's start is broadcast
    _train_ranks(tmp_path / "compiled", compile=True, draw_on_rank1=True)
    for rank in (0, 1):
        step = json.loads((tmp_path / "compiled" / f"step{rank}.json").read_text())
        assert step == {"closed_form": True, "compiled": True}
    first, second = _rank_parameters(tmp_path / "compiled", 0), _rank_parameters(tmp_path / "compiled", 1)
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert json.loads((tmp_path / "compiled" / "summary.json").read_text())["l1"] < 0.05


def test_conditional_ranks_stay_identical_and_match_each_exact_target(tmp_path):
    """A temperature-conditioned run on 2 ranks: each rank draws its own betas (contexts) from
    its own stream, the averaged gradients keep the ranks identical, and the sampler matches
    the exact target at every evaluated beta as the one-process test does."""
    _train_ranks(tmp_path / "conditional", env_args={"ndim": 2, "height": 6}, condition="beta",
                 beta_range="0.5,2", eval_contexts="0.5;1.1;2", iters=1500, hidden=64, log_every=100)
    first, second = _rank_parameters(tmp_path / "conditional", 0), _rank_parameters(tmp_path / "conditional", 1)
    assert all(torch.equal(first[name], second[name]) for name in first)
    contexts = json.loads((tmp_path / "conditional" / "summary.json").read_text())["contexts"]
    assert [c["beta"] for c in contexts] == [0.5, 1.1, 2.0]
    for entry in contexts:
        assert entry["l1"] < 0.25 and abs(entry["log_z"] - entry["log_z_true"]) < 0.25, entry


def test_a_distributed_run_resumes_exactly(tmp_path):
    _train_ranks(tmp_path / "whole", iters=120, replay_size=64)
    _train_ranks(tmp_path / "halves", iters=60, replay_size=64)
    _train_ranks(tmp_path / "halves", resume=True, iters=120, replay_size=64)
    for rank in (0, 1):
        whole, halves = _rank_parameters(tmp_path / "whole", rank), _rank_parameters(tmp_path / "halves", rank)
        assert all(torch.equal(whole[name], halves[name]) for name in whole)


def test_the_cli_trains_under_torchrun(tmp_path):
    out = tmp_path / "cli"
    result = _torchrun("-m", "gflownets", "train", "hypergrid", "--ndim", "2", "--height", "4", "--iters", "100",
                       "--batch-size", "16", "--threads", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["ranks"] == 2  # the summary, printed once (by rank 0)
    assert json.loads((out / "summary.json").read_text())["iterations"] == 100
    assert (out / "plots").is_dir()
    odd = _torchrun("-m", "gflownets", "train", "hypergrid", "--batch-size", "15", "--out", str(tmp_path / "odd"))
    assert odd.returncode != 0 and "divisible by the number of ranks" in odd.stderr
