"""What an objective is: a loss over a batch of trajectories that says what it needs from the
policy and how it estimates log Z. The trainer asks the objective instead of keeping tables
of which objective needs what; a new objective is one class and one `@register` line."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from gflownets.policies.base import Policy
from gflownets.sampling.trajectories import Trajectories

#: name -> objective class, filled by `@register`
OBJECTIVES: dict[str, type[Objective]] = {}


def register(cls: type[Objective]) -> type[Objective]:
    """Class decorator: make the objective available by its `name` (CLI, config, Python)."""
    if cls.name in OBJECTIVES:
        raise ValueError(f"objective {cls.name!r} is registered twice")
    OBJECTIVES[cls.name] = cls
    return cls


class Objective:
    """A training objective. Subclasses set `name` and `summary`, declare what they need, and
    implement `loss`; an instance is also callable as `objective(policy, batch) -> loss`."""

    name: ClassVar[str]
    #: one line for `--help` and the docs
    summary: ClassVar[str] = ""
    #: trains the policy's state-flow head log F(s)
    uses_state_flow: ClassVar[bool] = False
    #: can bootstrap from a Polyak-averaged copy of the policy (`target_decay` > 0)
    uses_target: ClassVar[bool] = False
    #: trains conditional GFlowNets (log Z a function of the context, `terms.log_z_per_trajectory`)
    conditionable: ClassVar[bool] = False

    def __init__(self, options: Any = None, target: Policy | None = None):
        """`options`: anything with the run's option attributes (a RunConfig); `target`: the
        target network, for objectives that use one."""
        self.options = options
        self.target = target if self.uses_target else None

    def check_env(self, env: Any) -> None:
        """Raise ConfigError if the objective cannot train on `env` (before the first step);
        subclasses that override it call this one too."""
        if getattr(env, "conditional", False) and not self.conditionable:
            from gflownets.errors import ConfigError
            conditionable = sorted(name for name, cls in OBJECTIVES.items() if cls.conditionable)
            raise ConfigError(f"objective {self.name} does not train conditional GFlowNets; use one of "
                              f"{', '.join(conditionable)}")

    def option(self, name: str, default: Any) -> Any:
        return getattr(self.options, name, default) if self.options is not None else default

    def loss(self, policy: Policy, batch: Trajectories) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, policy: Policy, batch: Trajectories) -> torch.Tensor:
        return self.loss(policy, batch)

    def log_z(self, policy: Policy) -> float:
        """The sampler's own estimate of log Z (default: the learned scalar); NaN on a
        conditional environment, whose log Z depends on the context (`log_z_at`)."""
        if policy.env.conditional:
            return float("nan")
        return float(policy.log_z.detach())

    @torch.no_grad()
    def log_z_at(self, policy: Policy, s0: torch.Tensor) -> float:
        """log Z(c) of a conditional GFlowNet for the context of the (1, ...) state `s0`."""
        return float(policy.context_log_z(s0)[0])
