"""Hypergrid (Bengio et al. 2021): walk from the origin of a D-dimensional grid of side H by
+1 steps on one coordinate at a time, exit anywhere; the reward has modes near the corners."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from gflownets.envs.base import DiscreteEnv, EnvConfig, draw_device
from gflownets.errors import ConfigError, TooManyStates
from gflownets.envs.limits import check_policy_inputs, require_at_most

#: the most dimensions: the table of moves (`_unit`, the fastest form of `_step`) holds ndim^2 integers
MAX_NDIM = 4096


@dataclasses.dataclass
class HypergridConfig(EnvConfig):
    ndim: int = dataclasses.field(default=2, metadata={"help": "number of dimensions D"})
    height: int = dataclasses.field(default=8, metadata={"help": "side length H (>= 2)"})
    r0: float = dataclasses.field(default=0.1, metadata={"help": "base reward R0 (> 0)"})
    r1: float = dataclasses.field(default=0.5, metadata={"help": "reward R1 of the outer band"})
    r2: float = dataclasses.field(default=2.0, metadata={"help": "reward R2 of the ring near the corners"})
    r2_upper_inclusive: bool = dataclasses.field(
        default=False, metadata={"help": "ring upper bound <= 0.4 instead of < 0.4 (the tutorial's)"})

    def validate(self) -> None:
        if self.ndim < 1:
            raise ConfigError(f"ndim must be >= 1, got {self.ndim}")
        if self.height < 2:
            raise ConfigError(f"height must be >= 2, got {self.height}")
        require_at_most("ndim", self.ndim, MAX_NDIM, "the table of moves holds ndim^2 integers")
        check_policy_inputs("hypergrid", self.ndim * self.height,
                            f"ndim * height = {self.ndim} * {self.height} one-hot features; a trajectory also "
                            "visits up to ndim * (height - 1) + 1 states")
        if not (self.r0 > 0 and np.isfinite(self.r0)):
            raise ConfigError(f"r0 must be > 0 and finite (every object needs a positive reward), got {self.r0}")
        for name in ("r1", "r2"):
            value = getattr(self, name)
            if not value >= 0 or not np.isfinite(value):
                raise ConfigError(f"{name} must be a finite value >= 0, got {value}")


class Hypergrid(DiscreteEnv):
    """State: integer coordinates (B, D). Action i < D adds 1 to coordinate i; action D exits.
    Features: one-hot encoding of each coordinate, concatenated (D*H)."""

    name = "hypergrid"
    Config = HypergridConfig
    compilable = True
    presets = {
        # The seed tutorial's 8x8 four-corner grid.
        "tutorial": dict(ndim=2, height=8, r0=0.01, r1=0.5, r2=1.0, r2_upper_inclusive=True),
        # The usual benchmark settings of the trajectory balance paper and torchgfn.
        "standard": dict(ndim=4, height=8, r0=0.1, r1=0.5, r2=2.0),
    }

    def setup(self, config: HypergridConfig) -> None:
        self.ndim, self.height = config.ndim, config.height
        self.n_actions = self.ndim + 1
        self.state_shape = (self.ndim,)
        self.max_steps = self.ndim * (self.height - 1) + 1
        self.feature_dim = self.ndim * self.height
        # coordinate i's one-hot block starts at column i * height (no height x height table: at
        # height 1e5 the identity alone would be 40 GB)
        self._block_start = torch.arange(self.ndim) * self.height
        self._unit = torch.eye(self.ndim, dtype=torch.long)  # row a: the move of action a (ndim <= MAX_NDIM)

    @property
    def value_range(self) -> tuple[int, int]:
        """Coordinates of objects read from CSV (columns x0, x1, ...) lie in [0, H - 1]."""
        return (0, self.height - 1)

    @property
    def initial_state(self) -> torch.Tensor:
        return torch.zeros(self.ndim, dtype=torch.long, device=self.device)

    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        # a -1 column compares as allowed: exit, always. (Padding the bool comparison instead
        # trips an inductor code-generation bug under torch.compile, in torch 2.13.)
        return torch.nn.functional.pad(states, (0, 1), value=-1) < self.height - 1

    def backward_mask(self, states: torch.Tensor) -> torch.Tensor:
        return states > 0

    def _step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return states + self._unit.index_select(0, actions)

    def _backward_step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return states - self._unit.index_select(0, actions)

    def mutate(self, objects: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One coordinate of each cell moved by one, +1 or -1 (a symmetric proposal: a move
        off the grid is not made)."""
        rows = torch.arange(objects.shape[0], device=objects.device)
        device = draw_device(generator, objects)
        axis = torch.randint(self.ndim, (len(rows),), generator=generator, device=device)
        sign = torch.randint(2, (len(rows),), generator=generator, device=device) * 2 - 1
        current = objects[rows, axis]
        moved = current + sign
        mutants = objects.clone()
        mutants[rows, axis] = torch.where((moved < 0) | (moved >= self.height), current, moved)
        return mutants

    def default_log_reward(self, states: torch.Tensor) -> torch.Tensor:
        c = self.config
        ax = (states.double() / (self.height - 1) - 0.5).abs()
        outer = (ax > 0.25).all(dim=-1)
        upper = ax <= 0.4 if c.r2_upper_inclusive else ax < 0.4
        ring = ((ax > 0.3) & upper).all(dim=-1)
        return (c.r0 + c.r1 * outer.double() + c.r2 * ring.double()).log()

    def features(self, states: torch.Tensor) -> torch.Tensor:
        # the one-hot code of each coordinate, concatenated: a 1 at column i * height + x_i
        features = torch.zeros(states.shape[0], self.feature_dim, device=states.device)
        return features.scatter_(1, states + self._block_start, 1.0)

    def _enumerate(self) -> torch.Tensor:
        if self.height ** self.ndim > self.max_enumerable_states:
            raise TooManyStates(f"hypergrid: {self.height}^{self.ndim} states, too many to enumerate")
        axes = [torch.arange(self.height, device=self.device)] * self.ndim
        return torch.cartesian_prod(*axes).reshape(-1, self.ndim)

    def extra_plots(self, run, folder: Path) -> list[Path]:
        """On a 2-D grid, from the exact state graph: plots/distribution.png, the target and
        learned distributions as heatmaps, and plots/policy.png, P_F and P_B as arrows. Each is
        skipped, with a line saying why, where the run has no graph or the grid is too large to
        draw (checked before the policy is evaluated on every cell)."""
        if self.ndim != 2:
            return []
        from gflownets import figures  # matplotlib: only when plotting

        graph = run.graph
        distribution, policy = folder / "distribution.png", folder / "policy.png"
        if graph is None:
            for out in (distribution, policy):
                figures.skip_plot(out, "drawn from the exact state graph, which this run does not have "
                                       "(--no-exact, or too many states to evaluate exactly)")
            return []
        written = []
        with figures.skipped_plots():
            figures.check_heatmap(distribution, self.height)
            learned = graph.terminal_distribution(run.eval_policy).cpu().numpy()
            written.append(figures.plot_grid_distributions(graph.terminal_states.cpu().numpy(), learned,
                                                           graph.target.cpu().numpy(), distribution,
                                                           height=self.height))
        with figures.skipped_plots():
            figures.check_arrows(policy, graph.n_states)
            states = graph.states
            forward = np.where(graph.forward_mask.cpu().numpy(),
                               graph.forward_log_probs(run.eval_policy).exp().cpu().numpy(), 0.0)
            backward = np.where(self.backward_mask(states).cpu().numpy(),
                                graph.backward_log_probs(run.eval_policy).exp().cpu().numpy(), 0.0)
            written.append(figures.plot_grid_policy(states.cpu().numpy(), forward, backward, policy,
                                                    height=self.height))
        return written
