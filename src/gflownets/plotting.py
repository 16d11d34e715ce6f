"""Plots of a run: training curves for every run; learned vs target distribution; for 2-D
grids, side-by-side heatmaps and the forward/backward policies drawn as arrows; whatever the
environment adds with its `extra_plots` hook (matrix heatmaps: `plot_matrices`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

if TYPE_CHECKING:
    from gflownets.training.trainer import Trainer


def write_plots(trainer: Trainer, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = [plot_training_curves(trainer.out_dir / "metrics.jsonl", folder / "training.png")]
    graph = trainer.graph
    if graph is not None:
        learned = graph.terminal_distribution(trainer.eval_policy).numpy()
        target = graph.target.numpy()
        if trainer.env.name == "hypergrid" and trainer.env.ndim == 2:
            written.append(plot_grid_distributions(graph, learned, target, folder / "distribution.png"))
            written.append(plot_grid_policy(trainer, folder / "policy.png"))
        else:
            written.append(plot_distribution_scatter(learned, target, folder / "distribution.png"))
    written += trainer.env.extra_plots(trainer, folder)
    return written


def plot_training_curves(metrics_path: Path, out: Path) -> Path:
    """Loss and distance to the target; when the log has them, modes found and the top-k
    reward/score of samples (sequence environments) in extra panels."""
    lines = metrics_path.read_text().splitlines() if metrics_path.exists() else []
    records = [json.loads(line) for line in lines if line.strip()]
    top_keys = sorted({k for r in records for k in r if k.startswith("top") and
                       k.endswith(("_reward_samples", "_score_samples"))} |
                      ({"max_score_samples"} if any("max_score_samples" in r for r in records) else set()))
    has_modes = any("modes_found" in r for r in records)
    has_distance = any("l1" in r or "l1_samples" in r for r in records)
    n_panels = 1 + int(has_distance or not (has_modes or top_keys)) + int(has_modes) + int(bool(top_keys))
    fig, axes = plt.subplots(1, n_panels, figsize=(5 * n_panels, 3.6), squeeze=False)
    axes = list(axes[0])
    steps = [r["step"] for r in records]
    ax = axes.pop(0)
    ax.plot(steps, [r["loss"] for r in records])
    ax.set(xlabel="iteration", ylabel="loss", yscale="log", title="training loss")
    if has_distance or not (has_modes or top_keys):
        ax = axes.pop(0)
        evals = [r for r in records if "l1" in r or "l1_samples" in r]
        for key, label in (("l1", "exact L1"), ("l1_samples", "L1 from samples")):
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


def _grid(graph, values: np.ndarray, height: int) -> np.ndarray:
    image = np.zeros((height, height))
    coords = graph.terminal_states.numpy()
    image[coords[:, 1], coords[:, 0]] = values
    return image


def plot_grid_distributions(graph, learned: np.ndarray, target: np.ndarray, out: Path) -> Path:
    height = int(graph.states.max()) + 1
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    vmax = max(learned.max(), target.max())
    for ax, values, title in ((axes[0], target, "target R(x)/Z"), (axes[1], learned, "learned P(x)")):
        im = ax.imshow(_grid(graph, values, height), origin="lower", cmap="viridis", vmin=0, vmax=vmax)
        ax.set(title=title, xlabel="x0", ylabel="x1")
    l1 = np.abs(learned - target).sum()
    fig.suptitle(f"exact L1 = {l1:.4f}")
    fig.colorbar(im, ax=axes, shrink=0.85)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_grid_policy(trainer: Trainer, out: Path) -> Path:
    """Arrows as in the tutorial: length = probability of each move; dots = exit probability."""
    graph = trainer.graph
    xy = graph.states.numpy()
    pf = graph.forward_log_probs(trainer.eval_policy).exp().numpy()
    pb = graph.backward_log_probs(trainer.eval_policy).exp().numpy()
    fmask = graph.forward_mask.numpy()
    bmask = trainer.env.backward_mask(graph.states).numpy()
    pf, pb = np.where(fmask, pf, 0.0), np.where(bmask, pb, 0.0)
    zero = np.zeros(len(xy))
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    kw = dict(angles="xy", scale_units="xy", scale=2.2, width=0.006)
    axes[0].quiver(xy[:, 0], xy[:, 1], pf[:, 0], zero, color="tab:blue", **kw)
    axes[0].quiver(xy[:, 0], xy[:, 1], zero, pf[:, 1], color="tab:blue", **kw)
    axes[0].scatter(xy[:, 0], xy[:, 1], s=120 * pf[:, 2], color="tab:red", label="exit")
    axes[0].set(title="forward policy P_F")
    axes[0].legend(loc="upper left", fontsize=8)
    axes[1].quiver(xy[:, 0], xy[:, 1], -pb[:, 0], zero, color="tab:green", **kw)
    axes[1].quiver(xy[:, 0], xy[:, 1], zero, -pb[:, 1], color="tab:green", **kw)
    axes[1].set(title="backward policy P_B")
    height = int(xy.max()) + 1
    for ax in axes:
        ax.set(xlim=(-0.8, height - 0.2), ylim=(-0.8, height - 0.2), xlabel="x0", ylabel="x1", aspect="equal")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_distribution_scatter(learned: np.ndarray, target: np.ndarray, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    ax.scatter(target, learned, s=8, alpha=0.6)
    low = max(min(target.min(), learned.min()), 1e-12)
    high = max(target.max(), learned.max())
    ax.plot([low, high], [low, high], color="gray", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="target R(x)/Z", ylabel="learned P(x)",
           title=f"{len(target)} objects, exact L1 = {np.abs(learned - target).sum():.4f}")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_matrices(panels: list[tuple[str, np.ndarray]], labels: list[str], out: Path) -> Path:
    """Side-by-side heatmaps of square matrices in [0, 1] (e.g. edge marginals P(i -> j)):
    rows are sources, columns targets, each cell annotated with its value."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 0.8, 4.0), squeeze=False,
                             layout="constrained")
    n = len(labels)
    for ax, (title, matrix) in zip(axes[0], panels):
        im = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
        ax.set(title=title, xticks=range(n), yticks=range(n), xlabel="to", ylabel="from")
        ax.set_xticklabels(labels, rotation=90 if n > 8 else 0, fontsize=8)
        ax.set_yticklabels(labels, fontsize=8)
        if n <= 12:
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if matrix[i, j] > 0.6 else "black")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.85)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
