"""Drawing primitives on plain arrays (matplotlib and numpy only; imports nothing else of the
package), so that environments can draw their own figures: `plot_matrices` (heatmaps of square
matrices), `plot_distribution_scatter` (learned vs target probabilities), `plot_point_panels` (2-D samples
side by side), `plot_curves` (named series), `plot_pareto`
(objective values with the exact front), and for 2-D grids
`plot_grid_distributions` (side-by-side heatmaps) and `plot_grid_policy` (policies as arrows).
Every function writes one PNG file and returns its path.

Each refuses a figure larger than it can draw (`MAX_CELLS`, `MAX_POINTS`, `MAX_ARROWS`) with
`PlotSkipped` before allocating anything for it; `skipped_plots` turns that into one line on
stderr, so a run's other plots and files are still written. Callers that compute costly inputs
call the same check (`check_points`, `check_heatmap`, `check_arrows`) first."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

#: the most cells of one heatmap: a 1000 x 1000 grid (the figure has ~500 pixels a side; the
#: 2-D probe that crashed, 1414 x 1414, needed more than 9 GB)
MAX_CELLS = 1_000_000
#: the most points of a scatter plot or of a training curve
MAX_POINTS = 1_000_000
#: the most arrows of a policy plot: a 200 x 200 grid (~3 s); more are thinner than a pixel and
#: matplotlib keeps a few kB per arrow
MAX_ARROWS = 40_000


class PlotSkipped(ValueError):
    """A plot that is not drawn (`out`), and why (`reason`): raised before anything is
    allocated for it, reported by `skipped_plots`."""

    def __init__(self, out: Path, reason: str):
        super().__init__(f"{out}: {reason}")
        self.out, self.reason = Path(out), reason


def check_plot_size(out: Path, count: int, limit: int, what: str) -> None:
    """PlotSkipped unless `count` `what` (cells, points, arrows) are within `limit`."""
    if count > limit:
        raise PlotSkipped(out, f"{count} {what}, more than the {limit} it draws")


def check_points(out: Path, n: int) -> None:
    """The limit of a scatter plot or curve of `n` points."""
    check_plot_size(out, n, MAX_POINTS, "points")


def check_heatmap(out: Path, side: int) -> None:
    """The limit of a side x side heatmap."""
    check_plot_size(out, side ** 2, MAX_CELLS, "cells in a heatmap")


def check_arrows(out: Path, n: int) -> None:
    """The limit of a policy plot of `n` cells, each with its arrows."""
    check_plot_size(out, n, MAX_ARROWS, "cells of arrows")


def skip_plot(out: Path, reason: str) -> None:
    """One line on stderr: which plot is not drawn (named by its folder and file) and why."""
    out = Path(out)
    print(f"skipped {out.parent.name}/{out.name}: {reason}", file=sys.stderr)


@contextlib.contextmanager
def skipped_plots() -> Iterator[None]:
    """Runs the code of one plot; where it raises PlotSkipped, says so (`skip_plot`) and goes on."""
    try:
        yield
    except PlotSkipped as skipped:
        skip_plot(skipped.out, skipped.reason)


def _array(values, dtype=None) -> np.ndarray:
    """`values` as a numpy array; a torch tensor, on any device, is copied to the CPU first."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype)


def plot_distribution_scatter(learned: np.ndarray, target: np.ndarray, out: Path) -> Path:
    """Learned against target probability of each object, on log axes, with the diagonal."""
    learned, target = _array(learned), _array(target)
    check_points(out, len(target))
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


def plot_point_panels(panels: list[tuple[str, np.ndarray]], out: Path, limits: tuple[float, float] = (-4.0, 4.0)
                      ) -> Path:
    """Side-by-side scatter plots of 2-D points ((n, 2) arrays), one panel each, on shared
    square axes: decoded samples next to the data they should match."""
    for _, points in panels:
        check_points(out, len(points))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 3.2), squeeze=False, layout="constrained")
    for ax, (title, points) in zip(axes[0], panels):
        points = _array(points)
        ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.5, linewidths=0)
        ax.set(title=title, xlim=limits, ylim=limits, aspect="equal", xticks=[], yticks=[])
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], out: Path, xlabel: str, ylabel: str,
                title: str = "", xscale: str = "linear", colors: dict[str, str] | None = None,
                dashed: tuple[str, ...] = ()) -> Path:
    """Line plots of named (x, y) series on one axis, with a legend (outside the axes when there
    are many); `colors` by label (e.g. one per method), `dashed` the labels drawn dashed."""
    for x, _ in curves.values():
        check_points(out, len(x))
    many = len(curves) > 6
    fig, ax = plt.subplots(figsize=(7.4, 4.0) if many else (5.0, 3.6))
    for label, (x, y) in curves.items():
        ax.plot(_array(x), _array(y), label=label, color=(colors or {}).get(label),
                linestyle="--" if label in dashed else "-")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, xscale=xscale)
    if many:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_pareto(panels: list[tuple[str, np.ndarray]], front: np.ndarray, out: Path,
                labels: tuple[str, str] = ("f0", "f1"), colours: list[np.ndarray | None] | None = None) -> Path:
    """Side-by-side scatter plots of two objective values (points to maximise), each panel with
    the exact Pareto front as a step line; `colours` (per panel, optional) colours each point,
    e.g. by the first preference weight that generated it."""
    for _, points in panels:
        check_points(out, len(points))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 3.6), squeeze=False, layout="constrained")
    front = _array(front)
    front = front[np.argsort(front[:, 0])]
    for k, (ax, (title, points)) in enumerate(zip(axes[0], panels)):
        points = _array(points)
        colour = colours[k] if colours is not None else None
        shown = ax.scatter(points[:, 0], points[:, 1], s=6, alpha=0.5, c=colour, cmap="viridis" if colour is not None
                           else None, linewidths=0)
        ax.step(front[:, 0], front[:, 1], where="post", color="black", lw=1, label="exact front")
        ax.set(title=title, xlabel=labels[0], ylabel=labels[1], xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
        if colour is not None:
            fig.colorbar(shown, ax=ax, label="preference w0", shrink=0.8)
    axes[0][0].legend(loc="lower left", fontsize=8)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_matrices(panels: list[tuple[str, np.ndarray]], labels: list[str], out: Path) -> Path:
    """Side-by-side heatmaps of square matrices in [0, 1] (e.g. edge marginals P(i -> j)):
    rows are sources, columns targets, each cell annotated with its value."""
    check_heatmap(out, len(labels))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 0.8, 4.0), squeeze=False,
                             layout="constrained")
    n = len(labels)
    for ax, (title, matrix) in zip(axes[0], panels):
        matrix = _array(matrix)
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


def _grid_image(coords: np.ndarray, values: np.ndarray, height: int) -> np.ndarray:
    """(height, height) image holding values[k] at cell coords[k] = (x0, x1) (x0 across)."""
    image = np.zeros((height, height))
    image[coords[:, 1], coords[:, 0]] = values
    return image


def plot_grid_distributions(coords: np.ndarray, learned: np.ndarray, target: np.ndarray, out: Path,
                            height: int | None = None) -> Path:
    """Target and learned distributions over the cells of a 2-D grid, as two heatmaps.

    coords: (N, 2) integer cell coordinates (x0, x1); learned, target: (N,) probabilities of
    those cells; height: side of the grid (default: the largest coordinate + 1)."""
    learned, target = _array(learned), _array(target)
    return plot_grid_panels(coords, [("target R(x)/Z", target), ("learned P(x)", learned)], out, height,
                            f"exact L1 = {np.abs(learned - target).sum():.4f}")


def plot_grid_panels(coords: np.ndarray, panels: list[tuple[str, np.ndarray]], out: Path,
                     height: int | None = None, title: str | None = None, columns: int = 4) -> Path:
    """Distributions over the cells of a 2-D grid side by side, as heatmaps (panels: (title,
    (N,) probabilities of the cells at `coords`)), `columns` to a row. Two panels share one
    colour scale; more get one each, so that a sampler that collapses onto one cell does not
    darken every other panel."""
    coords = _array(coords, dtype=np.int64)
    height = int(coords.max()) + 1 if height is None else int(height)
    check_heatmap(out, height)
    columns = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 4.0 * rows), squeeze=False)
    shared = len(panels) <= 2
    vmax = max(float(_array(values).max()) for _, values in panels) if shared else None
    for ax, (name, values) in zip(axes.flat, panels):
        im = ax.imshow(_grid_image(coords, _array(values), height), origin="lower", cmap="viridis", vmin=0,
                       vmax=vmax)
        ax.set(title=name, xlabel="x0", ylabel="x1")
        if not shared:
            fig.colorbar(im, ax=ax, shrink=0.8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    if shared:
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.85)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_grid_policy(coords: np.ndarray, forward: np.ndarray, backward: np.ndarray, out: Path,
                     height: int | None = None) -> Path:
    """Forward and backward policies on a 2-D grid, drawn as in the tutorial: arrow length =
    probability of each move, dot size = exit probability.

    coords: (N, 2) integer cell coordinates (x0, x1); forward: (N, 3) probabilities of
    "x0 + 1", "x1 + 1" and exit in each cell; backward: (N, 2) probabilities of "x0 - 1" and
    "x1 - 1" (zeros where a move is not allowed); height: side of the grid (default: the
    largest coordinate + 1)."""
    xy = _array(coords)
    pf, pb = _array(forward), _array(backward)
    height = int(xy.max()) + 1 if height is None else int(height)
    check_arrows(out, len(xy))
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
    for ax in axes:
        ax.set(xlim=(-0.8, height - 0.2), ylim=(-0.8, height - 0.2), xlabel="x0", ylabel="x1", aspect="equal")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
