"""The files of a run folder: config.yaml, metrics.jsonl, checkpoint.pt, summary.json, plots/.
Every file but the metrics log is written atomically (a crash leaves the old file or the new
one); the log is appended to, and a line torn by a crash is dropped on resume. Checkpoints hold
plain tensors and data only: they load with `weights_only=True`, so a run folder someone else
made cannot execute code."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from gflownets.errors import CheckpointError
from gflownets.training.io import atomic_torch_save, atomic_write_json, atomic_write_text, json_safe

#: bumped whenever the checkpoint layout changes; older ones are refused with a clear error
CHECKPOINT_FORMAT = 2
#: the parts of a checkpoint every reader relies on, with their types
REQUIRED = {"config": dict, "env": dict, "step": int, "policy": dict, "optimizer": dict, "source": dict,
            "generator": torch.Tensor}
#: what makes a folder a run folder (and what `--overwrite` removes)
RUN_FILES = ("config.yaml", "metrics.jsonl", "checkpoint.pt", "summary.json")


class RunFiles:
    """One run folder. `metrics` is open for appending between `start` and `close`."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._metrics = None

    @property
    def checkpoint_path(self) -> Path:
        return self.folder / "checkpoint.pt"

    @property
    def plots(self) -> Path:
        return self.folder / "plots"

    @property
    def metrics_path(self) -> Path:
        return self.folder / "metrics.jsonl"

    def holds_run(self) -> bool:
        """Whether the folder already holds (part of) a run."""
        return any((self.folder / name).exists() for name in RUN_FILES)

    def clear(self) -> None:
        """Remove an earlier run's files and plots (`--overwrite`); other files are left alone."""
        for name in RUN_FILES:
            (self.folder / name).unlink(missing_ok=True)
        shutil.rmtree(self.plots, ignore_errors=True)

    def start(self, config_yaml: str, step: int) -> None:
        """Write config.yaml and open metrics.jsonl for appending, without its lines past `step`
        (so a resumed run's log equals an uninterrupted one's). Temporary files that a killed
        atomic write left behind are removed."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.folder.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
        atomic_write_text(self.folder / "config.yaml", config_yaml)
        if self.metrics_path.exists():
            kept = [line for line in self.metrics_path.read_text(errors="replace").splitlines()
                    if _step_of(line) is not None and _step_of(line) <= step]
            atomic_write_text(self.metrics_path, "".join(line + "\n" for line in kept))
        self._metrics = open(self.metrics_path, "a")

    def log(self, record: dict[str, Any]) -> None:
        if self._metrics is not None:
            self._metrics.write(json.dumps(json_safe(record), allow_nan=False) + "\n")
            self._metrics.flush()

    def close(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """The checkpoint, after syncing the log to disk: a crash never leaves a checkpoint whose
        metrics lines were lost."""
        if self._metrics is not None:
            os.fsync(self._metrics.fileno())
        atomic_torch_save(self.checkpoint_path, {"format": CHECKPOINT_FORMAT, **state})

    def save_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.folder / "summary.json", summary)


def _step_of(line: str) -> int | None:
    """The step of a metrics line; None for a blank or torn one (a crash mid-append)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record.get("step") if isinstance(record, dict) else None


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def safe_torch_load(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """A torch file's contents as plain tensors and data on `device`: `weights_only`, so a file
    holding code is refused (naming what it holds) instead of run; any unreadable file is a
    one-line CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets a clear one-line error
        text = str(err).strip()
        found = re.search(r"GLOBAL (\S+)", text)  # what weights_only refuses: code, classes, functions
        if found:
            raise CheckpointError(f"{path} holds more than tensors and plain data ({found.group(1)}): refused, "
                                  "since loading it could execute code; a gflownets checkpoint never does") from None
        if isinstance(err, pickle.UnpicklingError):
            raise CheckpointError(f"cannot read checkpoint {path}: the file is damaged or not a torch checkpoint") from None
        raise CheckpointError(f"cannot read checkpoint {path}: "
                              f"{text.splitlines()[0] if text else type(err).__name__}") from None


def load_checkpoint_file(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint's contents, as plain tensors and data on `device` (never unpickled code)."""
    path = Path(path)
    state = safe_torch_load(path, device)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a gflownets checkpoint (format {CHECKPOINT_FORMAT})")
    damaged = [key for key, kind in REQUIRED.items() if not isinstance(state.get(key), kind)]
    if damaged:
        raise CheckpointError(f"{path} is damaged: {', '.join(damaged)} missing or of the wrong type")
    return state
