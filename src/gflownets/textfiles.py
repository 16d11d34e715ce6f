"""Users' text files (YAML configs, CSV data, a run's summary.json) read in one place, so that
a file that is missing, a folder, binary or not UTF-8 is one error naming the file rather than
a traceback from a decoder deep inside the reader."""

from __future__ import annotations

import csv
import io
import reprlib
from pathlib import Path

from gflownets.errors import GFlowNetError

_SHOWN = reprlib.Repr()
_SHOWN.maxstring = 60
_SHOWN.maxother = 60


def shown(value: object) -> str:
    """A short repr of user data for an error message (a 5000-digit cell stays one line)."""
    return _SHOWN.repr(value)


def is_number(text: str) -> bool:
    """Whether a cell holds a number as Python reads one (nan and inf included)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_text(path: str | Path, error: type[GFlowNetError], what: str) -> str:
    """The text of `path` as UTF-8 (a leading byte-order mark, as spreadsheet programs write
    it, dropped); anything else raises `error` naming `what` and the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise error(f"cannot read {what} {path}: {err.strerror or err}") from None
    if b"\x00" in data:
        raise error(f"{what} {path} is not UTF-8 text: it holds NUL bytes (a binary file, or UTF-16)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise error(f"{what} {path} is not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start}); "
                    "save it as UTF-8") from None


def read_csv_rows(path: str | Path, error: type[GFlowNetError], what: str) -> list[list[str]]:
    """The non-blank rows of a CSV file, each cell stripped of spaces and trailing empty cells
    dropped (a spreadsheet's trailing commas are not columns); errors as `read_text`'s."""
    reader = csv.reader(io.StringIO(read_text(path, error, what), newline=""))
    rows = []
    try:
        for row in reader:
            cells = [cell.strip() for cell in row]
            while cells and not cells[-1]:
                cells.pop()
            if cells:
                rows.append(cells)
    except csv.Error as err:
        raise error(f"{what} {path}, line {reader.line_num}: not valid CSV ({err})") from None
    return rows
