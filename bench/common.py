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


def table(rows: list[dict], keys: list[str]) -> str:
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


def time_to(curve: list[dict], metric: str, threshold: float, below: bool = True) -> float | None:
    """Training seconds when `metric` of a curve of {seconds, metric} points first fell below
    `threshold` (`below=False`: rose above it; None: never): the benches' time to quality."""
    return next((point["seconds"] for point in curve
                 if (point[metric] < threshold if below else point[metric] > threshold)), None)
