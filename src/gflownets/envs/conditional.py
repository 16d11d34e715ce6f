"""Conditional GFlowNets (GFlowNet Foundations, sec. on conditional flows): one sampler for a
family of rewards R(x | c) indexed by a context c, here a temperature beta (R(x)^beta) or a
preference vector w over several objectives (MOGFN-PC, Jain et al. 2023).

A conditional GFlowNet is a GFlowNet over states (s, c): the context is drawn once, at s0,
and carried unchanged to the object. `ConditionalEnv` makes exactly that environment out of any
environment and a `Condition`: the state is the base state (flattened) followed by the context,
stored as fixed-point integers (`CONTEXT_SCALE`, 2^-20 resolution) so that states stay one
integer tensor; masks and steps act on the base part; the policy's features are the base
features followed by the encoded context (a thermometer code for beta, the raw simplex vector
for preferences, as the reference implementations do); the log-reward is the condition's
transform of the base reward. Each context has its own s0 and its own log Z(c), which the
policy learns as a linear function of a fixed code of the context (`Policy.context_log_z`,
trained at the log-Z learning rate like the unconditional scalar), and fixing the context
(`fixed(c)`) gives an ordinary environment, enumerable for exact per-context evaluation.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch

from gflownets.envs.base import DiscreteEnv, draw_device
from gflownets.errors import ConfigError, TooManyStates

#: contexts are stored in the state as round(value * CONTEXT_SCALE)
CONTEXT_SCALE = 2 ** 20
#: scalarised objective values are clamped from below at this before the log
SCALARISED_FLOOR = 1e-6
#: thermometer bins per preference weight in the code log Z(w) is linear in
WEIGHT_BINS = 16


def thermometer(values: torch.Tensor, low: float, high: float, bins: int) -> torch.Tensor:
    """(n,) -> (n, bins) thermometer code: bin k holds how far `values` has filled
    [t_k, t_k + gap], t = linspace(low, high, bins); monotone and smooth in the value."""
    if high <= low:  # one value: nothing to encode
        return torch.zeros(len(values), bins, device=values.device)
    edges = torch.linspace(low, high, bins, dtype=torch.float64, device=values.device)
    gap = (high - low) / max(bins - 1, 1)
    return ((values.double()[:, None] - edges).clamp(0, gap) / gap).float()


def _seeded_numpy(generator: torch.Generator | None, device: torch.device) -> np.random.Generator:
    """A NumPy stream drawn from the torch generator (for distributions torch cannot seed)."""
    seed = torch.randint(0, 2 ** 62, (1,), generator=generator, device=draw_device(generator, torch.empty(0)))
    return np.random.default_rng(int(seed))


class Condition:
    """What a context is: its stored width, how it is drawn, encoded and parsed, and how it
    turns the base reward (and, for preferences, the objective values) into log R(x | c)."""

    kind: ClassVar[str]
    #: column names of the context in CSV rows and summaries
    columns: list[str]
    encoded_width: int

    @property
    def width(self) -> int:
        return len(self.columns)

    def draw(self, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, contexts: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    #: width of `log_z_code`
    log_z_code_width: int

    def log_z_code(self, contexts: torch.Tensor) -> torch.Tensor:
        """(n, log_z_code_width) the fixed code that log Z(c) is linear in (`Policy.context_log_z`)."""
        raise NotImplementedError

    def log_reward(self, base_log_rewards: torch.Tensor, objectives: torch.Tensor | None,
                   contexts: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check(self, contexts: torch.Tensor) -> None:
        """ConfigError if a context given for sampling or evaluation is outside the trained family."""

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def label(self, context: torch.Tensor) -> str:
        return ",".join(f"{c}={float(v):.4g}" for c, v in zip(self.columns, context))


class Temperature(Condition):
    """R(x | beta) = R(x)^beta with beta drawn per trajectory from [low, high]: uniform,
    log-uniform, or a gamma of shape `shape` whose mean is the range's midpoint (clipped to the
    range). Sampling later at any beta in the range, seen in training or not."""

    kind = "beta"

    def __init__(self, low: float, high: float, distribution: str = "uniform", bins: int = 32, shape: float = 2.0):
        if not (0 < low <= high and math.isfinite(high)):
            raise ConfigError(f"the beta range must satisfy 0 < low <= high, got [{low}, {high}]")
        if distribution not in ("uniform", "loguniform", "gamma"):
            raise ConfigError(f"beta_distribution must be uniform, loguniform or gamma, got {distribution!r}")
        if bins < 2 or not shape > 0:
            raise ConfigError(f"need >= 2 thermometer bins and a gamma shape > 0, got {bins} and {shape}")
        self.low, self.high, self.distribution, self.bins, self.shape = low, high, distribution, bins, shape
        self.columns = ["beta"]
        self.encoded_width = self.log_z_code_width = bins

    def draw(self, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
        if self.distribution == "gamma":
            mean = (self.low + self.high) / 2
            rng = _seeded_numpy(generator, device)
            values = torch.from_numpy(rng.gamma(self.shape, mean / self.shape, n)).clamp(self.low, self.high)
            return values.to(device)[:, None]
        u = torch.rand(n, 1, generator=generator, dtype=torch.float64, device=draw_device(generator, torch.empty(0))
                       ).to(device)
        if self.distribution == "loguniform":
            return math.log(self.low) + u * (math.log(self.high) - math.log(self.low))
        return self.low + u * (self.high - self.low)

    def encode(self, contexts: torch.Tensor) -> torch.Tensor:
        return thermometer(contexts[:, 0], self.low, self.high, self.bins)

    def log_z_code(self, contexts: torch.Tensor) -> torch.Tensor:
        return self.encode(contexts)  # linear in it: piecewise linear in beta

    def log_reward(self, base_log_rewards: torch.Tensor, objectives: torch.Tensor | None,
                   contexts: torch.Tensor) -> torch.Tensor:
        return contexts[:, 0] * base_log_rewards

    def check(self, contexts: torch.Tensor) -> None:
        slack = 1 / CONTEXT_SCALE  # the resolution contexts are stored at
        bad = (contexts[:, 0] < self.low - slack) | (contexts[:, 0] > self.high + slack)
        if bad.any():
            raise ConfigError(f"beta {float(contexts[bad][0, 0]):.6g} is outside the range the sampler was "
                              f"trained on, [{self.low:g}, {self.high:g}]")

    def describe(self) -> dict[str, Any]:
        return {"condition": "beta", "beta_range": [self.low, self.high], "beta_distribution": self.distribution,
                "bins": self.bins, "shape": self.shape}


#: name -> scalarisation of objective values f (n, m) in [0, 1] under preferences w (n, m)
SCALARISATIONS = {
    "sum": lambda f, w: (w * f).sum(dim=1),
    "product": lambda f, w: (w * f.clamp(min=SCALARISED_FLOOR).log()).sum(dim=1).exp(),
    "tchebycheff": lambda f, w: 1 - (w * (1 - f)).max(dim=1).values,
}


class Preference(Condition):
    """Multi-objective: R(x | w) = s(f(x), w)^beta for objective values f(x) in [0, 1]^m (the
    base environment's `objective_values`), preferences w ~ Dirichlet(alpha) on the simplex and
    a scalarisation s: weighted sum, weighted product (prod f_i^w_i) or weighted Tchebycheff
    from the ideal point 1 (1 - max_i w_i (1 - f_i), whose maximisers cover the whole front,
    its non-convex parts too); s is clamped from below at `SCALARISED_FLOOR`."""

    kind = "preference"

    def __init__(self, n_objectives: int, alpha: float = 1.0, scalarisation: str = "sum", beta: float = 1.0):
        if n_objectives < 2:
            raise ConfigError(f"preference conditioning needs >= 2 objectives, got {n_objectives}")
        if not alpha > 0 or not (beta > 0 and math.isfinite(beta)):
            raise ConfigError(f"preference_alpha and the reward exponent must be > 0, got {alpha} and {beta}")
        if scalarisation not in SCALARISATIONS:
            raise ConfigError(f"scalarisation must be one of {', '.join(SCALARISATIONS)}, got {scalarisation!r}")
        self.n_objectives, self.alpha, self.scalarisation, self.beta = n_objectives, alpha, scalarisation, beta
        self.columns = [f"w{i}" for i in range(n_objectives)]
        self.encoded_width = n_objectives
        self.log_z_code_width = n_objectives * WEIGHT_BINS

    def draw(self, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
        rng = _seeded_numpy(generator, device)
        return torch.from_numpy(rng.dirichlet([self.alpha] * self.n_objectives, n)).to(device)

    def encode(self, contexts: torch.Tensor) -> torch.Tensor:
        return contexts.float()

    def log_z_code(self, contexts: torch.Tensor) -> torch.Tensor:
        """A thermometer of each weight over [0, 1]: log Z(w) linear in it is a sum of piecewise
        linear functions of the weights."""
        return torch.cat([thermometer(contexts[:, i], 0.0, 1.0, WEIGHT_BINS) for i in range(self.n_objectives)], dim=1)

    def log_reward(self, base_log_rewards: torch.Tensor, objectives: torch.Tensor | None,
                   contexts: torch.Tensor) -> torch.Tensor:
        scalarised = SCALARISATIONS[self.scalarisation](objectives.double(), contexts.double())
        return self.beta * scalarised.clamp(min=SCALARISED_FLOOR).log()

    def check(self, contexts: torch.Tensor) -> None:
        if contexts.shape[1] != self.n_objectives:
            raise ConfigError(f"a preference needs {self.n_objectives} weights, got {contexts.shape[1]}")
        if (contexts < 0).any() or ((contexts.sum(dim=1) - 1).abs() > 1e-4).any():
            raise ConfigError(f"a preference must be non-negative weights summing to 1, got "
                              f"{[round(float(v), 6) for v in contexts[0]]}")

    def describe(self) -> dict[str, Any]:
        return {"condition": "preference", "n_objectives": self.n_objectives, "alpha": self.alpha,
                "scalarisation": self.scalarisation, "beta": self.beta}


class ConditionalEnv(DiscreteEnv):
    """`base` conditioned on `condition`; see the module docstring. `fixed(context)` gives the
    same environment with one context, whose s0 carries it (sampling, enumeration)."""

    conditional: ClassVar[bool] = True
    #: the condition's transform reads the base reward after the graph (it checks the reward's values)
    reward_compiles: ClassVar[bool] = False

    def __init__(self, base: DiscreteEnv, condition: Condition, context: torch.Tensor | None = None):
        if getattr(base, "conditional", False):
            raise ConfigError(f"{base.name} is conditional already")
        if isinstance(condition, Preference) and base.objective_values(base.initial_states(0)) is None:
            raise ConfigError(f"{base.name} has no objective values (objective_values): preference conditioning "
                              "needs a multi-objective environment")
        self.base, self.condition = base, condition
        #: masks and steps act on the base part (the context is carried along): the base decides
        self.compilable = base.compilable
        self.name = base.name
        self.Config = base.Config
        self.config = base.config
        self.reward_fn = self.log_reward_fn = None
        self.reward_floor = 0.0
        self.reward_spec = getattr(base, "reward_spec", (None, None))
        self._enumeration = None
        self._base_size = int(np.prod(base.state_shape))
        self.state_shape = (self._base_size + condition.width,)
        self.n_actions, self.max_steps = base.n_actions, base.max_steps
        self.feature_dim = base.feature_dim + condition.encoded_width
        self.max_enumerable_states = base.max_enumerable_states
        self.context = None if context is None else torch.as_tensor(context, dtype=torch.float64).reshape(-1)
        if self.context is not None:
            condition.check(self.context[None])
        self._device = base.device

    # ------------------------------------------------------------------ the two parts of a state
    def base_states(self, states: torch.Tensor) -> torch.Tensor:
        return states[:, :self._base_size].reshape(len(states), *self.base.state_shape)

    def contexts(self, states: torch.Tensor) -> torch.Tensor:
        """(B, width) float64 contexts of the states."""
        return states[:, self._base_size:].double() / CONTEXT_SCALE

    def _join(self, base_states: torch.Tensor, stored: torch.Tensor) -> torch.Tensor:
        return torch.cat([base_states.reshape(len(base_states), self._base_size), stored], dim=1)

    def _stored(self, contexts: torch.Tensor) -> torch.Tensor:
        return torch.round(contexts.double() * CONTEXT_SCALE).long().to(self.device)

    def fixed(self, context: torch.Tensor | list[float]) -> ConditionalEnv:
        """This environment with one context (rounded to the stored resolution)."""
        context = torch.as_tensor(context, dtype=torch.float64).reshape(1, -1)
        if context.shape[1] != self.condition.width:
            raise ConfigError(f"a {self.condition.kind} context has {self.condition.width} value(s) "
                              f"({', '.join(self.condition.columns)}), got {context.shape[1]}")
        return ConditionalEnv(self.base, self.condition, self._stored(context).double()[0] / CONTEXT_SCALE)

    # ------------------------------------------------------------------ DiscreteEnv
    @property
    def initial_state(self) -> torch.Tensor:
        context = self.context if self.context is not None else torch.zeros(self.condition.width, dtype=torch.float64)
        return self._join(self.base.initial_states(1), self._stored(context[None]))[0]

    def initial_states(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """s0 of each trajectory: the fixed context, or contexts drawn from the condition."""
        if self.context is not None:
            return super().initial_states(batch_size)
        contexts = self.condition.draw(batch_size, generator, self.device)
        return self._join(self.base.initial_states(batch_size), self._stored(contexts))

    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        return self.base.forward_mask(self.base_states(states))

    def backward_mask(self, states: torch.Tensor) -> torch.Tensor:
        return self.base.backward_mask(self.base_states(states))

    def _step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self._join(self.base._step(self.base_states(states), actions), states[:, self._base_size:])

    def _backward_step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self._join(self.base._backward_step(self.base_states(states), actions), states[:, self._base_size:])

    def default_log_reward(self, states: torch.Tensor) -> torch.Tensor:
        return self.log_reward(states)

    def log_reward(self, states: torch.Tensor, default: torch.Tensor | None = None) -> torch.Tensor:
        """The condition's transform of the base environment's (validated) reward."""
        base = self.base_states(states)
        base_log_rewards = self.base.log_reward(base)
        objectives = self.base.objective_values(base) if isinstance(self.condition, Preference) else None
        return self.condition.log_reward(base_log_rewards, objectives, self.contexts(states))

    def objective_values(self, states: torch.Tensor) -> torch.Tensor | None:
        return self.base.objective_values(self.base_states(states))

    @property
    def reward_calls(self) -> int:
        """The base environment's: every reward is computed there."""
        return self.base.reward_calls

    @property
    def log_z_code_width(self) -> int:
        return self.condition.log_z_code_width

    def log_z_code(self, states: torch.Tensor) -> torch.Tensor:
        """The code of the states' contexts that a policy's log Z(c) is linear in."""
        return self.condition.log_z_code(self.contexts(states)).to(self.device)

    def features(self, states: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.base.features(self.base_states(states)),
                          self.condition.encode(self.contexts(states)).to(self.device)], dim=1)

    def _enumerate(self) -> torch.Tensor:
        if self.context is None:
            raise TooManyStates(f"{self.name} conditioned on {self.condition.kind}: a continuum of contexts; "
                                "exact evaluation runs per fixed context")
        base = self.base.enumerate_states()
        return self._join(base, self._stored(self.context[None]).expand(len(base), -1))

    def extra_plots(self, run: Any, folder: Any) -> list:
        """Per evaluated context, learned vs target (drawn by the run's context evaluator)."""
        evaluator = getattr(run, "context_evaluator", None)
        return evaluator.plots(run.eval_policy, folder) if evaluator is not None else []

    def modes_hit(self, objects: torch.Tensor) -> torch.Tensor | None:
        return self.base.modes_hit(self.base_states(objects))

    # CSV rows are the base objects; reading them back needs the context fixed
    @property
    def object_columns(self) -> list[str]:
        return self.base.object_columns

    def objects_to_rows(self, states: torch.Tensor) -> np.ndarray:
        return self.base.objects_to_rows(self.base_states(states))

    def objects_from_rows(self, rows: np.ndarray) -> torch.Tensor:
        if self.context is None:
            raise ConfigError(f"{self.name} is conditional: objects read from rows need a fixed context")
        base = self.base.objects_from_rows(rows)
        return self._join(base, self._stored(self.context[None]).expand(len(base), -1))

    def describe(self) -> dict[str, Any]:
        return {**self.base.describe(), **self.condition.describe()}

    def data_files(self) -> list[str]:
        return self.base.data_files()

    def to(self, device: str | torch.device) -> ConditionalEnv:
        self.base.to(device)
        self._device = torch.device(device)
        return self
