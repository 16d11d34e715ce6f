"""Plots of a run: training curves for every run; learned vs target distribution where the
state graph is exact; whatever the environment adds with its `extra_plots` hook (which draws
with the array-level primitives of `gflownets.figures`). A plot too large to draw is skipped with
one line on stderr saying which and why; the others, and the run, go on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from gflownets.figures import check_points, plot_distribution_scatter, skipped_plots  # noqa: E402


def write_plots(run: Any, folder: Path) -> list[Path]:
    """Every plot of a run under `folder`; returns their paths. `run` needs `.env`, `.graph`
    (a StateGraph or None), `.eval_policy`, `.out_dir`, `.config.seed` and
    `.sample_objects(n, generator)` (a Trainer has them). The environment's `extra_plots`
    come first; the generic learned-vs-target scatter `distribution.png` is drawn unless the
    environment wrote a file of that name itself (the 2-D hypergrid draws heatmaps there)."""
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with skipped_plots():
        written.append(plot_training_curves(run.out_dir / "metrics.jsonl", folder / "training.png"))
    extra: list[Path] = []
    with skipped_plots():  # environments skip their own plots one by one; this catches the others
        extra = [Path(path) for path in run.env.extra_plots(run, folder)]
    graph = run.graph
    if graph is not None and not any(path.name == "distribution.png" for path in extra):
        with skipped_plots():
            out = folder / "distribution.png"
            check_points(out, len(graph.terminal_ids))  # before the exact pass
            learned = graph.terminal_distribution(run.eval_policy).cpu().numpy()
            written.append(plot_distribution_scatter(learned, graph.target.cpu().numpy(), out))
    return written + extra


def plot_training_curves(metrics_path: Path, out: Path) -> Path:
    """Loss and distance to the target; when the log has them, modes found and the top-k
    reward/score of samples (sequence environments) in extra panels."""
    if metrics_path.exists():
        with open(metrics_path) as handle:
            check_points(out, sum(1 for _ in handle))  # before reading them all
    lines = metrics_path.read_text().splitlines() if metrics_path.exists() else []
    records = [json.loads(line) for line in lines if line.strip()]
    top_keys = sorted({k for r in records for k in r if k.startswith("top") and
                       k.endswith(("_reward_samples", "_score_samples"))} |
                      ({"max_score_samples"} if any("max_score_samples" in r for r in records) else set()))
    has_modes = any("modes_found" in r for r in records)
    distance_keys = (("l1", "exact L1"), ("l1_samples", "L1 from samples"),
                     ("l1_contexts_mean", "exact L1, mean over contexts"))
    has_distance = any(key in r for r in records for key, _ in distance_keys)
    n_panels = 1 + int(has_distance or not (has_modes or top_keys)) + int(has_modes) + int(bool(top_keys))
    fig, axes = plt.subplots(1, n_panels, figsize=(5 * n_panels, 3.6), squeeze=False)
    axes = list(axes[0])
    steps = [r["step"] for r in records]
    ax = axes.pop(0)
    ax.plot(steps, [r["loss"] for r in records])
    ax.set(xlabel="iteration", ylabel="loss", yscale="log", title="training loss")
    if has_distance or not (has_modes or top_keys):
        ax = axes.pop(0)
        evals = [r for r in records if any(key in r for key, _ in distance_keys)]
        for key, label in distance_keys:
            points = [(r["step"], r[key]) for r in evals if key in r]
            if points:
                ax.plot(*zip(*points), marker="o", ms=3, label=label)
        ax.set(xlabel="iteration", ylabel="L1 = sum |p - p*|", title="distance to target")
        if evals:
            ax.legend()
    if has_modes:
        ax = axes.pop(0)
        points = [(r["step"], r["modes_found"]) for r in records if "modes_found" in r]
        ax.plot(*zip(*points), marker="o", ms=3)
        n_modes = next(r["n_modes"] for r in records if "n_modes" in r)
        ax.axhline(n_modes, color="gray", lw=1, ls="--")
        ax.set(xlabel="iteration", ylabel="modes found", title=f"modes found (of {n_modes})")
    if top_keys:
        ax = axes.pop(0)
        for key in top_keys:
            points = [(r["step"], r[key]) for r in records if key in r]
            ax.plot(*zip(*points), marker="o", ms=3, label=key.removesuffix("_samples"))
        ax.set(xlabel="iteration", ylabel="value", title="top-k of samples")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
