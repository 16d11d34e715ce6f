"""Shared helpers of the benchmark scripts: a time-bounded training loop that keeps a curve."""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def train_with_budget(trainer, iters: int, seconds: float, every: int, on_batch=None, log=print):
    """Train until `iters` iterations or `seconds` of training, whichever comes first. Every
    `every` iterations append {step, seconds, modes_found, ...} to the returned curve;
    `on_batch(batch)` sees each training batch (for task-specific running statistics) and
    returns a dict merged into the curve points."""
    curve = []
    extra: dict = {}
    started = time.perf_counter()
    while trainer.step < iters and time.perf_counter() - started < seconds:
        loss = trainer.train_step()  # the same step a user's run takes
        batch = trainer.last_batch
        trainer.step += 1
        if on_batch is not None:
            extra = on_batch(batch) or extra
        if trainer.step % every == 0:
            point = {"step": trainer.step, "seconds": round(time.perf_counter() - started, 1),
                     "loss": loss, "log_z": float(trainer.policy.log_z.detach())}
            if trainer.modes is not None:
                point["modes_found"] = trainer.modes.n_found
            point.update(extra)
            curve.append(point)
            log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items()))
    trainer.train_seconds = time.perf_counter() - started
    return curve


def machine() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "processor": platform.processor() or platform.machine()}


def write_json(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def save_result(result: dict, args, default_name: str) -> Path:
    """`result` with the run's arguments and machine, as JSON at `args.out` or
    bench/results/`default_name`; prints where."""
    result.update(args=dict(vars(args)), machine=machine())
    path = Path(args.out) if getattr(args, "out", None) else RESULTS / default_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def table(rows: list[dict], keys: list[str] | None = None) -> str:
    """Right-aligned columns of `keys` (default: every key of the rows, in order of first use)."""
    keys = list(dict.fromkeys(k for row in rows for k in row)) if keys is None else keys
    widths = [max(len(k), *(len(_fmt(r.get(k))) for r in rows)) for k in keys]
    lines = ["  ".join(k.rjust(w) for k, w in zip(keys, widths))]
    lines += ["  ".join(_fmt(r.get(k)).rjust(w) for k, w in zip(keys, widths)) for r in rows]
    return "\n".join(lines)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def median(values: list) -> float | None:
    """The median of the values that are not None (None if there are none)."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def value_at(curve: list[dict], metric: str, seconds: float) -> float | None:
    """`metric` at the last evaluation of a curve of {seconds, metric} points made within
    `seconds` of training (None: none was)."""
    within = [point[metric] for point in curve if point["seconds"] <= seconds * (1 + 1e-9)]
    return within[-1] if within else None


def add_equal_time(runs: list[dict], metric: str, group: tuple[str, ...] = ("seed",)) -> None:
    """The benches' quality at equal wall time: every run of a group (the systems of one seed;
    all trained the same iterations) is read at the training seconds of the group's fastest run,
    at its last evaluation within them. Sets `equal_time_seconds` and `<metric>_at_equal_time`
    on each run (None where a run had not been evaluated by then)."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault(tuple(run.get(key) for key in group), []).append(run)
    for members in groups.values():
        budget = min(run["seconds"] for run in members)
        for run in members:
            run["equal_time_seconds"] = budget
            run[f"{metric}_at_equal_time"] = value_at(run.get("curve", []), metric, budget)


def resummarise(path: str | Path, summarise) -> dict:
    """A bench's results file with its summary and table made again from its stored runs (after
    the summary gained a column), without training anything: `summarise(data)` returns the new
    (summary, table lines); the runs, settings and date are kept."""
    path = Path(path)
    data = json.loads(path.read_text())
    data["summary"], data["table"] = summarise(data)
    data["resummarised"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    path.write_text(json.dumps(data, indent=2))
    print("\n".join(data["table"]))
    print(f"rewrote {path}")
    return data


def time_to(curve: list[dict], metric: str, threshold: float, below: bool = True) -> float | None:
    """Training seconds when `metric` of a curve of {seconds, metric} points first fell below
    `threshold` (`below=False`: rose above it; None: never): the benches' time to quality."""
    return next((point["seconds"] for point in curve
                 if (point[metric] < threshold if below else point[metric] > threshold)), None)
