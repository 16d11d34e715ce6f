"""Files of a run: atomic writes, and the CSV of finished objects that `sample` writes and
offline training reads."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gflownets.envs.base import DiscreteEnv
from gflownets.errors import DataError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`: a reader
    (or a crash) sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def write_objects_csv(path: str | Path, env: DiscreteEnv, objects: torch.Tensor,
                      log_rewards: torch.Tensor) -> None:
    """One finished object per row (its columns, then log_reward), with a header; the tensors
    may be on any device."""
    rows = env.objects_to_rows(objects)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*env.object_columns, "log_reward"])
    for row, log_r in zip(rows.tolist(), log_rewards.cpu().tolist()):
        writer.writerow([*row, repr(float(log_r))])
    atomic_write_text(path, buffer.getvalue())


def read_objects_csv(path: str | Path, env: DiscreteEnv) -> torch.Tensor:
    """Finished objects from a CSV: the first len(object_columns) columns of each row are the
    object; a header row is allowed, further columns (log_reward, ...) are ignored. Rewards are
    recomputed by the environment. Errors name the data row (1 = first object) and the value.
    The objects are on the environment's device."""
    width = len(env.object_columns)
    try:
        with open(path, newline="") as handle:
            lines = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from None
    if lines and not _is_int(lines[0][0].strip()):
        lines = lines[1:]  # header
    if not lines:
        raise DataError(f"{path}: no objects")
    rows = np.empty((len(lines), width), dtype=np.int64)
    for r, line in enumerate(lines):
        if len(line) < width:
            raise DataError(f"{path}: row {r + 1} has {len(line)} column(s), "
                            f"{env.name} objects need {width} ({', '.join(env.object_columns)})")
        for c in range(width):
            cell = line[c].strip()
            if not _is_int(cell):
                raise DataError(f"{path}: row {r + 1}, column {env.object_columns[c]}: "
                                f"{cell!r} is not an integer")
            rows[r, c] = int(cell)
    try:
        objects = env.objects_from_rows(rows).to(env.device)
        env.validate_objects(objects)
    except DataError as err:
        raise DataError(f"{path}: {err}") from None
    return objects


def _is_int(text: str) -> bool:
    try:
        int(text)
        return True
    except ValueError:
        return False
