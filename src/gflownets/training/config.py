"""The run configuration: one flat, validated dataclass that the CLI, YAML files, Python and
checkpoints all share, and the one owner of its resolution (`RunConfig.resolve`): defaults <
the environment's recipe (`run_defaults`) < config file < command line; a resumed run starts
from its checkpoint's config instead. The recipe is applied by RunConfig itself, so
`RunConfig(env="dag")` in Python trains what `gflownets train dag` trains."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from gflownets.envs import DiscreteEnv
from gflownets.envs.conditional import SCALARISATIONS, ConditionalEnv, Preference, Temperature
from gflownets.envs.limits import check_seed
from gflownets.envs.sequences import SequenceEnv
from gflownets.errors import CheckpointError, ConfigError
from gflownets.objectives import OBJECTIVES
from gflownets.registry import UNNAMED, environment_class, environment_name, is_named_by_user_code, load_object, spec_of
from gflownets.reward_pool import DEFAULT_TIMEOUT
from gflownets.sources.replay import KEEP
from gflownets.textfiles import read_text

#: choices of the fields that have a fixed set of values (the CLI offers the same lists)
CHOICES = {"objective": sorted(OBJECTIVES), "policy": ["mlp", "tabular", "graph", "conv"],
           "backward_policy": ["learned", "uniform"], "replay_keep": list(KEEP), "on_nonfinite": ["stop", "skip"],
           "condition": ["none", "beta", "preference"], "beta_distribution": ["uniform", "loguniform", "gamma"],
           "scalarisation": list(SCALARISATIONS)}


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


def _field_kinds(cls: type) -> dict[str, tuple[type | None, bool]]:
    """Each dataclass field's (scalar type, None allowed), read from its annotation; the type is
    None for fields that are not bool/int/float/str (left as they are)."""
    hints = typing.get_type_hints(cls)
    kinds = {}
    for f in dataclasses.fields(cls):
        hint = hints.get(f.name, type(f.default))
        args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        scalars = [a for a in args if a in (bool, int, float, str)]
        kinds[f.name] = (scalars[0] if len(scalars) == 1 else None, type(None) in args)
    return kinds


def _coerce_fields(cls: type, values: dict[str, Any], where: str) -> dict[str, Any]:
    """`values` (a subset of `cls`'s fields) as their annotated types; None only where allowed."""
    kinds = _field_kinds(cls)
    out = dict(values)
    for name, value in values.items():
        kind, optional = kinds.get(name, (None, True))
        if value is None:
            if not optional:
                raise ConfigError(f"{where}{name} must be of type {kind.__name__ if kind else 'value'}, got None")
        elif kind is not None:
            out[name] = _coerce(f"{where}{name}", value, kind)
    return out


def check_field_types(config: Any, skip: tuple[str, ...] = ()) -> None:
    """ConfigError naming the first field of a config dataclass whose value is not of its
    annotated scalar type (bool, int, float, str; None only where the annotation allows it).
    Files and the CLI convert their text with `_coerce`; this catches what Python code passes,
    before a wrong type fails far from its cause (`iters=2.5`, `lr="0.1"`, `batch_size=True`)."""
    for name, (kind, optional) in _field_kinds(type(config)).items():
        if name in skip:
            continue
        value = getattr(config, name)
        if value is None:
            if not optional:
                raise ConfigError(f"{name} must be of type {kind.__name__ if kind else 'value'}, got None")
            continue
        if kind is None:
            continue
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ConfigError(f"{name} must be of type {kind.__name__}, got {value!r}")


def numpy_scalars_to_python(config: Any) -> None:
    """A config dataclass's NumPy scalars (a sweep over np.arange, say) as Python's, in place:
    configs are written as JSON and checked by `check_field_types`."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, np.generic):
            setattr(config, f.name, value.item())


def _field(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass
class RunConfig:
    env: str = _field("hypergrid", "environment name, or module:Class of your own environment")
    preset: str | None = _field(None, "named environment preset")
    env_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    objective: str = _field("tb", " | ".join(f"{name}: {cls.summary}" for name, cls in sorted(OBJECTIVES.items())))
    iters: int = _field(2000, "training iterations")
    batch_size: int = _field(16, "trajectories per iteration")
    lr: float = _field(1e-3, "Adam learning rate of the network")
    lr_logz: float = _field(0.1, "Adam learning rate of log Z")
    hidden: int = _field(256, "hidden width of the MLP (of the graph policy's node codes, the conv policy's "
                              "position codes)")
    layers: int = _field(2, "hidden layers of the MLP (message-passing rounds of the graph policy, convolution "
                            "blocks of the conv policy)")
    policy: str = _field("mlp", "mlp | tabular (tabular needs an enumerable environment) | graph (message "
                                "passing; needs a graph environment such as atoms) | conv (convolutions over "
                                "positions; sequence environments)")
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
    mutation_steps: int = _field(1, "mutation search: Metropolis steps of every chain per iteration; with more "
                                    "than one, the policy trains on the chains' new objects only")
    mutation_guide: float = _field(0.0, "mutation search: weight of the policy in the point mutations' new "
                                        "token (the rest uniform over the tokens that fit), with the "
                                        "Metropolis-Hastings correction; sequences only (0: uniform, 0..1)")
    offline: str | None = _field(None, "CSV of finished objects to train on (backward-sampled)")
    epochs: int = _field(0, "offline: passes over the data set (overrides iters when > 0)")
    seed: int = _field(0, "random seed")
    eval_every: int = _field(200, "evaluate every N iterations (0: only at the end)")
    eval_samples: int = _field(0, "also measure metrics from N samples at each evaluation")
    final_samples: int = _field(0, "measure metrics from N samples at the end (e.g. 200000)")
    checkpoint_every: int = _field(500, "write checkpoint.pt every N iterations")
    on_nonfinite: str = _field("stop", "a NaN or infinite loss or gradient: stop (writing a checkpoint of the last "
                                       "good state) | skip the batch (the run stops after 100 in a row)")
    log_every: int = _field(10, "write a metrics line every N iterations")
    threads: int = _field(0, "torch threads (0: leave torch's default)")
    compile: bool | None = _field(None, "compile the on-policy rollout into one graph with torch.compile: "
                                         "faster iterations after a compilation of seconds to a minute "
                                         "(every environment of the library, conditional runs too). Not given: compiled where the "
                                         "environment supports it and the run is long enough to repay it "
                                         "(gflownets.fast.auto); the run's config records the choice")
    device: str = _field("cpu", "torch device of the policy, the environment's tensors, sampling, "
                                "replay and evaluation: cpu | cuda | cuda:N")
    exact: bool = _field(True, "exact evaluation against the enumerated target where the environment is "
                               "small enough (--no-exact skips enumeration and its reward calls)")
    reward: str | None = _field(None, "module:function returning rewards R(x) >= 0 of a batch of objects "
                                      "(rows as in the CSV form), instead of the environment's default")
    log_reward: str | None = _field(None, "module:function returning log-rewards, instead of --reward")
    reward_floor: float | None = _field(None, "clamp rewards from below at this value (> 0 allows zero rewards; "
                                              "default: the environment's own)")
    reward_workers: int = _field(0, "score --reward / --log-reward in N worker processes, each batch split "
                                    "between them, for a reward that is slow to compute (0: in this process)")
    reward_timeout: float = _field(DEFAULT_TIMEOUT, "seconds the reward workers may take for one batch before "
                                                    "the run stops with an error")
    reward_cache: int = _field(0, "remember the rewards of the last N distinct objects scored and never score "
                                  "them again; only for a reward that depends on the object alone (0: off)")
    condition: str = _field("none", "train one sampler for a family of rewards: beta (R(x)^beta, beta drawn per "
                                    "trajectory from --beta-range) | preference (multi-objective: (scalarised "
                                    "objectives)^--preference-beta, weights from a Dirichlet) | none")
    beta_range: str = _field("1,16", "condition beta: LOW,HIGH range of the temperatures trained on")
    beta_distribution: str = _field("uniform", "condition beta: how beta is drawn in the range: uniform | loguniform "
                                               "| gamma (shape 2, mean the midpoint, clipped)")
    preference_alpha: float = _field(1.0, "condition preference: Dirichlet concentration of the weights")
    scalarisation: str = _field("sum", "condition preference: sum (sum w_i f_i) | product (prod f_i^w_i) | "
                                       "tchebycheff (1 - max w_i (1 - f_i))")
    preference_beta: float = _field(8.0, "condition preference: the exponent of the scalarised objectives")
    eval_contexts: str = _field("", "contexts of the exact per-context evaluation, ';'-separated (beta: '1;4;16', "
                                    "preference: '0.3,0.7;0.5,0.5'); default: 5 spread over the range or simplex")

    # ------------------------------------------------------------------ resolution
    def __post_init__(self) -> None:
        numpy_scalars_to_python(self)

    @classmethod
    def resolve(cls, env: str, *, file: str | Path | None = None, options: dict[str, Any] | None = None,
                env_options: dict[str, Any] | None = None, checkpoint: dict[str, Any] | None = None) -> RunConfig:
        """The one place a run's configuration is assembled. `checkpoint`: a resumed run's saved
        config, which `options` may change; else defaults < recipe < `file` < `options`
        (`env_options` go into env_args). Raises ConfigError on conflicts."""
        options, env_options = dict(options or {}), dict(env_options or {})
        if checkpoint is not None:
            if file is not None:
                raise ConfigError("--resume continues the run's own config.yaml; do not pass --config too")
            if not isinstance(checkpoint, dict):
                raise CheckpointError(f"the checkpoint's config must be a mapping, got {type(checkpoint).__name__}")
            data = dict(checkpoint)
            if data.get("env") != env:
                raise ConfigError(f"the run holds a {data.get('env')} run, not {env}")
            saved = cls.from_dict(dict(checkpoint), where="checkpoint config")
            saved.require_named_reward(options.get("reward"), options.get("log_reward"), "the resumed run")
        elif file is not None:
            data = _read_yaml(file)
            if "env" in data and data["env"] != env:
                raise ConfigError(f"config file {file} is for env {data['env']!r}, but the command trains {env!r}")
        else:
            data = {}
        if checkpoint is not None and ("reward" in options or "log_reward" in options):
            data["reward"] = data["log_reward"] = None  # the reward named now replaces the saved one
        data.update(options)
        data["env"] = env
        saved_args = data.get("env_args") or {}
        if not isinstance(saved_args, dict):
            raise ConfigError(f"env_args must be a mapping, got {saved_args!r}")
        data["env_args"] = {**saved_args, **env_options}
        return cls.from_dict(data, where=f"config file {file}" if file is not None else "config")

    def apply_recipe(self, given: set[str]) -> None:
        """Set the environment's recipe (`run_defaults`) on every field not in `given`."""
        self._given = set(given)
        if given >= {f.name for f in dataclasses.fields(self)}:
            return  # a complete config (a checkpoint's, `dataclasses.replace`): nothing to fill
        try:
            recipe = environment_class(self.env).run_defaults
        except ConfigError:
            return  # validate() names the unknown environment
        self._fill(recipe, given)

    def _fill(self, recipe: dict[str, Any], given: set[str]) -> None:
        for key, value in recipe.items():
            if key not in given:
                setattr(self, key, value)

    def describing(self, env: DiscreteEnv) -> RunConfig:
        """This config for a user's environment instance: what it is and how its reward is
        defined, instead of what the config named."""
        source = getattr(env, "reward_spec", None)
        if source is not None:
            reward, log_reward = source
        else:
            reward, log_reward = _recorded(env.reward_fn), _recorded(env.log_reward_fn)
        name = environment_name(env)
        described = dataclasses.replace(self, env=name, preset=None, reward=reward, log_reward=log_reward,
                                        reward_floor=env.reward_floor, env_args=dataclasses.asdict(env.config))
        if name != self.env:  # another environment than the config named: its recipe, as RunConfig(env=...)
            described._fill(type(env).run_defaults, getattr(self, "_given", set()))
        return described

    def require_named_reward(self, reward: Any, log_reward: Any, where: str) -> None:
        """A saved run trained with a reward function of the user's: refuse to go on unless the
        caller names a reward function again (the run folder's own record is never imported)."""
        recorded = self.reward if self.reward is not None else self.log_reward
        if recorded is None or reward is not None or log_reward is not None:
            return
        flag = "--reward" if self.reward is not None else "--log-reward"
        shown = recorded[len(UNNAMED):] if recorded.startswith(UNNAMED) else recorded
        hint = f" ({flag} {recorded})" if not recorded.startswith(UNNAMED) else " module:function"
        raise ConfigError(f"{where} was trained with the reward function {shown}, not the environment's default: "
                          f"name it again with {flag}{hint}, or in Python load_run(..., {flag[2:].replace('-', '_')}=...)")

    def require_named_environment(self, named: str | None, where: str) -> None:
        """A saved run on an environment class of the user's ("module:Class"): refuse to import
        it unless the caller names it again (`named`)."""
        if not is_named_by_user_code(self.env) or named is not None:
            return
        hint = "pass the environment instance (env=...)" if self.env.startswith(UNNAMED) else \
            f"name it again with --env {self.env} (in Python load_run(..., env=...))"
        raise ConfigError(f"{where} was trained on the environment class {self.env.removeprefix(UNNAMED)}, "
                          f"which a run folder does not import by itself: {hint}")

    def reward_description(self) -> str:
        if self.reward is not None:
            return f"reward {self.reward}"
        if self.log_reward is not None:
            return f"log_reward {self.log_reward}"
        return "default"

    # ------------------------------------------------------------------ validation
    def validate(self, check_env: bool = True) -> None:
        """Raise ConfigError naming the first invalid value. `check_env=False` skips the
        environment's name and options (for a user's environment instance)."""
        self._validate_training()
        if check_env:
            self._validate_env()

    def _validate_env(self) -> None:
        env_cls = environment_class(self.env)
        if self.preset is not None and self.preset not in env_cls.presets:
            raise ConfigError(f"unknown preset {self.preset!r} for {self.env}; "
                              f"choose from {sorted(env_cls.presets)}")
        names = {f.name for f in dataclasses.fields(env_cls.Config)}
        for given in (self.reward, self.log_reward):
            if "score" in names and isinstance(given, str) and ":" not in given:
                raise ConfigError(f"reward {given!r} is not a module:function of yours; {self.env} scores its "
                                  f"molecules by --score (RDKit scores such as qed, sa, qed*sa): --score {given}")
        for key in self.env_args:
            if key not in names:
                raise ConfigError(f"unknown {self.env} option {key!r}; known: {sorted(names)}")
        self.env_config().validate()
        if self.policy == "conv" and not issubclass(env_cls, SequenceEnv):
            raise ConfigError(f"policy conv reads sequences (sequence, bitseq, ehrlich); {self.env} holds none: "
                              "use policy mlp")
        if self.policy == "graph" and not callable(getattr(env_cls, "graph_layout", None)):
            raise ConfigError(f"policy graph needs an environment whose states are graphs (graph_layout(), as "
                              f"atoms has); {self.env} has none: use policy mlp")

    def _validate_training(self) -> None:
        check_field_types(self, skip=("reward", "log_reward"))  # a function there: its own message below
        for key, allowed in {**CHOICES, "objective": sorted(OBJECTIVES)}.items():  # objectives: as registered now
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        positive = ["batch_size", "hidden", "layers", "lr", "lr_logz", "temperature", "subtb_lambda",
                    "reward_timeout", "mutation_steps"]
        for key in positive:
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{key} must be > 0, got {value!r}")
        non_negative = ["iters", "replay_size", "replay_batch", "local_search", "mutations", "epochs",
                        "eval_every", "eval_samples", "final_samples", "checkpoint_every", "log_every",
                        "threads", "reward_workers", "reward_cache"]
        for key in non_negative:
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)!r}")
        from gflownets.limits import check_run_sizes  # the caps are kept with their reasons in one module

        check_run_sizes(self)
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if not 0.0 <= self.target_decay < 1.0:
            raise ConfigError(f"target_decay must be in [0, 1), got {self.target_decay!r}")
        if self.reward_floor is not None and not (math.isfinite(self.reward_floor) and self.reward_floor >= 0):
            raise ConfigError(f"reward_floor must be a finite value >= 0, got {self.reward_floor!r}")
        check_seed("seed", self.seed)
        if not 1e-3 <= self.temperature <= 1e3:  # beyond, logits / temperature overflow or sampling is uniform
            raise ConfigError(f"temperature must be in [0.001, 1000], got {self.temperature!r}")
        if not 0.0 <= self.exploration <= 1.0:
            raise ConfigError(f"exploration (gamma) must be in [0, 1], got {self.exploration!r}")
        if not 0.0 <= self.mutation_guide < 1.0:  # some uniform weight keeps every chain ergodic
            raise ConfigError(f"mutation_guide must be in [0, 1), got {self.mutation_guide!r}")
        if self.replay_batch > 0 and self.replay_size == 0:
            raise ConfigError("replay_batch > 0 needs replay_size > 0")
        if self.offline is not None and (self.local_search or self.mutations):
            raise ConfigError("local_search and mutations refine sampled trajectories; "
                              "they do not apply to offline training")
        if self.offline is not None and self.compile:
            raise ConfigError("compile speeds up on-policy rollouts; offline training has none")
        if self.offline is not None and not Path(self.offline).is_file():
            raise ConfigError(f"offline data file not found: {self.offline}")
        if self.reward is not None and self.log_reward is not None:
            raise ConfigError("give reward or log_reward, not both")
        if (self.reward_workers or self.reward_cache) and self.reward is None and self.log_reward is None:
            try:
                costly = environment_class(self.env).costly_reward
            except ConfigError:  # (an environment instance of the user's: its class is checked by the trainer)
                costly = None
            if self.reward_cache or costly is None:
                raise ConfigError("reward_workers and reward_cache serve a reward function of yours (--reward or "
                                  "--log-reward module:function), and reward_workers a molecule environment's RDKit "
                                  f"scores; {self.env}'s default reward is computed in this process"
                                  + ("" if costly is None else ", with its own cache"))
        for key in ("reward", "log_reward"):
            if getattr(self, key) is not None and not isinstance(getattr(self, key), str):
                raise ConfigError(f"{key} is recorded in the run's files, so it must be a 'module:function' "
                                  f"string; pass a Python function through the environment instead "
                                  f"(Hypergrid(reward_fn=f), Trainer(config, env=env)), got {getattr(self, key)!r}")
        if self.condition != "none":
            self._validate_condition()
        if self.offline is not None and self.replay_size:
            raise ConfigError("replay does not apply to offline training: every batch already comes from the "
                              "data set (set replay_size 0)")
        self._validate_device()

    def _validate_condition(self) -> None:
        if not OBJECTIVES[self.objective].conditionable:
            allowed = sorted(name for name, cls in OBJECTIVES.items() if cls.conditionable)
            raise ConfigError(f"condition {self.condition}: objective {self.objective} does not train conditional "
                              f"GFlowNets; use one of {', '.join(allowed)}")
        for key, why in (("offline", "data rows have no context"),
                         ("mutations", "mutation chains are unconditional")):
            if getattr(self, key):
                raise ConfigError(f"condition {self.condition} does not combine with {key} ({why})")
        if self.policy != "mlp":
            raise ConfigError(f"condition {self.condition} needs the mlp policy (it reads the context)")
        if self.condition == "beta":
            self.beta_bounds()
        if not (self.preference_alpha > 0 and self.preference_beta > 0 and math.isfinite(self.preference_beta)):
            raise ConfigError(f"preference_alpha and preference_beta must be > 0, got {self.preference_alpha} and "
                              f"{self.preference_beta}")

    def _validate_device(self) -> None:
        try:
            device = torch.device(self.device)
        except RuntimeError as err:
            raise ConfigError(f"device {self.device!r} is not a torch device ({err})") from None
        if device.type not in ("cpu", "cuda", "mps"):
            raise ConfigError(f"device must be cpu, cuda, cuda:N or mps, got {self.device!r}")
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise ConfigError(f"device {self.device!r}: this machine's torch sees no CUDA GPU")
            if device.index is not None and device.index >= torch.cuda.device_count():
                raise ConfigError(f"device {self.device!r}: only {torch.cuda.device_count()} CUDA device(s)")
        if device.type == "mps":
            # rewards, trajectories and the exact evaluation are float64, which MPS does not have
            raise ConfigError("device 'mps': Apple's MPS backend has no float64, which log-rewards and exact "
                              "evaluation use; train on cpu or cuda")

    def env_config(self):
        env_cls = environment_class(self.env)
        args = dict(env_cls.presets[self.preset]) if self.preset else {}
        args.update(self.env_args)
        args = _coerce_fields(env_cls.Config, args, f"{self.env} option ")
        return env_cls.Config(**args)

    def build_env(self, reward: Any = None, log_reward: Any = None) -> DiscreteEnv:
        """The environment this config names, with its reward: `reward` / `log_reward` (a callable
        or "module:function") replace the recorded ones. A reward recorded from Python that no
        module:function names cannot be rebuilt: that is an error, never the default reward."""
        if reward is not None or log_reward is not None:
            reward_spec, log_reward_spec = reward, log_reward
        else:
            reward_spec, log_reward_spec = self.reward, self.log_reward
        functions = []
        for spec, flag in ((reward_spec, "--reward"), (log_reward_spec, "--log-reward")):
            if isinstance(spec, str) and spec.startswith(UNNAMED):
                raise ConfigError(f"this run was trained with the Python reward function {spec[len(UNNAMED):]}, "
                                  f"which cannot be imported by name: pass {flag} module:function (or, in "
                                  "Python, the function or the environment) to evaluate or sample it")
            functions.append(load_object(spec, flag.lstrip("-")) if isinstance(spec, str) else spec)
        floor = {} if self.reward_floor is None else {"reward_floor": self.reward_floor}
        env = environment_class(self.env)(self.env_config(), reward_fn=functions[0], log_reward_fn=functions[1],
                                          **floor)
        env.reward_spec = tuple(_recorded(spec) for spec in (reward_spec, log_reward_spec))
        return self.conditioned(env)

    def conditioned(self, env: DiscreteEnv) -> DiscreteEnv:
        """`env` conditioned as `condition` says (itself where none)."""
        if self.condition == "none" or getattr(env, "conditional", False):
            return env
        if self.condition == "beta":
            low, high = self.beta_bounds()
            return ConditionalEnv(env, Temperature(low, high, self.beta_distribution))
        probe = env.objective_values(env.initial_states(0))
        if probe is None:
            raise ConfigError(f"condition preference needs a multi-objective environment (objective_values); "
                              f"{env.name} has one objective")
        return ConditionalEnv(env, Preference(probe.shape[1], self.preference_alpha, self.scalarisation,
                                              self.preference_beta))

    def beta_bounds(self) -> tuple[float, float]:
        try:
            low, high = (float(v) for v in str(self.beta_range).split(","))
        except ValueError:
            raise ConfigError(f"beta_range must be LOW,HIGH (two numbers), got {self.beta_range!r}") from None
        if not (0 < low <= high <= 1e3):
            raise ConfigError(f"beta_range must satisfy 0 < LOW <= HIGH <= 1000, got {self.beta_range!r}")
        return low, high

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Resolved form: env_args holds the preset's values and the overrides."""
        out = dataclasses.asdict(self)
        try:
            out["env_args"] = dataclasses.asdict(self.env_config())
        except ConfigError:
            pass
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> RunConfig:
        """A config from a mapping of field names to values (a YAML file's, a checkpoint's).
        Errors are ConfigErrors, or CheckpointErrors where `where` names a checkpoint's config:
        a checkpoint whose config is missing or malformed is a broken checkpoint."""
        error = CheckpointError if where.startswith("checkpoint") else ConfigError
        if not isinstance(data, dict):
            raise error(f"the {where} must be a mapping of keys to values, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(data) - names))
        if unknown:
            raise error(f"unknown {where} key(s): {', '.join(unknown)}")
        try:
            config = cls(**data)  # the recipe fills what `data` does not give
            config.coerce_types()
        except ConfigError as err:
            if error is ConfigError:
                raise
            raise error(f"{where}: {err}") from None
        return config

    def coerce_types(self) -> None:
        """YAML and click hand over strings, ints and floats loosely: make each field its type."""
        if not isinstance(self.env_args, dict):
            raise ConfigError(f"env_args must be a mapping, got {self.env_args!r}")
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "env_args"}
        for name, value in _coerce_fields(RunConfig, values, "").items():
            setattr(self, name, value)

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        return cls.from_dict(_read_yaml(path), where=f"config file {path}")

    def dump(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _read_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's mapping; ConfigError naming the file for anything else (binary, not
    UTF-8, not YAML, too deeply nested, not a mapping)."""
    text = read_text(path, ConfigError, "config file")
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as err:
        reason = " ".join(str(err).split()) if isinstance(err, yaml.YAMLError) else "nested too deeply"
        raise ConfigError(f"config file {path} is not valid YAML: {reason}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values, not {type(data).__name__}")
    return data


def _recorded(reward: Any) -> str | None:
    """How a config records a reward: its "module:function" spec, or for a function that no
    spec names again (a lambda, a closure), a marker with its name."""
    if reward is None or isinstance(reward, str):
        return reward
    reward = inspect.unwrap(reward)  # the user's function, not the pool or cache serving it
    name = f"{getattr(reward, '__module__', '?')}.{getattr(reward, '__qualname__', type(reward).__name__)}"
    return spec_of(reward) or UNNAMED + name


_dataclass_init = RunConfig.__init__


@functools.wraps(_dataclass_init)
def _init_with_recipe(self: RunConfig, *args: Any, **kwargs: Any) -> None:
    """The dataclass's __init__, then the environment's recipe on the fields not given."""
    _dataclass_init(self, *args, **kwargs)
    names = [f.name for f in dataclasses.fields(RunConfig)]
    self.apply_recipe(set(names[:len(args)]) | set(kwargs))


RunConfig.__init__ = _init_with_recipe
