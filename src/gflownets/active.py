"""Active learning with a GFlowNet as the proposer (issue #17; the loop of Jain et al. 2022,
"Biological sequence design with GFlowNets"), next to the library's baselines in the same loop.

Each proposer runs its own copy of the loop, from the same initial labelled set:

1. fit a proxy, an ensemble of small MLPs (`ProxyEnsemble`) on the features (`env.features`) of
   the labelled objects, each member on its own bootstrap of the data, to predict the oracle's
   score (`env.scores` where the environment has one, e.g. the Ehrlich value f(x); else its reward);
2. build the acquisition reward from it: UCB, acq(x) = mean + kappa * std across the members,
   given to a copy of the environment as log R(x) = beta * acq(x) (`log_reward_fn`);
3. search that reward with the proposer: `gfn` trains a GFlowNet on it (VarGrad by default;
   `iters` iterations of `gfn_batch_size` trajectories, from scratch or warm-started from the
   previous round) and then draws `samples` objects; every other name is a baseline of
   `gflownets.baselines` (`make_baseline`: mcmc, random, and any registered later) run on
   the acquisition environment for as many acquisition-reward calls as the GFlowNet spends
   (`proxy_budget` = iters x gfn_batch_size + samples);
4. propose the `batch` distinct, never labelled objects of highest acquisition among what the
   search visited (topped up with uniform rollouts if it found fewer), score them with the
   oracle (the environment's own reward; every call counted) and add them to the labelled set.

Per round and proposer a record: the mean oracle score of the top-k labelled objects, the best
score, the new batch's mean and best score, the top-k's diversity (mean pairwise distance: the
environment's `distance_matrix`, else Hamming on the flattened states), the modes found (score
>= `mode_threshold`; else the environment's `modes_hit`; f = 1 for Ehrlich; else, where the
environment can be enumerated, its objects of maximal score), oracle and proxy calls, seconds.
Everything is drawn from seeded torch generators: a run is reproducible from `seed`."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gflownets.baselines import BASELINES, make_baseline
from gflownets.envs.base import DiscreteEnv
from gflownets.envs.ehrlich import Ehrlich
from gflownets.envs.limits import check_seed
from gflownets.errors import ConfigError, TooManyStates
from gflownets.evaluation.evaluator import sample_objects
from gflownets.envs.indexing import StateIndex
from gflownets.measures.distances import hamming_matrix
from gflownets.measures.diversity import mean_pairwise_distance
from gflownets.policies.uniform import UniformPolicy
from gflownets.training import RunConfig, Trainer
from gflownets.training.config import check_field_types, numpy_scalars_to_python

#: the GFlowNet proposer's name; every other proposer is a baseline (`gflownets.baselines.BASELINES`)
GFN = "gfn"
#: RunConfig fields the loop sets itself for the GFlowNet proposer (not through `gfn_options`)
OWNED_BY_LOOP = {"env": "the environment given", "env_args": "the environment given", "preset": "the environment given",
                 "reward": "the acquisition reward", "log_reward": "the acquisition reward",
                 "offline": "the acquisition reward", "condition": "the acquisition reward",
                 "iters": "iters", "batch_size": "gfn_batch_size", "hidden": "hidden", "seed": "seed",
                 "device": "the environment's device"}
#: the most states enumerated to find an environment's modes (its objects of maximal score)
MODE_ENUMERATION_LIMIT = 500_000


def _field(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass
class ActiveConfig:
    """The settings of an active-learning run; `validate` raises ConfigError naming the first bad one."""

    proposers: tuple[str, ...] = _field(("gfn", "mcmc", "random"), "gfn and/or names of gflownets.baselines.BASELINES")
    rounds: int = _field(5, "rounds of fit proxy / search / query the oracle")
    batch: int = _field(16, "objects sent to the oracle per round (B)")
    initial: int = _field(0, "uniform random objects labelled before the first round (0: batch)")
    iters: int = _field(200, "GFlowNet training iterations per round")
    gfn_batch_size: int = _field(16, "trajectories per GFlowNet iteration (and rollouts per random step)")
    samples: int = _field(256, "objects the GFlowNet draws after each round's training")
    hidden: int = _field(128, "hidden width of the GFlowNet's MLP")
    warm_start: bool = _field(True, "keep the GFlowNet (and its optimiser) from one round to the next")
    gfn_options: dict[str, Any] = dataclasses.field(default_factory=dict, metadata={
        "help": "other RunConfig fields of the GFlowNet (objective, lr, exploration, ...)"})
    chains: int = _field(16, "chains of the mcmc proposer")
    kappa: float = _field(1.0, "UCB: acquisition = mean + kappa * std of the proxy ensemble")
    beta: float = _field(10.0, "acquisition reward R(x) = exp(beta * acquisition), the acquisition in the units "
                               "of the oracle's score (scores spread over 0.1: beta 100 or more)")
    top_k: int = _field(10, "k of the top-k metrics over the labelled objects")
    ensemble: int = _field(5, "members of the proxy ensemble")
    proxy_hidden: int = _field(64, "hidden width of each proxy MLP")
    proxy_layers: int = _field(2, "hidden layers of each proxy MLP")
    proxy_epochs: int = _field(100, "Adam passes over each member's bootstrap per fit")
    proxy_batch: int = _field(32, "minibatch of the proxy's Adam steps")
    proxy_lr: float = _field(1e-3, "Adam learning rate of the proxy")
    mode_threshold: float | None = _field(None, "a mode is a labelled object of score >= this (default: the "
                                                "environment's modes_hit, f = 1 for Ehrlich, else the "
                                                "maximal score of an enumerable environment)")
    seed: int = _field(0, "seed of every random draw")

    def __post_init__(self) -> None:
        if isinstance(self.proposers, str):
            self.proposers = tuple(p.strip() for p in self.proposers.split(",") if p.strip())
        else:
            self.proposers = tuple(self.proposers)
        self.gfn_options = dict(self.gfn_options or {})
        numpy_scalars_to_python(self)

    @property
    def n_initial(self) -> int:
        return self.initial or self.batch

    @property
    def proxy_budget(self) -> int:
        """Acquisition-reward calls per round and proposer: what the GFlowNet spends."""
        return self.iters * self.gfn_batch_size + self.samples

    def validate(self) -> None:
        if not self.proposers:
            raise ConfigError("proposers must name at least one proposer")
        known = [GFN, *sorted(BASELINES)]
        for name in self.proposers:
            if name not in known:
                raise ConfigError(f"proposers: unknown proposer {name!r}; choose from {', '.join(known)}")
        if len(set(self.proposers)) != len(self.proposers):
            raise ConfigError(f"proposers must not repeat a name, got {', '.join(self.proposers)}")
        check_field_types(self)  # every field of its annotated type: the checks below compare values
        for name, low in (("rounds", 1), ("batch", 1), ("initial", 0), ("iters", 1), ("gfn_batch_size", 1),
                          ("samples", 0), ("hidden", 1), ("chains", 1), ("top_k", 1), ("ensemble", 2),
                          ("proxy_hidden", 1), ("proxy_layers", 1), ("proxy_epochs", 1), ("proxy_batch", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {getattr(self, name)!r}")
        for name, positive in (("kappa", False), ("beta", True), ("proxy_lr", True)):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0 or (positive and value == 0):
                raise ConfigError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
        if self.mode_threshold is not None and not math.isfinite(self.mode_threshold):
            raise ConfigError(f"mode_threshold must be a finite number or None, got {self.mode_threshold!r}")
        check_seed("seed", self.seed)
        for key in self.gfn_options:
            if key in OWNED_BY_LOOP:
                raise ConfigError(f"gfn_options: {key} is set by the active-learning loop ({OWNED_BY_LOOP[key]})")
        if GFN in self.proposers:
            self.gfn_config(self.seed, "cpu").validate(check_env=False)  # the device is checked with the env's

    def gfn_config(self, seed: int, device: str) -> RunConfig:
        """The RunConfig of the GFlowNet proposer: on-policy, without replay, mutations or local
        search (so a round costs iters x gfn_batch_size reward calls), no evaluation, then
        `gfn_options`. The objective is `vargrad` (trajectory balance with log Z the batch's
        estimate): the reward changes every round, and a learned log Z lags behind it."""
        fields = dict(objective="vargrad", iters=self.iters, batch_size=self.gfn_batch_size, hidden=self.hidden,
                      eval_every=0, exact=False, replay_size=0, replay_batch=0, mutations=0, local_search=0,
                      threads=0, log_every=0, checkpoint_every=0, seed=seed, device=device)
        fields.update(self.gfn_options)
        return RunConfig.from_dict(fields, where="gfn_options")


def _derived_seed(seed: int, *parts: int) -> int:
    """A seed for one purpose (round, proposer, role) drawn from the run's seed."""
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1, dtype=np.uint32)[0])


# ---------------------------------------------------------------------- the proxy
class ProxyEnsemble:
    """`members` MLPs (ReLU, `layers` hidden layers of `hidden` units) held as batched weight
    tensors and trained together: each member on its own bootstrap of (x, y), minibatches of
    `batch_size`, Adam for `epochs` passes, on targets standardised by the data's mean and std.
    `predict` gives the mean and the standard deviation (over members, population form) of the
    members' predictions, in the targets' units."""

    def __init__(self, in_dim: int, members: int = 5, hidden: int = 64, layers: int = 2, epochs: int = 100,
                 batch_size: int = 32, lr: float = 1e-3, device: str | torch.device = "cpu"):
        if members < 2:
            raise ConfigError(f"ensemble must hold >= 2 members (its spread is the uncertainty), got {members}")
        self.in_dim, self.members, self.hidden, self.layers = in_dim, members, hidden, layers
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.device = torch.device(device)
        self.weights: list[torch.Tensor] = []
        self.biases: list[torch.Tensor] = []
        self.y_mean, self.y_std = 0.0, 1.0

    def _init(self, generator: torch.Generator) -> None:
        """PyTorch's default Linear initialisation (uniform in +-1/sqrt(fan_in)), member by member."""
        sizes = [self.in_dim] + [self.hidden] * self.layers + [1]
        self.weights, self.biases = [], []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            w = (torch.rand(self.members, fan_in, fan_out, generator=generator, device=self.device) * 2 - 1) * bound
            b = (torch.rand(self.members, 1, fan_out, generator=generator, device=self.device) * 2 - 1) * bound
            self.weights.append(w.requires_grad_())
            self.biases.append(b.requires_grad_())

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """(M, N, D) inputs -> (M, N) standardised predictions, one row per member."""
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < len(self.weights) - 1:
                h = torch.relu(h)
        return h.squeeze(-1)

    def fit(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> ProxyEnsemble:
        """Train from a fresh initialisation on (N, D) inputs and (N,) targets; returns self."""
        x = x.to(self.device, torch.float32)
        y = y.to(self.device, torch.float64)
        n = len(x)
        if n == 0:
            raise ValueError("the proxy needs at least one labelled object")
        self.y_mean = float(y.mean())
        spread = float(y.std(correction=0)) if n > 1 else 0.0
        self.y_std = spread if spread > 1e-12 else 1.0
        target = ((y - self.y_mean) / self.y_std).float()
        self._init(generator)
        optimizer = torch.optim.Adam([*self.weights, *self.biases], lr=self.lr)
        bootstrap = torch.randint(n, (self.members, n), generator=generator, device=self.device)
        size = min(self.batch_size, n)
        for _ in range(self.epochs):
            order = bootstrap.gather(1, torch.rand(self.members, n, generator=generator,
                                                   device=self.device).argsort(dim=1))
            for start in range(0, n, size):
                rows = order[:, start:start + size]  # (M, b): each member's own minibatch
                loss = (self._forward(x[rows]) - target[rows]).square().mean(dim=1).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        for p in (*self.weights, *self.biases):
            p.requires_grad_(False)
        return self

    @torch.no_grad()
    def member_predictions(self, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """(M, N) each member's prediction, in the targets' units."""
        x = x.to(self.device, torch.float32)
        parts = [self._forward(x[i:i + chunk].expand(self.members, -1, -1)) for i in range(0, len(x), chunk)]
        out = torch.cat(parts, dim=1) if parts else torch.zeros(self.members, 0, device=self.device)
        return out.double() * self.y_std + self.y_mean

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) over the members, each (N,) float64."""
        members = self.member_predictions(x)
        return members.mean(dim=0), members.std(dim=0, correction=0)

    def ucb(self, x: torch.Tensor, kappa: float) -> torch.Tensor:
        mean, std = self.predict(x)
        return mean + kappa * std


# ---------------------------------------------------------------------- rewards
class Acquisition:
    """The acquisition reward of one proposer's loop: `values(states)` = mean + kappa * std of
    the current `proxy` on the states' features; called on a batch of object rows (as a
    `log_reward_fn`), beta * values, counting every object scored in `calls`. Without a proxy
    (before the first fit) the log-reward is 0 and nothing is counted."""

    def __init__(self, env: DiscreteEnv, kappa: float, beta: float):
        self.env, self.kappa, self.beta = env, kappa, beta
        self.proxy: ProxyEnsemble | None = None
        self.calls = 0

    def values(self, states: torch.Tensor) -> torch.Tensor:
        if self.proxy is None:
            return torch.zeros(len(states), dtype=torch.float64, device=states.device)
        return self.proxy.ucb(self.env.features(states), self.kappa).to(states.device)

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        states = self.env.objects_from_rows(np.asarray(rows))
        if self.proxy is not None:
            self.calls += len(states)
        return self.beta * self.values(states)


def acquisition_env(env: DiscreteEnv, acquisition: Acquisition) -> DiscreteEnv:
    """A copy of `env` (sharing its tables) whose log-reward is the acquisition's, unfloored."""
    acq_env = copy.copy(env)
    acq_env.reward_fn, acq_env.log_reward_fn, acq_env.reward_floor = None, acquisition, 0.0
    acq_env.__dict__.pop("reward_spec", None)  # how the oracle's reward was named: not this one's
    return acq_env


class Oracle:
    """The environment's own score of objects (`env.scores(objects, log_rewards)` where it has
    one, else the reward), counting every object scored in `calls`."""

    def __init__(self, env: DiscreteEnv):
        self.env = env
        self.calls = 0

    def __call__(self, states: torch.Tensor) -> torch.Tensor:
        self.calls += len(states)
        return _score(self.env, states)


def _score(env: DiscreteEnv, states: torch.Tensor) -> torch.Tensor:
    log_rewards = env.log_reward(states)
    scores = getattr(env, "scores", None)
    out = scores(states, log_rewards) if scores is not None else log_rewards.exp()
    return out.to(torch.float64)


# ---------------------------------------------------------------------- bookkeeping
class Modes:
    """Counts the modes among labelled objects: score >= a threshold, the environment's
    `modes_hit`, or membership of its enumerated objects of maximal score; `kind` None: unknown."""

    def __init__(self, env: DiscreteEnv, threshold: float | None, probe: torch.Tensor):
        self.env, self.threshold, self.kind = env, threshold, None
        self.n_modes: int | None = None
        self.index: StateIndex | None = None
        hits = env.modes_hit(probe) if threshold is None else None
        if threshold is not None:
            self.kind = "threshold"
        elif hits is not None:
            self.kind, self.n_modes = "modes_hit", int(hits.shape[1])
        elif isinstance(env, Ehrlich):
            self.kind, self.threshold = "threshold", 1.0  # f = 1: the function's optima
        else:
            self._enumerated_modes()

    def _enumerated_modes(self) -> None:
        """The enumerable environment's objects of maximal score (evaluation: not oracle calls)."""
        probe = copy.copy(self.env)
        probe._enumeration = None
        probe.max_enumerable_states = min(self.env.max_enumerable_states, MODE_ENUMERATION_LIMIT)
        try:
            states = probe.enumerate_states()
        except TooManyStates:
            return
        objects = states[self.env.is_terminal(states)]
        scores = torch.cat([_score(self.env, objects[i:i + 65536]) for i in range(0, len(objects), 65536)])
        best = float(scores.max())
        modes = objects[scores >= best - 1e-9 * max(1.0, abs(best))]
        self.kind, self.n_modes, self.index = "enumerated", len(modes), StateIndex(modes)

    def found(self, labelled: torch.Tensor, scores: torch.Tensor) -> int | None:
        if self.kind == "threshold":
            return int((scores >= self.threshold).sum())  # labelled objects are distinct
        if self.kind == "modes_hit":
            return int(self.env.modes_hit(labelled).any(dim=0).sum())
        if self.kind == "enumerated":
            return int((self.index.lookup(labelled) >= 0).sum())
        return None


def novel_distinct(candidates: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Positions of the candidates that are not among `labelled`, first occurrence of each
    distinct one, in order."""
    n_labelled = len(labelled)
    if len(candidates) == 0:
        return torch.zeros(0, dtype=torch.long, device=candidates.device)
    both = torch.cat([labelled.flatten(1), candidates.flatten(1)])
    _, inverse = torch.unique(both, dim=0, return_inverse=True)
    ids = inverse[n_labelled:]
    seen = torch.zeros(int(inverse.max()) + 1, dtype=torch.bool, device=both.device)
    seen[inverse[:n_labelled]] = True
    order = torch.arange(len(ids), device=ids.device)
    first = torch.full_like(seen, len(ids), dtype=torch.long).scatter_reduce(0, ids, order, "amin")
    return ((~seen[ids]) & (first[ids] == order)).nonzero().squeeze(1)


def _uniform_objects(env: DiscreteEnv, n: int, exclude: torch.Tensor, generator: torch.Generator,
                     tries: int = 50) -> torch.Tensor:
    """Up to n distinct objects not in `exclude`, from uniform rollouts (`env` must cost nothing
    to score: the acquisition environment without a proxy)."""
    found = exclude[:0]
    policy = UniformPolicy(env)
    for _ in range(tries):
        if len(found) >= n:
            break
        draws = sample_objects(env, policy, max(4 * (n - len(found)), 16), generator)
        fresh = draws[novel_distinct(draws, torch.cat([exclude, found]))]
        found = torch.cat([found, fresh[:n - len(found)]])
    return found


def _distance(env: DiscreteEnv) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    matrix = getattr(env, "distance_matrix", None)
    if matrix is not None:
        return matrix
    return lambda a, b: hamming_matrix(a.flatten(1), b.flatten(1))


# ---------------------------------------------------------------------- the loop
def run_active(env: DiscreteEnv, settings: ActiveConfig,
               log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """The active-learning loop of every proposer on `env` (module docstring); returns the
    records, one per proposer and round (round 0: the initial labelled set): {proposer, round,
    labelled, batch (objects labelled this round), random_fill (of them, uniform ones topping up
    a search that found too few new objects), oracle_calls, proxy_calls (acquisition-reward
    calls of this round's search), top_k_score (mean oracle score of the k best labelled
    objects), max_score, batch_mean_score, batch_max_score, top_k_diversity, modes_found,
    n_modes (None where unknown), batch_acquisition (mean acquisition of the batch),
    proxy_rmse (the proxy's error on the batch, before labelling), seconds, total_seconds,
    objects (the batch, as states on the CPU), scores (their oracle scores)}. `log` hears one
    line per round."""
    settings.validate()
    if env.conditional:
        raise ConfigError("active learning takes an unconditional environment")
    # the same initial objects for every proposer: uniform rollouts, scored at no cost
    free = acquisition_env(env, Acquisition(env, settings.kappa, settings.beta))
    generator = torch.Generator(device=env.device).manual_seed(_derived_seed(settings.seed, 0))
    initial = _uniform_objects(free, settings.n_initial, env.initial_states(0), generator)
    if len(initial) == 0:
        raise ConfigError(f"{env.name}: uniform rollouts found no object to label")
    modes = Modes(env, settings.mode_threshold, initial)
    records: list[dict[str, Any]] = []
    for index, proposer in enumerate(settings.proposers):
        records += _run_proposer(env, settings, proposer, index, initial, modes, log)
    return records


def _run_proposer(env: DiscreteEnv, settings: ActiveConfig, proposer: str, index: int, initial: torch.Tensor,
                  modes: Modes, log: Callable[[str], None] | None) -> list[dict[str, Any]]:
    oracle = Oracle(env)
    acquisition = Acquisition(env, settings.kappa, settings.beta)
    acq_env = acquisition_env(env, acquisition)
    distance = _distance(env)
    labelled, scores = initial, oracle(initial)
    trainer: Trainer | None = None
    records: list[dict[str, Any]] = []
    total = 0.0

    def record(round_: int, batch: torch.Tensor, batch_scores: torch.Tensor, fill: int, proxy_calls: int,
               rmse: float, acquired: float, seconds: float) -> None:
        top = scores.argsort(descending=True, stable=True)[:settings.top_k]
        entry = {"proposer": proposer, "round": round_, "labelled": len(labelled), "batch": len(batch_scores),
                 "random_fill": fill, "oracle_calls": oracle.calls, "proxy_calls": proxy_calls,
                 "top_k_score": float(scores[top].mean()), "max_score": float(scores.max()),
                 "batch_mean_score": float(batch_scores.mean()) if len(batch_scores) else math.nan,
                 "batch_max_score": float(batch_scores.max()) if len(batch_scores) else math.nan,
                 "top_k_diversity": mean_pairwise_distance(labelled[top], distance),
                 "modes_found": modes.found(labelled, scores), "n_modes": modes.n_modes,
                 "batch_acquisition": acquired, "proxy_rmse": rmse, "seconds": seconds, "total_seconds": total,
                 "objects": batch.cpu(), "scores": batch_scores.cpu()}
        records.append(entry)
        if log is not None:
            log(f"{proposer} round {round_}: top-{settings.top_k} score {entry['top_k_score']:.4g}, max "
                f"{entry['max_score']:.4g}, batch mean {entry['batch_mean_score']:.4g}, modes "
                f"{entry['modes_found']}, batch acquisition {acquired:.4g}, proxy RMSE {rmse:.3g}, oracle calls "
                f"{oracle.calls}, proxy calls {proxy_calls}, {seconds:.1f} s")

    record(0, labelled, scores, 0, 0, math.nan, math.nan, 0.0)
    for round_ in range(1, settings.rounds + 1):
        started = time.perf_counter()
        proxy = ProxyEnsemble(env.feature_dim, settings.ensemble, settings.proxy_hidden, settings.proxy_layers,
                              settings.proxy_epochs, settings.proxy_batch, settings.proxy_lr, env.device)
        proxy_generator = torch.Generator(device=env.device).manual_seed(_derived_seed(settings.seed, 1, round_))
        acquisition.proxy = proxy.fit(env.features(labelled), scores, proxy_generator)
        calls_before = acquisition.calls
        generator = torch.Generator(device=env.device).manual_seed(_derived_seed(settings.seed, 2, round_, index))
        if proposer == GFN:
            candidates, trainer = _gfn_search(acq_env, acquisition, settings, round_, trainer, generator)
        else:
            candidates = _baseline_search(acq_env, proposer, settings, generator,
                                          _derived_seed(settings.seed, 4, round_, index))
        chosen = candidates[novel_distinct(candidates, labelled)]
        if len(chosen):
            best = acquisition.values(chosen).argsort(descending=True, stable=True)[:settings.batch]
            chosen = chosen[best]
        fill = 0
        if len(chosen) < settings.batch:  # the search found too few new objects: uniform ones, as the initial set
            extra = _uniform_objects(acquisition_env(env, Acquisition(env, 0, 1)), settings.batch - len(chosen),
                                     torch.cat([labelled, chosen]), generator)
            chosen, fill = torch.cat([chosen, extra]), len(extra)
        if len(chosen):
            predicted = proxy.predict(env.features(chosen))[0]
            acquired = float(acquisition.values(chosen).mean())
        else:
            predicted, acquired = torch.zeros(0, dtype=torch.float64), math.nan
        batch_scores = oracle(chosen)
        rmse = float((predicted.to(batch_scores.device) - batch_scores).square().mean().sqrt()) \
            if len(chosen) else math.nan
        labelled, scores = torch.cat([labelled, chosen]), torch.cat([scores, batch_scores])
        seconds = time.perf_counter() - started
        total += seconds
        record(round_, chosen, batch_scores, fill, acquisition.calls - calls_before, rmse, acquired, seconds)
    return records


def _gfn_search(acq_env: DiscreteEnv, acquisition: Acquisition, settings: ActiveConfig, round_: int,
                trainer: Trainer | None, generator: torch.Generator) -> tuple[torch.Tensor, Trainer]:
    """Train the GFlowNet on the acquisition reward (a new one, or the last round's when warm
    starting), then draw `samples` objects; returns every object of its training batches and
    the samples."""
    if trainer is None or not settings.warm_start:
        config = settings.gfn_config(_derived_seed(settings.seed, 3, round_ if not settings.warm_start else 0),
                                     str(acq_env.device))
        trainer = Trainer(config, env=acq_env, progress=False)
    visited = []
    for _ in range(settings.iters):
        trainer.train_step()
        trainer.step += 1
        visited.append(trainer.last_batch.terminal_states)
    if settings.samples:
        visited.append(trainer.sample_objects(settings.samples, generator))  # scored as they are drawn
    return torch.cat(visited), trainer


def baseline_options(name: str, settings: ActiveConfig, seed: int = 0) -> dict[str, Any]:
    """What a baseline's constructor takes among: batch_size (the GFlowNet's), n_chains, seed."""
    offered = {"batch_size": settings.gfn_batch_size, "n_chains": settings.chains, "seed": seed}
    accepted = inspect.signature(BASELINES[name].__init__).parameters
    return {key: value for key, value in offered.items() if key in accepted}


def _baseline_search(acq_env: DiscreteEnv, name: str, settings: ActiveConfig, generator: torch.Generator,
                     seed: int) -> torch.Tensor:
    """The baseline on the acquisition reward until it has spent `proxy_budget` reward calls
    (`seed`: for baselines that take one, e.g. to initialise a network); returns every object
    it visited."""
    sampler = make_baseline(name, acq_env, **baseline_options(name, settings, seed))
    visited = []
    for _ in range(settings.proxy_budget):  # every step costs a call, save MCMC's unmade moves
        if sampler.reward_calls >= settings.proxy_budget:
            break
        visited.append(sampler.step(generator))
    return torch.cat(visited) if visited else acq_env.initial_states(0)


# ---------------------------------------------------------------------- files
#: the columns of active.csv and of the final table
COLUMNS = ("proposer", "round", "labelled", "batch", "oracle_calls", "proxy_calls", "top_k_score", "max_score",
           "batch_mean_score", "batch_max_score", "top_k_diversity", "modes_found", "n_modes", "random_fill",
           "batch_acquisition", "proxy_rmse", "seconds", "total_seconds")
#: the columns of the Markdown table of each proposer's last round
TABLE_COLUMNS = ("proposer", "round", "oracle_calls", "proxy_calls", "top_k_score", "max_score",
                 "batch_mean_score", "top_k_diversity", "modes_found", "total_seconds")


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def active_markdown(records: list[dict[str, Any]], settings: ActiveConfig) -> str:
    """Each proposer's last round, then the top-k score of every round (one column per proposer)."""
    proposers = list(dict.fromkeys(r["proposer"] for r in records))
    last = [[r for r in records if r["proposer"] == p][-1] for p in proposers]
    header = [c.replace("top_k", f"top{settings.top_k}") for c in TABLE_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in TABLE_COLUMNS) + " |" for row in last]
    lines += ["", f"top-{settings.top_k} oracle score of the labelled objects, per round:", "",
              "| round | " + " | ".join(proposers) + " |", "|" + " --- |" * (len(proposers) + 1)]
    for round_ in sorted({r["round"] for r in records}):
        cells = [_cell(next((r["top_k_score"] for r in records if r["proposer"] == p and r["round"] == round_),
                            None)) for p in proposers]
        lines.append(f"| {round_} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_active(env: DiscreteEnv, settings: ActiveConfig, out: str | Path,
                 records: list[dict[str, Any]] | None = None, log: Callable[[str], None] | None = None) -> str:
    """`run_active` (unless its `records` are given), then write out/active.json (settings and
    every record), active.csv (every record), active.md (the tables of `active_markdown`),
    labelled.csv (every labelled object: proposer, round, oracle score and the object's CSV
    columns) and plots/top_k.png (top-k oracle score against round, one curve per proposer);
    returns the Markdown."""
    from gflownets.figures import plot_curves, skipped_plots
    from gflownets.training.io import atomic_write_json, atomic_write_text

    out = Path(out)
    if records is None:
        records = run_active(env, settings, log)
    settings_dict = dataclasses.asdict(settings)
    settings_dict["proposers"] = list(settings.proposers)
    plain = [{k: v for k, v in r.items() if k not in ("objects", "scores")} for r in records]
    atomic_write_json(out / "active.json", {"env": env.name, "env_args": env.describe(), "settings": settings_dict,
                                            "proxy_budget": settings.proxy_budget, "records": plain})
    rows = [",".join(COLUMNS)] + [",".join(_cell(r.get(c)) for c in COLUMNS) for r in plain]
    atomic_write_text(out / "active.csv", "\n".join(rows) + "\n")
    labelled = [",".join(["proposer", "round", "score", *env.object_columns])]
    for r in records:
        if "objects" in r:
            for row, score in zip(env.objects_to_rows(r["objects"]).tolist(), r["scores"].tolist()):
                labelled.append(",".join([r["proposer"], str(r["round"]), repr(float(score)), *map(str, row)]))
    atomic_write_text(out / "labelled.csv", "\n".join(labelled) + "\n")
    markdown = active_markdown(records, settings)
    atomic_write_text(out / "active.md", markdown + "\n")
    (out / "plots").mkdir(parents=True, exist_ok=True)
    curves = {}
    for proposer in dict.fromkeys(r["proposer"] for r in records):
        mine = [r for r in records if r["proposer"] == proposer]
        curves[proposer] = (np.array([r["round"] for r in mine]), np.array([r["top_k_score"] for r in mine]))
    with skipped_plots():
        plot_curves(curves, out / "plots" / "top_k.png", "round", f"top-{settings.top_k} oracle score",
                    f"{env.name}: active learning, batch {settings.batch}")
    return markdown
