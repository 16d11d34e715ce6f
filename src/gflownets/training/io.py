"""Files of a run: atomic writes, and the CSV of finished objects that `sample` writes and
offline training reads."""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from gflownets.envs.base import DiscreteEnv
from gflownets.errors import DataError
from gflownets.textfiles import is_number, read_csv_rows, shown


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`: a reader
    (or a crash) sees the old file or the new one, never half of one."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def make_parent(path: Path) -> None:
    """Create the folders above `path`; a file in their place is a NotADirectoryError naming
    it (mkdir would say "File exists" of the file, which reads as if the target existed)."""
    blocking = next((p for p in path.parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder", str(blocking))
    path.parent.mkdir(parents=True, exist_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, data: Any) -> None:
    """`data` as JSON; NaN and infinities (a metric undefined for a run, such as a mean over
    no values) are written as null, so the file is valid JSON for every reader (bare NaN is
    not JSON: jq, browsers and most languages refuse it)."""
    atomic_write_text(path, json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")


def json_safe(data: Any) -> Any:
    """`data` with every non-finite float, in nested dicts, lists and tuples too, as None."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: json_safe(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(value) for value in data]
    return data


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def write_objects_csv(path: str | Path, env: DiscreteEnv, objects: torch.Tensor,
                      log_rewards: torch.Tensor) -> None:
    """One finished object per row (its columns, then log_reward), with a header; the tensors
    may be on any device."""
    write_objects_csv_chunks(path, env, [(objects, log_rewards)])


def write_objects_csv_chunks(path: str | Path, env: DiscreteEnv,
                             chunks: Iterable[tuple[torch.Tensor, torch.Tensor]],
                             progress: Callable[[int], Any] | None = None) -> int:
    """`write_objects_csv` of objects that arrive in (objects, log-rewards) chunks, drawn as the
    file is written (`gflownets sample`): each chunk is appended as it comes, so memory holds one
    chunk whatever the number of rows (each is flushed to the file before the next is drawn), and the file replaces `path` only once complete (an error
    or an interrupt leaves `path` as it was and no temporary file). `progress(k)` is called after
    each chunk of k rows. Returns the number of rows written."""
    written = 0
    with atomic_open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*env.object_columns, LOG_REWARD_COLUMN, *env.description_columns])
        for objects, log_rewards in chunks:
            rows = env.objects_to_rows(objects)
            log_rewards = log_rewards.cpu().tolist()
            descriptions = env.describe_objects(objects)
            writer.writerows([*row, repr(float(log_r)), *described] for row, log_r, described
                             in zip(rows.tolist(), log_rewards, descriptions))
            handle.flush()  # the chunk leaves the process's buffers before the next one is drawn
            written += len(rows)
            if progress is not None:
                progress(len(rows))
    return written


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """A file to write `path` through, as `atomic_write_bytes` writes it for data written in
    pieces: a temporary file in the same folder, fsynced and renamed over `path` when the block
    ends, removed (and `path` untouched) when the block raises or is interrupted."""
    path = Path(path)
    make_parent(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


#: the column after an object's columns that `write_objects_csv` adds (ignored when read)
LOG_REWARD_COLUMN = "log_reward"
INT64 = np.iinfo(np.int64)


def read_objects_csv(path: str | Path, env: DiscreteEnv) -> torch.Tensor:
    """Finished objects from a CSV in the form `write_objects_csv` writes: the object's columns
    (`env.object_columns`), optionally followed by log_reward and the environment's description
    columns (a molecule's SMILES), which are ignored (rewards are recomputed by the environment).
    A header row is optional; one that is there must name exactly these columns, or, where the
    environment reads objects from a description column, name that column (`smiles`), whose
    values alone are then read (`env.objects_from_descriptions`). Without a header, a trailing log_reward must be written as a float
    (-1.5, 0.0, as `sample` writes it), so that one object column too many is not mistaken for
    it. Any other column is refused, not dropped: it means the file describes other objects
    than the environment's. Errors name the data row (1 = first object), the column and the
    value. The objects are on the environment's device."""
    columns = env.object_columns
    width = len(columns)
    lines = read_csv_rows(path, DataError, "offline data file")
    header = lines.pop(0) if lines and not is_number(lines[0][0]) else None
    described = [name for name in header or () if name in env.description_columns]
    if described and header[0] != columns[0]:
        return _objects_from_descriptions(path, header, lines, described[0], env)
    if header is not None:
        _check_header(path, header, env)
    if not lines:
        raise DataError(f"{path}: no objects")
    rows = np.empty((len(lines), width), dtype=np.int64)
    for r, line in enumerate(lines, start=1):
        if len(line) < width:
            raise DataError(f"{path}: row {r} has {len(line)} column(s), "
                            f"{env.name} objects need {width} ({_names(columns)})")
        extra = line[width:]
        if header is not None and len(line) > len(header):
            raise DataError(f"{path}: row {r} has {len(line)} values, the header names {len(header)} columns")
        if header is None and (len(extra) > 1 or (extra and not _is_float_not_int(extra[0]))):
            raise DataError(f"{path}: row {r} has {len(line)} columns, {env.name} objects have {width} "
                            f"({_names(columns)}); column {width + 1} ({shown(extra[0])}) is not a "
                            f"{LOG_REWARD_COLUMN} written as a float: a header row naming the columns "
                            "says what they are")
        for c in range(width):
            rows[r - 1, c] = _int_cell(path, r, columns[c], line[c])
    try:
        objects = env.objects_from_rows(rows).to(env.device)
        env.validate_objects(objects)
    except DataError as err:
        raise DataError(f"{path}: {err}") from None
    return objects


def _objects_from_descriptions(path: str | Path, header: list[str], lines: list[list[str]], column: str,
                               env: DiscreteEnv) -> torch.Tensor:
    """Objects read from one description column (a file of SMILES under a `smiles` header, with
    any other columns, a name or a measured value, left aside)."""
    if not lines:
        raise DataError(f"{path}: no objects")
    index = header.index(column)
    values = []
    for r, line in enumerate(lines, start=1):
        if len(line) <= index or not line[index].strip():
            raise DataError(f"{path}: row {r} has no {column} value (column {index + 1})")
        values.append(line[index].strip())
    try:
        objects = env.objects_from_descriptions(column, values).to(env.device)
        env.validate_objects(objects)
    except DataError as err:
        raise DataError(f"{path}: {err}") from None
    return objects


def _check_header(path: str | Path, header: list[str], env: DiscreteEnv) -> None:
    """Refuse a header that does not name the environment's object columns, then optionally
    log_reward (and the environment's description columns), naming the first column that differs."""
    expected = [*env.object_columns, LOG_REWARD_COLUMN, *env.description_columns]
    then = ", ".join([LOG_REWARD_COLUMN, *env.description_columns])
    wanted = f"{env.name} objects have the columns {_names(env.object_columns)}, then optionally {then}"
    if env.description_columns:
        wanted += f" (or a header naming a {env.description_columns[0]!r} column, read alone)"
    for i, name in enumerate(header):
        if i >= len(expected):
            raise DataError(f"{path}: the header has an extra column {shown(name)}; {wanted}")
        if name != expected[i]:
            raise DataError(f"{path}: column {i + 1} of the header is {shown(name)}, not "
                            f"{expected[i]!r}; {wanted}")
    if len(header) < len(env.object_columns):
        raise DataError(f"{path}: the header names {len(header)} column(s); {wanted}")


def _names(columns: list[str]) -> str:
    """Column names for a message: all of a few, the first and last of many."""
    return ", ".join(columns) if len(columns) <= 8 else f"{', '.join(columns[:4])}, ..., {columns[-1]}"


def _int_cell(path: str | Path, row: int, column: str, cell: str) -> int:
    """The integer a cell holds; DataError naming the row and column if it holds none that
    fits in 64 bits."""
    try:
        value = int(cell)
    except ValueError:
        raise DataError(f"{path}: row {row}, column {column}: {shown(cell)} is not an integer") from None
    if not INT64.min <= value <= INT64.max:
        raise DataError(f"{path}: row {row}, column {column}: {shown(cell)} is out of range "
                        "(object entries are 64-bit integers)")
    return value


def _is_float_not_int(text: str) -> bool:
    """Whether `text` is a number written as a float (what `write_objects_csv` writes as a
    log_reward), not as an integer (what an object column holds)."""
    try:
        int(text)
    except ValueError:
        return is_number(text)
    return False
