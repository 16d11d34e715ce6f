"""The environment interface: pure, batched functions of integer state tensors.

A batch of states is one integer tensor of shape (B, *state_shape). Actions are integers in
[0, n_actions); the last one is *exit*, which ends a trajectory and emits the current state
as the finished object. Backward actions live in [0, n_actions - 1): backward action `a`
undoes forward action `a`, so `backward_step(step(s, a), a) == s`. That convention lets every
objective pair a forward step with its backward probability without a lookup table.

Subclasses implement the underscore hooks (`_step`, `_backward_step`, `_log_reward`) and the
masks; the public wrappers check their input, so user code gets clear errors while the
samplers, which only ever draw allowed actions, call the hooks directly.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from gflownets.errors import ActionError, DataError, RewardError

RewardFn = Callable[[torch.Tensor], torch.Tensor]


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
    #: (`sampling.compiled`): `forward_mask`, `features`, `_step` and `default_log_reward` are
    #: tensor expressions without Python branches on tensor values or `.item()` (data-dependent
    #: shapes, `nonzero` and boolean indexing, are best avoided too), and `_step` accepts any
    #: action below `n_actions - 1` on any state without raising (finished rows take such moves;
    #: their results are discarded).
    #: A rollout that does not trace is reported by a ConfigError before training starts.
    compilable: ClassVar[bool] = False

    def __init__(self, config: EnvConfig, reward_fn: RewardFn | None = None,
                 log_reward_fn: RewardFn | None = None, reward_floor: float = 0.0):
        """`reward_fn` returns rewards, `log_reward_fn` log-rewards, for a batch of objects
        (as `objects_to_rows` describes them). Zero rewards are an error unless
        `reward_floor` > 0, which clamps every reward from below."""
        config.validate()
        if reward_fn is not None and log_reward_fn is not None:
            raise ValueError("give reward_fn or log_reward_fn, not both")
        self.config = config
        self.reward_fn = reward_fn
        self.log_reward_fn = log_reward_fn
        self.reward_floor = float(reward_floor)
        self._enumeration: torch.Tensor | None = None

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

    @abc.abstractmethod
    def objects_to_rows(self, states: torch.Tensor) -> np.ndarray:
        """Integer (B, len(object_columns)) rows, the CSV form of finished objects."""

    @abc.abstractmethod
    def objects_from_rows(self, rows: np.ndarray) -> torch.Tensor:
        """Inverse of `objects_to_rows`; raise DataError(row, value) on anything invalid."""

    @property
    @abc.abstractmethod
    def object_columns(self) -> list[str]:
        """CSV header of one object."""

    # ----------------------------------------------------------------- provided
    @property
    def exit_action(self) -> int:
        return self.n_actions - 1

    def initial_states(self, batch_size: int) -> torch.Tensor:
        return self.initial_state.expand(batch_size, *self.state_shape).clone()

    def is_initial(self, states: torch.Tensor) -> torch.Tensor:
        return ~self.backward_mask(states).any(dim=-1)

    def is_terminal(self, states: torch.Tensor) -> torch.Tensor:
        return self.forward_mask(states)[:, -1]

    def describe(self) -> dict[str, Any]:
        """Identity of this environment, stored in checkpoints to refuse a mismatched resume."""
        return {"env": self.name, **dataclasses.asdict(self.config)}

    def step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Checked forward step of non-exit actions."""
        self._check_actions(states, actions, self.forward_mask(states)[:, :-1], "forward")
        return self._step(states, actions)

    def backward_step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Checked backward step."""
        self._check_actions(states, actions, self.backward_mask(states), "backward")
        return self._backward_step(states, actions)

    def log_reward(self, states: torch.Tensor, default: torch.Tensor | None = None) -> torch.Tensor:
        """Validated log-reward (float64, so exact metrics stay exact) of terminal states;
        raises RewardError naming the bad objects. `default`: `default_log_reward(states)`,
        where it has been computed already (a compiled rollout does, in its graph)."""
        if self.log_reward_fn is not None:
            log_r = torch.as_tensor(self.log_reward_fn(self._objects_for_user(states)))
            self._check_values(states, log_r, log_r.isnan() | (log_r == float("inf")), "log-reward")
        elif self.reward_fn is not None:
            reward = torch.as_tensor(self.reward_fn(self._objects_for_user(states)))
            bad = reward.isnan() | reward.isinf() | (reward < 0)
            self._check_values(states, reward, bad, "reward")
            log_r = reward.double().log()
        else:
            log_r = self.default_log_reward(states) if default is None else default
        log_r = log_r.to(torch.float64).reshape(states.shape[0])
        if self.reward_floor > 0:
            log_r = log_r.clamp(min=float(np.log(self.reward_floor)))
        else:
            self._check_values(states, log_r.exp(), log_r == float("-inf"), "reward",
                               hint=" (zero rewards need reward_floor > 0)")
        return log_r

    def _objects_for_user(self, states: torch.Tensor) -> torch.Tensor:
        """What a user's reward function receives: the object rows as a LongTensor."""
        return torch.from_numpy(self.objects_to_rows(states))

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
        actions = torch.as_tensor(actions)
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

    def exact_metrics(self, graph: Any, learned: torch.Tensor) -> dict[str, float]:
        """Environment-specific metrics of the exact learned distribution `learned` over
        `graph.terminal_states` (a StateGraph), next to the generic ones; `graph.target` is
        the exact target. Called at each evaluation of an enumerable environment."""
        return {}

    def extra_plots(self, trainer: Any, folder: Any) -> list[Any]:
        """Environment-specific plots written under the run's plots/ folder; returns their paths."""
        return []

    def log_reward_change(self, states: torch.Tensor, actions: torch.Tensor,
                          children: torch.Tensor) -> torch.Tensor:
        """log R(children) - log R(states) for children = step(states, actions), where every
        state is terminal. Environments with a decomposable reward override it with the
        cheaper local difference (the "delta score" of structure learning)."""
        return self.log_reward(children) - self.log_reward(states)

    # ----------------------------------------------------------------- enumeration
    def enumerate_states(self) -> torch.Tensor:
        """Every state reachable from s0, by breadth-first search with `_step` (cached).
        Environments with a closed form override `_enumerate`."""
        if self._enumeration is None:
            self._enumeration = self._enumerate()
        return self._enumeration

    def _enumerate(self) -> torch.Tensor:
        from gflownets.envs.indexing import _row_keys

        frontier = self.initial_states(1)
        seen = {_row_keys(frontier.numpy())[0].tobytes()}
        found = [frontier]
        total = 1
        while len(frontier):
            mask = self.forward_mask(frontier)[:, :-1]
            rows, actions = mask.nonzero(as_tuple=True)
            children = self._step(frontier[rows], actions)
            children = torch.unique(children, dim=0)
            keys = _row_keys(children.numpy())
            new = np.array([k.tobytes() not in seen for k in keys], dtype=bool)
            frontier = children[torch.from_numpy(new)]
            seen.update(k.tobytes() for k in keys[new])
            found.append(frontier)
            total += len(frontier)
            if total > self.max_enumerable_states:
                raise ValueError(f"{self.name}: more than {self.max_enumerable_states} states, "
                                 "too many to enumerate")
        return torch.cat(found)

    def validate_objects(self, states: torch.Tensor, first_row: int = 1) -> None:
        """Raise DataError unless every state is a terminal state of this environment."""
        ok = self.is_terminal(states)
        if not ok.all():
            i = int((~ok).nonzero()[0])
            raise DataError(f"row {first_row + i}: {self.objects_to_rows(states[i:i + 1])[0].tolist()} "
                            f"is not a finished object of {self.name}")
