"""The environment interface: pure, batched functions of integer state tensors.

A batch of states is one integer tensor of shape (B, *state_shape). Actions are integers in
[0, n_actions); the last one is *exit*, which ends a trajectory and emits the current state
as the finished object. Backward actions live in [0, n_actions - 1): backward action `a`
undoes forward action `a`, so `backward_step(step(s, a), a) == s`. That convention lets every
objective pair a forward step with its backward probability without a lookup table.

To write an environment, subclass `DiscreteEnv` with
- class attributes `name` and `Config` (an `EnvConfig` dataclass; its fields become CLI options);
- `setup(config)`: set `n_actions`, `state_shape`, `max_steps`, `feature_dim` and whatever the
  methods need. `DiscreteEnv.__init__` builds, validates and stores the config (from a config
  or from its field names as keywords: `Env(config)`, `Env(n=3)`) and the reward arguments, then
  calls it; a subclass keeps an `__init__` only for constructor arguments beyond its Config;
- `initial_state`, `forward_mask`, `backward_mask`, `_step`, `_backward_step`,
  `default_log_reward` and `features` (the abstract methods below).
The CSV form of finished objects has defaults: one column `x0, x1, ...` per entry of the
flattened state, checked against `value_range` when reading; override `object_columns`,
`objects_to_rows` and `objects_from_rows` for another form.

The public wrappers (`step`, `backward_step`, `log_reward`) check their input, so user code
gets clear errors while the samplers, which only ever draw allowed actions, call the
underscore hooks directly.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from gflownets.errors import ActionError, ConfigError, DataError, GFlowNetError, RewardError, TooManyStates
from gflownets.textfiles import shown

RewardFn = Callable[[torch.Tensor], torch.Tensor]


def draw_device(generator: torch.Generator | None, like: torch.Tensor) -> torch.device:
    """Where a random draw goes: the generator's device (a generator draws on its own device
    only), else the device of `like` (the tensor the draw will be combined with)."""
    return generator.device if generator is not None else like.device


def user_values(result: Any, n: int, what: str) -> torch.Tensor:
    """What a user's `what` function returned for `n` objects, as a float64 tensor of shape
    (n,) on the device it came on. Accepted: a tensor, a NumPy array or a list/tuple of real
    numbers, of shape (n,) or (n, 1) (a model's output column). Anything else (a scalar, None,
    text, an (n, 2) table, a list of another length, complex numbers) is a RewardError saying
    what came back and what is expected, never a broadcast or a silent reshape. A tensor that
    requires grad is detached, not refused: rewards are training targets, never differentiated
    through, and an attached graph would only keep its memory alive."""
    expected = f"expected a 1-D float tensor or array of {n} value(s), one per object"
    if isinstance(result, torch.Tensor):
        values = result.detach()
        kind = _a(f"{str(values.dtype).removeprefix('torch.')} tensor")
    elif isinstance(result, (np.ndarray, list, tuple)):
        try:
            array = np.asarray(result)
        except (TypeError, ValueError, RuntimeError) as err:
            raise RewardError(f"{what} function returned {_a(type(result).__name__)} that is not an array of "
                              f"numbers ({err}); {expected}") from None
        container = "NumPy array" if isinstance(result, np.ndarray) else type(result).__name__
        dtype = {"U": "str", "S": "bytes", "O": "object"}.get(array.dtype.kind, array.dtype.name)
        kind = _a(f"{container} of {dtype} values")
        if array.dtype.kind not in "biuf":
            raise RewardError(f"{what} function returned {kind} {shown(result)}; {expected}")
        values = torch.from_numpy(array.astype(np.float64))
    else:
        got = "None" if result is None else f"{_a(type(result).__name__)} ({shown(result)})"
        raise RewardError(f"{what} function returned {got}; {expected}")
    if values.is_complex():
        raise RewardError(f"{what} function returned {kind}; {expected} (real numbers)")
    if values.dim() == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.dim() != 1:
        raise RewardError(f"{what} function returned {kind} of shape {tuple(values.shape)} for {n} objects; "
                          f"{expected}")
    if len(values) != n:
        raise RewardError(f"{what} function returned {len(values)} values for {n} objects; {expected}")
    return values.to(torch.float64)


def _a(noun: str) -> str:
    """`noun` with its indefinite article, for messages that name a type ("an int")."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


@dataclasses.dataclass
class EnvConfig:
    """Base of every environment's configuration; fields become CLI options and YAML keys."""

    def validate(self) -> None:
        """Raise ConfigError naming the first invalid field."""


class DiscreteEnv(abc.ABC):
    """A discrete, acyclic construction process with a reward on finished objects."""

    name: ClassVar[str]
    Config: ClassVar[type[EnvConfig]]
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    #: RunConfig values that `gflownets train NAME` starts from instead of RunConfig's defaults
    #: (a config file and command-line options still override them)
    run_defaults: ClassVar[dict[str, Any]] = {}

    #: number of actions, exit included (the last one)
    n_actions: int
    #: shape of one state, without the batch dimension
    state_shape: tuple[int, ...]
    #: the most actions (exit included) any trajectory can take
    max_steps: int
    #: width of `features(states)`
    feature_dim: int
    #: above this many states, exact evaluation by enumeration is refused
    max_enumerable_states: int = 2_000_000
    #: whether `--compile` may trace this environment's rollout into one fixed-shape graph
    #: (`gflownets.fast`): `forward_mask`, `features`, `_step` and `default_log_reward` are
    #: tensor expressions without Python branches on tensor values or `.item()` (data-dependent
    #: shapes, `nonzero` and boolean indexing, are best avoided too), and `_step` accepts any
    #: action below `n_actions - 1` on any state without raising (finished rows take such moves;
    #: their results are discarded).
    #: A rollout that does not trace is reported by a ConfigError before training starts.
    compilable: ClassVar[bool] = False
    #: whether a compiled rollout may trace `default_log_reward` into its graph too; False where
    #: the reward reads tables outside torch (NumPy, RDKit): it is then computed after the rollout
    reward_compiles: ClassVar[bool] = True
    #: whether states carry a context (`envs.conditional.ConditionalEnv`): log Z is then a
    #: function of each trajectory's context (`Policy.context_log_z`), not one learned scalar
    conditional: ClassVar[bool] = False

    #: inclusive (min, max) of every state entry, checked by the default `objects_from_rows`
    #: (None: no check); a property where it depends on the config
    value_range: ClassVar[tuple[int, int] | None] = None

    #: objects scored by `log_reward` so far, on this instance (the reward calls a method is
    #: charged for when methods are compared at equal cost)
    reward_calls: int = 0

    def __init__(self, config: EnvConfig | None = None, *, reward_fn: RewardFn | None = None,
                 log_reward_fn: RewardFn | None = None, reward_floor: float = 0.0, **options: Any):
        """`config`: an instance of the class's `Config`; or none, and its fields as keyword
        `options` (`Hypergrid(ndim=2, height=4)`). `reward_fn` returns rewards,
        `log_reward_fn` log-rewards, for a batch of objects (as `objects_to_rows` describes
        them), which it receives as a CPU LongTensor whatever the environment's device; what it
        returns (a tensor on any device, an array, a list) is moved to the states' device. Zero
        rewards are an error unless `reward_floor` > 0, which clamps every reward from below.
        Then `setup(config)` builds the environment."""
        config = self._make_config(config, options)
        config.validate()
        if reward_fn is not None and log_reward_fn is not None:
            raise ConfigError("give reward_fn or log_reward_fn, not both")
        self.config = config
        self.reward_fn = reward_fn
        self.log_reward_fn = log_reward_fn
        self.reward_floor = float(reward_floor)
        self._enumeration: torch.Tensor | None = None
        self.setup(config)

    @classmethod
    def _make_config(cls, config: EnvConfig | None, options: dict[str, Any]) -> EnvConfig:
        if config is not None:
            if options:
                raise ConfigError(f"{cls.name}: give a config or options ({', '.join(sorted(options))}), "
                                  "not both")
            if not isinstance(config, cls.Config):
                raise ConfigError(f"{cls.name} takes a {cls.Config.__name__}, got {type(config).__name__}")
            return config
        known = {f.name for f in dataclasses.fields(cls.Config)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.name} option(s) {', '.join(map(repr, unknown))}; "
                              f"known: {sorted(known)}")
        return cls.Config(**options)

    def setup(self, config: EnvConfig) -> None:
        """Build the environment from its validated config (stored as `self.config` already):
        set `n_actions`, `state_shape`, `max_steps`, `feature_dim` and any tables the methods use."""

    # ----------------------------------------------------------------- to implement
    @property
    @abc.abstractmethod
    def initial_state(self) -> torch.Tensor:
        """s0, shape `state_shape`."""

    @abc.abstractmethod
    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        """Bool (B, n_actions): which actions are allowed; column -1 (exit) marks terminal states."""

    @abc.abstractmethod
    def backward_mask(self, states: torch.Tensor) -> torch.Tensor:
        """Bool (B, n_actions - 1): which forward actions could have produced each state."""

    @abc.abstractmethod
    def _step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Apply allowed non-exit actions; returns new states (no in-place change)."""

    @abc.abstractmethod
    def _backward_step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Undo allowed backward actions; returns parent states."""

    @abc.abstractmethod
    def default_log_reward(self, states: torch.Tensor) -> torch.Tensor:
        """Log-reward of terminal states when the user gives no reward function."""

    @abc.abstractmethod
    def features(self, states: torch.Tensor) -> torch.Tensor:
        """Float (B, feature_dim) input of the policy network."""

    #: whether every `features` row is 0/1 with the same number of ones, which `feature_indices`
    #: lists: the MLP's first layer then sums those columns of its weight instead of multiplying
    #: a mostly-zero vector (the same function; far fewer operations for long one-hot inputs)
    features_one_hot: ClassVar[bool] = False

    def feature_indices(self, states: torch.Tensor) -> torch.Tensor:
        """(B, k) long: where each row of `features(states)` is 1 (with `features_one_hot`)."""
        raise NotImplementedError(f"{self.name}: features are not one-hot (features_one_hot is False)")

    # ----------------------------------------------------------------- CSV form (defaults)
    #: columns `gflownets sample` writes after log_reward that describe each object for people
    #: (a molecule's SMILES: `describe_objects`); offline data files may keep them, and they are
    #: ignored when read back
    description_columns: ClassVar[tuple[str, ...]] = ()
    #: the attribute holding the environment's own costly scoring, a picklable callable of a batch
    #: (a list or rows) that `reward_workers` may run in worker processes (None: nothing to serve)
    costly_reward: ClassVar[str | None] = None

    def describe_objects(self, states: torch.Tensor) -> list[tuple[str, ...]]:
        """One tuple of `description_columns` values per finished object (none by default)."""
        return [()] * states.shape[0]

    def objects_from_descriptions(self, column: str, values: list[str]) -> torch.Tensor:
        """Finished objects read from a data file's description column alone (a molecule
        environment reads SMILES); DataError naming the row of a value that is no object. By
        default nothing is read this way."""
        raise DataError(f"{self.name} objects cannot be read from a {column!r} column; "
                        f"give their columns ({', '.join(self.object_columns[:4])}, ...)")

    @property
    def object_columns(self) -> list[str]:
        """CSV header of one object (default: `x0, x1, ...`, one per entry of the flattened state)."""
        return [f"x{i}" for i in range(int(np.prod(self.state_shape)))]

    def objects_to_rows(self, states: torch.Tensor) -> np.ndarray:
        """Integer (B, len(object_columns)) rows, the CSV form of finished objects (default:
        the flattened states)."""
        return states.reshape(states.shape[0], -1).cpu().numpy().astype(np.int64)

    def objects_from_rows(self, rows: np.ndarray) -> torch.Tensor:
        """Inverse of `objects_to_rows`; raise DataError naming the row (1 = first), the column
        and the value of anything invalid. Default: rows of `len(object_columns)` entries, each
        in `value_range` (when set), reshaped to `state_shape`. The states are on `self.device`."""
        rows = np.asarray(rows)
        columns = self.object_columns
        if rows.ndim != 2 or rows.shape[1] != len(columns):
            got = rows.shape[-1] if rows.ndim else 0
            names = f" ({', '.join(columns)})" if len(columns) <= 8 else ""
            raise DataError(f"{self.name} objects need {len(columns)} columns{names}, got {got}")
        if self.value_range is not None:
            low, high = self.value_range
            bad = (rows < low) | (rows > high)
            if bad.any():
                r, c = np.argwhere(bad)[0]
                raise DataError(f"row {r + 1}: value {rows[r, c]} in column {columns[c]} is outside "
                                f"[{low}, {high}]")
        return torch.as_tensor(rows.astype(np.int64), device=self.device).reshape(len(rows), *self.state_shape)

    # ----------------------------------------------------------------- provided
    @property
    def exit_action(self) -> int:
        return self.n_actions - 1

    def initial_states(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`batch_size` copies of s0, on `self.device` (also where an `initial_state` is not).
        `generator`: for environments whose s0 is drawn (a conditional environment's context)."""
        return self.initial_state.to(self.device).expand(batch_size, *self.state_shape).clone()

    def is_initial(self, states: torch.Tensor) -> torch.Tensor:
        return ~self.backward_mask(states).any(dim=-1)

    def is_terminal(self, states: torch.Tensor) -> torch.Tensor:
        return self.forward_mask(states)[:, -1]

    @property
    def device(self) -> torch.device:
        """Where this environment's tensors live (`to`); new tensors it makes go there too."""
        return self.__dict__.get("_device", torch.device("cpu"))

    def to(self, device: str | torch.device) -> DiscreteEnv:
        """Move every tensor the environment holds (direct attributes, and those in its lists,
        tuples and dicts) to `device`, in place; returns self. Environments that make tensors
        in their methods create them on `self.device`."""
        device = torch.device(device)
        if device == self.device:
            return self

        def moved(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                return value.to(device)
            if isinstance(value, (list, tuple)):
                return type(value)(moved(v) for v in value)
            if isinstance(value, dict):
                return {k: moved(v) for k, v in value.items()}
            return value

        for key, value in list(vars(self).items()):
            if not callable(value):
                setattr(self, key, moved(value))
        self._device = device
        return self

    def objective_values(self, states: torch.Tensor) -> torch.Tensor | None:
        """Multi-objective environments: (B, m) float64 values in [0, 1] of the finished objects,
        higher is better (preference conditioning scalarises them; Pareto fronts and
        hypervolumes are measured on them). Default: None, a single-objective environment."""
        return None

    def use_training_data(self, objects: torch.Tensor) -> None:
        """Called with an offline run's data set before training; environments that measure
        samples against their training data (novelty) keep it. Default: nothing."""

    def data_files(self) -> list[str]:
        """Files the environment reads (a data set behind its reward): run folders record their
        hashes and refuse to resume or evaluate on a changed file. Default: none."""
        return []

    def describe(self) -> dict[str, Any]:
        """Identity of this environment, stored in checkpoints to refuse a mismatched resume."""
        return {"env": self.name, **dataclasses.asdict(self.config)}

    def step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Checked forward step of non-exit actions (a tensor or a list, moved to the states' device)."""
        actions = torch.as_tensor(actions, device=states.device)
        self._check_actions(states, actions, self.forward_mask(states)[:, :-1], "forward")
        return self._step(states, actions)

    def backward_step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Checked backward step (actions as in `step`)."""
        actions = torch.as_tensor(actions, device=states.device)
        self._check_actions(states, actions, self.backward_mask(states), "backward")
        return self._backward_step(states, actions)

    def log_reward(self, states: torch.Tensor, default: torch.Tensor | None = None) -> torch.Tensor:
        """Validated log-reward (float64, so exact metrics stay exact) of terminal states;
        raises RewardError naming the bad objects. `default`: `default_log_reward(states)`,
        where it has been computed already (a compiled rollout does, in its graph)."""
        self.reward_calls += states.shape[0]
        if self.log_reward_fn is not None:
            log_r = self._call_user(self.log_reward_fn, states, "log-reward")
            self._check_values(states, log_r, log_r.isnan() | (log_r == float("inf")), "log-reward")
        elif self.reward_fn is not None:
            reward = self._call_user(self.reward_fn, states, "reward")
            bad = reward.isnan() | reward.isinf() | (reward < 0)
            self._check_values(states, reward, bad, "reward")
            log_r = reward.double().log()
        else:
            log_r = self.default_log_reward(states) if default is None else default
        log_r = log_r.to(torch.float64).reshape(states.shape[0])
        if self.reward_floor > 0:
            log_r = log_r.clamp(min=float(np.log(self.reward_floor)))
        # NaN or +inf from anywhere (built-in rewards included), and zero rewards without a floor
        bad = log_r.isnan() | (log_r == float("inf")) | (log_r == float("-inf"))
        if bad.any():
            zero = bool((log_r == float("-inf")).any())
            self._check_values(states, log_r.exp(), bad, "reward", hint=" (zero rewards need reward_floor > 0)"
                               if zero else "")
        return log_r

    def _objects_for_user(self, states: torch.Tensor) -> torch.Tensor:
        """What a user's reward function receives: the object rows as a CPU LongTensor, on every
        device (a user's function is arbitrary Python; `_call_user` moves its result back)."""
        return torch.from_numpy(self.objects_to_rows(states))

    def _call_user(self, fn: RewardFn, states: torch.Tensor, what: str) -> torch.Tensor:
        """`fn` on the objects of `states`; an error it raises becomes a RewardError naming the
        object it fails on (found by bisection; else the first few of the batch) and the error,
        and a result of the wrong kind or shape one saying what came back (`user_values`)."""
        objects = self._objects_for_user(states)
        try:
            result = fn(objects)
        except GFlowNetError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure of user code is reported as a RewardError
            culprit = self._failing_row(fn, objects)
            if culprit is not None:
                where = f"on object {objects[culprit].tolist()} (batch row {culprit})"
            else:
                first = ", ".join(map(str, objects[:3].tolist())) + (", ..." if len(objects) > 3 else "")
                where = f"on a batch of {len(objects)} object(s) (first: {first})"
            raise RewardError(f"{what} function failed {where}: {type(error).__name__}: {error}") from error
        return user_values(result, len(objects), what).to(states.device)

    @staticmethod
    def _failing_row(fn: RewardFn, objects: torch.Tensor) -> int | None:
        """Position of an object on which `fn` fails alone, by halving the failing batch; None
        when no half fails on its own (the failure depends on the batch as a whole)."""
        def fails(part: torch.Tensor) -> bool:
            try:
                fn(part)
            except Exception:  # noqa: BLE001
                return True
            return False

        low, high = 0, len(objects)
        while high - low > 1:
            mid = (low + high) // 2
            if fails(objects[low:mid]):
                high = mid
            elif fails(objects[mid:high]):
                low = mid
            else:
                return None
        return low if high - low == 1 else None

    def _check_values(self, states: torch.Tensor, values: torch.Tensor, bad: torch.Tensor,
                      what: str, hint: str = "") -> None:
        if values.shape[0] != states.shape[0]:
            raise RewardError(f"{what} function returned {values.shape[0]} values "
                              f"for {states.shape[0]} objects")
        if bad.any():
            rows = self.objects_to_rows(states[bad][:5]).tolist()
            shown = values[bad][:5].tolist()
            raise RewardError(f"{what} is invalid for {int(bad.sum())} object(s){hint}; "
                              f"first: {', '.join(f'{r} -> {v}' for r, v in zip(rows, shown))}")

    def _check_actions(self, states, actions, mask, direction: str) -> None:
        in_range = (actions >= 0) & (actions < mask.shape[1])
        allowed = in_range.clone()
        allowed[in_range] = mask[in_range].gather(1, actions[in_range, None]).squeeze(1)
        if not allowed.all():
            i = int((~allowed).nonzero()[0])
            raise ActionError(f"{direction} action {int(actions[i])} is not allowed in state "
                              f"{states[i].tolist()} (batch row {i})")

    def mutate(self, objects: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Finished objects, each changed at one random place (a point mutation): the proposal
        of `metropolis_step` and so of the trainer's mutation search. Every returned row must be
        a finished object; a row whose change would not be one comes back unchanged (a
        rejection). Keep it symmetric (x -> x' as likely as x' -> x) so chains sample R."""
        raise NotImplementedError(f"{self.name} defines no mutation of its objects (DiscreteEnv.mutate)")

    # ----------------------------------------------------------------- evaluation hooks
    def modes_hit(self, objects: torch.Tensor) -> torch.Tensor | None:
        """(B, n_modes) bool: which known modes each object counts as finding, for environments
        whose modes are known but that cannot be enumerated (enumerable ones get their modes,
        the objects of maximum reward, from the state graph). None: no known modes."""
        return None

    def sample_metrics(self, objects: torch.Tensor, log_rewards: torch.Tensor) -> dict[str, float]:
        """Environment-specific metrics of a batch of samples (diversity, top-k reward, ...),
        reported with the `_samples` metrics at each evaluation."""
        return {}

    def held_out_objects(self) -> tuple[torch.Tensor, int] | None:
        """Held-out finished objects whose log p(x) each evaluation compares with log R(x)
        (`test_spearman`, `evaluation.held_out_metrics`), and the backward trajectories per
        object its estimate of log p takes (1 where each object has one trajectory: exact).
        None: no held-out set."""
        return None

    def exact_metrics(self, graph: Any, learned: torch.Tensor) -> dict[str, float]:
        """Environment-specific metrics of the exact learned distribution `learned` over
        `graph.terminal_states` (a StateGraph), next to the generic ones; `graph.target` is
        the exact target. Called at each evaluation of an enumerable environment."""
        return {}

    def extra_plots(self, run: Any, folder: Any) -> list[Any]:
        """Environment-specific plots written under the run's plots/ folder; returns their paths.
        `run` (a Trainer) has `.graph` (a StateGraph or None), `.eval_policy`, `.out_dir`,
        `.config.seed` and `.sample_objects(n, generator)`. Draw with `gflownets.figures`; a
        file named distribution.png replaces the generic learned-vs-target scatter."""
        return []

    def intermediate_log_reward(self, states: torch.Tensor) -> torch.Tensor:
        """log R~(s) of any state, partial or finished: the reward accrued so far, for
        forward-looking objectives (fldb), whose state-flow head learns log F(s) - log R~(s).
        Any finite R~ leaves the fixed point (the sampled distribution) unchanged: it only moves
        credit to earlier steps. Float64, shape (B,).

        Default, without a user reward function: `default_log_reward` on finished states (where
        it is defined) and on partial states holding no padding (-1), whose default formulas
        score the parts present (sets: the items chosen so far); 0 on padded partial states
        (sequence prefixes, whose default rewards would read the padding as tokens). With a
        user reward function: 0 everywhere (FL-DB then reduces to DB), as the user's function
        takes finished objects only and each call may be costly; an environment with a
        meaningful partial reward overrides this. A floor clamps as in `log_reward`; what is
        still not finite counts as 0."""
        n = states.shape[0]
        if self.reward_fn is not None or self.log_reward_fn is not None or n == 0:
            return torch.zeros(n, dtype=torch.float64, device=states.device)
        defined = self.is_terminal(states) | (states.reshape(n, -1) >= 0).all(dim=1)
        log_r = torch.zeros(n, dtype=torch.float64, device=states.device)
        if defined.any():  # the default reward never sees the rows it is not defined on
            log_r[defined] = self.default_log_reward(states[defined]).to(torch.float64).reshape(-1)
        if self.reward_floor > 0:
            log_r = log_r.clamp(min=float(np.log(self.reward_floor)))
        return torch.where(log_r.isfinite(), log_r, torch.zeros((), dtype=torch.float64, device=log_r.device))

    def log_reward_change(self, states: torch.Tensor, actions: torch.Tensor,
                          children: torch.Tensor) -> torch.Tensor:
        """log R(children) - log R(states) for children = step(states, actions), where every
        state is terminal. Environments with a decomposable reward override it with the
        cheaper local difference (the "delta score" of structure learning)."""
        return self.log_reward(children) - self.log_reward(states)

    # ----------------------------------------------------------------- enumeration
    def enumerate_states(self) -> torch.Tensor:
        """Every state reachable from s0, by breadth-first search with `_step` (cached).
        Environments with a closed form override `_enumerate`; one that refuses (too many
        states) raises TooManyStates. The states are on `self.device`."""
        if self._enumeration is None:
            self._enumeration = self._enumerate()
        return self._enumeration

    def _enumerate(self) -> torch.Tensor:
        from gflownets.envs.indexing import _row_keys

        frontier = self.initial_states(1)
        seen = {_row_keys(frontier.cpu().numpy())[0].tobytes()}
        found = [frontier]
        total = 1
        while len(frontier):
            mask = self.forward_mask(frontier)[:, :-1]
            rows, actions = mask.nonzero(as_tuple=True)
            children = self._step(frontier[rows], actions)
            children = torch.unique(children, dim=0)
            keys = _row_keys(children.cpu().numpy())
            new = np.array([k.tobytes() not in seen for k in keys], dtype=bool)
            frontier = children[torch.as_tensor(new, device=children.device)]
            seen.update(k.tobytes() for k in keys[new])
            found.append(frontier)
            total += len(frontier)
            if total > self.max_enumerable_states:
                raise TooManyStates(f"{self.name}: more than {self.max_enumerable_states} states, "
                                    "too many to enumerate")
        return torch.cat(found)

    def validate_objects(self, states: torch.Tensor, first_row: int = 1) -> None:
        """Raise DataError unless every state is a terminal state of this environment."""
        ok = self.is_terminal(states)
        if not ok.all():
            i = int((~ok).nonzero()[0])
            raise DataError(f"row {first_row + i}: {self.objects_to_rows(states[i:i + 1])[0].tolist()} "
                            f"is not a finished object of {self.name}")
