"""The run configuration: one flat, validated dataclass that the CLI, YAML files and
checkpoints all share. Resolution order: defaults < preset < config file < command line."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import yaml

from gflownets.envs import ENVIRONMENTS, DiscreteEnv
from gflownets.errors import ConfigError
from gflownets.objectives import OBJECTIVES
from gflownets.training.replay import KEEP


def _coerce(name: str, value: Any, kind: type) -> Any:
    """`value` as `kind`, refusing lossy conversions (2.5 -> int, "yes" -> float)."""
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "false", "1", "0"):
                return str(value).lower() in ("true", "1")
            raise ValueError
        if kind is int and (isinstance(value, bool) or float(value) != int(float(value))):
            raise ValueError
        return kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name} must be of type {kind.__name__}, got {value!r}") from None


def _field(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass
class RunConfig:
    env: str = _field("hypergrid", "environment name")
    preset: str | None = _field(None, "named environment preset")
    env_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    objective: str = _field("tb", "fm | db | tb | subtb | mdb (modified DB: every state terminal)")
    iters: int = _field(2000, "training iterations")
    batch_size: int = _field(16, "trajectories per iteration")
    lr: float = _field(1e-3, "Adam learning rate of the network")
    lr_logz: float = _field(0.1, "Adam learning rate of log Z")
    hidden: int = _field(256, "hidden width of the MLP")
    layers: int = _field(2, "hidden layers of the MLP")
    policy: str = _field("mlp", "mlp | tabular (tabular needs an enumerable environment)")
    backward_policy: str = _field("learned", "learned | uniform")
    exploration: float = _field(0.0, "gamma (= epsilon of epsilon-uniform exploration): weight of "
                                     "the uniform distribution over allowed actions mixed into "
                                     "the training sampler (0..1)")
    temperature: float = _field(1.0, "temperature of the sampling policy (> 0)")
    subtb_lambda: float = _field(0.9, "lambda of sub-trajectory balance (> 0)")
    target_decay: float = _field(0.0, "mdb: decay of a Polyak-averaged target network that gives "
                                      "log P_F(exit | s') (0: no target network)")
    ema_decay: float = _field(0.99, "evaluate and sample with an exponential moving average of the "
                                    "policy's weights with this decay (0: the raw weights)")
    replay_size: int = _field(0, "capacity of the replay buffer of finished objects (0: off)")
    replay_batch: int = _field(0, "replayed objects per iteration, re-walked backward with P_B")
    replay_keep: str = _field("recent", "recent: first in, first out | best: the highest-reward "
                                        "distinct objects seen (reward-prioritised replay)")
    local_search: int = _field(0, "local search (LS-GFN): re-generate the last K steps of each sampled "
                                  "trajectory with P_F, keep the better of the two objects and train on "
                                  "it too, walked backward with P_B (0: off)")
    mutations: int = _field(0, "mutation search: N persistent Metropolis chains over finished objects "
                               "(proposal: the environment's `mutate`, one random change), started from "
                               "on-policy samples; every proposal is trained on too, walked backward "
                               "with P_B (0: off)")
    offline: str | None = _field(None, "CSV of finished objects to train on (backward-sampled)")
    epochs: int = _field(0, "offline: passes over the data set (overrides iters when > 0)")
    seed: int = _field(0, "random seed")
    eval_every: int = _field(200, "evaluate every N iterations (0: only at the end)")
    eval_samples: int = _field(0, "also measure metrics from N samples at each evaluation")
    final_samples: int = _field(0, "measure metrics from N samples at the end (e.g. 200000)")
    checkpoint_every: int = _field(500, "write checkpoint.pt every N iterations")
    log_every: int = _field(10, "write a metrics line every N iterations")
    threads: int = _field(0, "torch threads (0: leave torch's default)")
    compile: bool = _field(False, "compile the on-policy rollout into one graph with torch.compile: "
                                  "faster iterations after a compilation of seconds to a minute, "
                                  "for environments that support it (hypergrid, sets)")

    # ------------------------------------------------------------------ validation
    def validate(self, check_env: bool = True) -> None:
        """Raise ConfigError naming the first invalid value. `check_env=False` skips the
        environment's name and options (for a user's environment instance)."""
        self._validate_training()
        if check_env:
            self._validate_env()

    def _validate_env(self) -> None:
        if self.env not in ENVIRONMENTS:
            raise ConfigError(f"unknown environment {self.env!r}; choose from {sorted(ENVIRONMENTS)}")
        env_cls = ENVIRONMENTS[self.env]
        if self.preset is not None and self.preset not in env_cls.presets:
            raise ConfigError(f"unknown preset {self.preset!r} for {self.env}; "
                              f"choose from {sorted(env_cls.presets)}")
        names = {f.name for f in dataclasses.fields(env_cls.Config)}
        for key in self.env_args:
            if key not in names:
                raise ConfigError(f"unknown {self.env} option {key!r}; known: {sorted(names)}")
        self.env_config().validate()

    def _validate_training(self) -> None:
        choices = {"objective": sorted(OBJECTIVES), "policy": ["mlp", "tabular"],
                   "backward_policy": ["learned", "uniform"], "replay_keep": list(KEEP)}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        positive = ["batch_size", "hidden", "layers", "lr", "lr_logz", "temperature", "subtb_lambda"]
        for key in positive:
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{key} must be > 0, got {value!r}")
        non_negative = ["iters", "replay_size", "replay_batch", "local_search", "mutations", "epochs",
                        "eval_every", "eval_samples", "final_samples", "checkpoint_every", "log_every",
                        "threads"]
        for key in non_negative:
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if not 0.0 <= self.target_decay < 1.0:
            raise ConfigError(f"target_decay must be in [0, 1), got {self.target_decay!r}")
        if not 0.0 <= self.exploration <= 1.0:
            raise ConfigError(f"exploration (gamma) must be in [0, 1], got {self.exploration!r}")
        if self.replay_batch > 0 and self.replay_size == 0:
            raise ConfigError("replay_batch > 0 needs replay_size > 0")
        if self.offline is not None and (self.local_search or self.mutations):
            raise ConfigError("local_search and mutations refine sampled trajectories; "
                              "they do not apply to offline training")
        if self.offline is not None and self.compile:
            raise ConfigError("compile speeds up on-policy rollouts; offline training has none")
        if self.offline is not None and not Path(self.offline).is_file():
            raise ConfigError(f"offline data file not found: {self.offline}")

    def env_config(self):
        env_cls = ENVIRONMENTS[self.env]
        args = dict(env_cls.presets[self.preset]) if self.preset else {}
        args.update(self.env_args)
        for f in dataclasses.fields(env_cls.Config):
            if f.name in args:
                args[f.name] = _coerce(f"{self.env} option {f.name}", args[f.name], type(f.default))
        return env_cls.Config(**args)

    def build_env(self, **reward) -> DiscreteEnv:
        return ENVIRONMENTS[self.env](self.env_config(), **reward)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Resolved form: env_args holds the preset's values and the overrides."""
        out = dataclasses.asdict(self)
        if self.env in ENVIRONMENTS:
            out["env_args"] = dataclasses.asdict(self.env_config())
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown {where} key(s): {', '.join(unknown)}")
        config = cls(**data)
        config.coerce_types()
        return config

    def coerce_types(self) -> None:
        """YAML and click hand over strings, ints and floats loosely: make each field its type."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None or f.name == "env_args":
                continue
            kind = type(f.default) if f.default is not None else str
            setattr(self, f.name, _coerce(f.name, value, kind))
        if not isinstance(self.env_args, dict):
            raise ConfigError(f"env_args must be a mapping, got {self.env_args!r}")

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"cannot read config file {path}: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys to values")
        return cls.from_dict(data, where=f"config file {path}")

    def dump(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)
