"""A training run killed (SIGKILL) or stopped (SIGTERM, SIGINT) at a random iteration, then
resumed, ends with exactly the parameters of an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gflownets.training import load_checkpoint_file

ROOT = Path(__file__).resolve().parents[1]
ITERS = 300
COMMAND = [sys.executable, "-m", "gflownets", "train", "hypergrid", "--ndim", "2", "--height", "4",
           "--iters", str(ITERS), "--batch-size", "8", "--reward", "tests.plugins.slow_reward:slow_grid_reward",
           "--checkpoint-every", "7", "--log-every", "1", "--eval-every", "100", "--replay-size", "64",
           "--threads", "1", "--quiet"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _train(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, "--out", str(out), *extra], env=_env(), capture_output=True, text=True,
                          timeout=300)


def _logged_steps(out: Path) -> int:
    path = out / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _interrupt(out: Path, signum: int, at_step: int) -> subprocess.Popen:
    """Start a run and send `signum` once it has logged `at_step` iterations."""
    process = subprocess.Popen([*COMMAND, "--out", str(out)], env=_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while _logged_steps(out) < at_step and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signum)
    process.wait(timeout=120)
    return process


def _parameters(out: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint_file(out / "checkpoint.pt")
    assert state["step"] == ITERS
    return {**{f"policy.{k}": v for k, v in state["policy"].items()},
            **{f"ema.{k}": v for k, v in (state["ema_policy"] or {}).items()}}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("reference") / "run"
    result = _train(out)
    assert result.returncode == 0, result.stderr
    return _parameters(out)


def _assert_identical(resumed: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    assert resumed.keys() == reference.keys()
    for name, value in reference.items():
        assert torch.equal(resumed[name], value), name


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_interrupted_run_resumes_to_the_uninterrupted_parameters(tmp_path, reference, signum):
    at_step = random.Random(f"{signum}").randint(10, ITERS - 60)
    out = tmp_path / "run"
    process = _interrupt(out, signum, at_step)
    stderr = process.stderr.read()
    if signum == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
    else:  # the iteration finished, a checkpoint was written, and the message says how to go on
        assert process.returncode == 128 + signum, stderr
        assert "--resume" in stderr and signal.Signals(signum).name in stderr
        saved = load_checkpoint_file(out / "checkpoint.pt")["step"]
        assert saved >= at_step  # not the last periodic checkpoint: nothing since it is lost
        assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"] == saved
    (out / ".checkpoint.pt.leftover.tmp").write_bytes(b"torn")  # what a write killed midway leaves
    result = _train(out, "--resume")
    assert result.returncode == 0, result.stderr
    assert not (out / ".checkpoint.pt.leftover.tmp").exists()
    _assert_identical(_parameters(out), reference)
    logged = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, ITERS + 1))  # no step lost or logged twice
