"""Estimators for any trained sampler, each with a confidence interval, and where the state
graph is enumerable the exact value next to it (`gflownets estimate`).

With the log-weight of a complete trajectory w(tau) = log R(x) + log P_B(tau | x) - log P_F(tau):

- ELBO = E_{tau ~ P_F}[w] = log Z - KL(P_F || P_B R / Z) <= log Z;
- IW-ELBO_K = E[log mean_{k<=K} exp(w_k)], rising with K towards log Z;
- EUBO = E_{x ~ R/Z, tau ~ P_B(.|x)}[w] = log Z + KL(P_B R / Z || P_F) >= log Z;

all three equal log Z, with zero variance, at the exact solution. The entropy of the learned
distribution, H = -E_{x ~ p}[log p(x)], uses the importance-sampling log p(x) of `likelihood.py`
(biased low for finite K, so H is biased high, by nothing when P_B is the true posterior). The
marginal probability of an event "COLUMN=VALUE" on the objects' CSV rows works on every
environment. Confidence intervals of means are Student-t (sample standard error), Wilson for
proportions."""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist
from typing import Any, Callable

import numpy as np
import torch
from scipy.stats import t as student_t

from gflownets.envs.base import DiscreteEnv
from gflownets.errors import ConfigError
from gflownets.evaluation.exact import StateGraph
from gflownets.evaluation.likelihood import backward_log_weights
from gflownets.objectives.terms import trajectory_terms
from gflownets.policies.base import Policy
from gflownets.sampling.trajectories import sample_forward

#: trajectories rolled out and evaluated at once (bounds memory whatever -n)
CHUNK = 4096


@dataclasses.dataclass
class Estimate:
    """One estimator's result: the estimate, its confidence interval (None where it has none),
    the exact value (None where the environment is not enumerable) and the samples used."""

    estimate: float
    ci_low: float | None = None
    ci_high: float | None = None
    exact: float | None = None
    samples: int | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate, "ci_low": self.ci_low, "ci_high": self.ci_high, "exact": self.exact,
                "samples": self.samples, **self.extra}


def z_score(confidence: float) -> float:
    """Two-sided normal quantile: 1.96 for 0.95."""
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def t_score(confidence: float, dof: int) -> float:
    """Two-sided Student-t quantile with `dof` degrees of freedom: 1.984 for 0.95 at 99, tending
    to z_score(confidence) as dof grows."""
    z_score(confidence)
    return float(student_t.ppf(0.5 + confidence / 2, dof))


def mean_ci(values: torch.Tensor, confidence: float = 0.95) -> Estimate:
    """Sample mean with the Student-t interval mean +- t_{n-1} * std / sqrt(n) (none for n < 2):
    the normal quantile under-covers at small n, most with skewed log-weights."""
    values = values.double()
    n = len(values)
    mean = float(values.mean())
    if n < 2:
        return Estimate(mean, samples=n)
    half = t_score(confidence, n - 1) * float(values.std()) / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, samples=n)


def wilson_ci(successes: int, n: int, confidence: float = 0.95) -> Estimate:
    """A proportion with Wilson's score interval: sound at 0 and 1 and for small n, unlike the
    normal interval."""
    p = successes / n
    z = z_score(confidence)
    scale = 1 + z * z / n
    center = (p + z * z / (2 * n)) / scale
    half = z / scale * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Estimate(p, max(0.0, center - half), min(1.0, center + half), samples=n)


# ------------------------------------------------------------------ sampled log-weights
@torch.no_grad()
def forward_log_weights(env: DiscreteEnv, policy: Policy, n: int, generator: torch.Generator | None = None,
                        chunk: int = CHUNK, progress: Callable[[int], object] | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-weights (n,) float64, finished objects (n, ...)) of n trajectories tau ~ P_F:
    w = log R(x) + log P_B(tau | x) - log P_F(tau), the terms of the ELBO and the IW-ELBO;
    `progress(m)` is called after each chunk of m trajectories."""
    weights, objects = [], []
    for start in range(0, n, chunk):
        trajectories = sample_forward(env, policy, min(chunk, n - start), generator)
        terms = trajectory_terms(policy, trajectories)
        weights.append(trajectories.log_rewards.double()
                       + (terms.log_pb.sum(dim=1) - terms.log_pf.sum(dim=1)).double())
        objects.append(trajectories.terminal_states)
        if progress is not None:
            progress(len(weights[-1]))
    return torch.cat(weights), torch.cat(objects)


def eubo_log_weights(env: DiscreteEnv, policy: Policy, objects: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """(N,) float64 w = log R(x) + log P_B(tau | x) - log P_F(tau), one tau ~ P_B(.|x) per object."""
    return env.log_reward(objects).double() - backward_log_weights(env, policy, objects, 1, generator)[:, 0]


def sample_target(graph: StateGraph, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n objects drawn exactly from the target R/Z of an enumerated environment."""
    positions = torch.multinomial(graph.target, n, replacement=True, generator=generator)
    return graph.terminal_states[positions]


# ------------------------------------------------------------------ estimators from samples
def elbo(log_weights: torch.Tensor, confidence: float = 0.95) -> Estimate:
    """ELBO = mean forward log-weight, a lower bound on log Z in expectation."""
    return mean_ci(log_weights, confidence)


def iw_elbo(log_weights: torch.Tensor, k: int, confidence: float = 0.95) -> Estimate:
    """Importance-weighted ELBO: log mean_k exp(w_k) over groups of k consecutive (independent)
    log-weights, averaged over the len // k groups (the remainder is dropped), CI over the groups."""
    groups = len(log_weights) // k
    if groups < 1:
        raise ConfigError(f"the IW-ELBO with k={k} needs at least k samples, got {len(log_weights)}")
    grouped = log_weights[:groups * k].double().view(groups, k)
    result = mean_ci(torch.logsumexp(grouped, dim=1) - math.log(k), confidence)
    result.extra["k"] = k
    return result


def entropy(env: DiscreteEnv, policy: Policy, objects: torch.Tensor, n_trajectories: int = 10,
            generator: torch.Generator | None = None, confidence: float = 0.95) -> Estimate:
    """H = -E[log p(x)] over objects x drawn from the sampler, each log p(x) estimated from
    `n_trajectories` backward trajectories."""
    log_p = backward_log_weights(env, policy, objects, n_trajectories, generator)
    result = mean_ci(-(torch.logsumexp(log_p, dim=1) - math.log(n_trajectories)), confidence)
    result.extra["trajectories"] = n_trajectories
    return result


def log_prob_ci(log_weights: torch.Tensor, confidence: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """(estimate, half-width) per row of (N, K) importance log-weights: log mean exp(w), and the
    delta-method half-width z * se(mean exp(w)) / mean exp(w) (NaN for K = 1)."""
    top = log_weights.max(dim=1, keepdim=True).values
    scaled = (log_weights - top).exp()
    mean = scaled.mean(dim=1)
    k = log_weights.shape[1]
    se = scaled.std(dim=1) / math.sqrt(k) if k > 1 else torch.full_like(mean, float("nan"))
    return top.squeeze(1) + mean.log(), z_score(confidence) * se / mean


def parse_event(env: DiscreteEnv, event: str) -> tuple[str, int]:
    """`COLUMN=VALUE` with COLUMN one of `env.object_columns`, or `*` for "some column"."""
    column, sep, value = event.partition("=")
    column, value = column.strip(), value.strip()
    columns = env.object_columns
    if not sep or (column != "*" and column not in columns):
        shown = ", ".join(columns[:8]) + (", ..." if len(columns) > 8 else "")
        raise ConfigError(f"--event {event!r}: expected COLUMN=VALUE with COLUMN one of {shown} or * (any "
                          "column)")
    try:
        return column, int(value)
    except ValueError:
        raise ConfigError(f"--event {event!r}: the value {value!r} is not an integer") from None


def event_mask(env: DiscreteEnv, objects: torch.Tensor, event: str) -> torch.Tensor:
    """(N,) bool on the objects' device: which objects have the event, read off their CSV rows."""
    column, value = parse_event(env, event)
    rows = env.objects_to_rows(objects)
    hits = rows == value if column == "*" else rows[:, env.object_columns.index(column)] == value
    hits = hits.any(axis=1) if hits.ndim == 2 else hits
    return torch.from_numpy(np.asarray(hits, dtype=bool)).to(objects.device)


# ------------------------------------------------------------------ exact values
@torch.no_grad()
def exact_elbo(graph: StateGraph, policy: Policy) -> float:
    """E_{tau ~ P_F}[w] by dynamic programming: the flow reaching each edge times its log-ratio."""
    log_pf, log_pb = graph.forward_log_probs(policy), graph.backward_log_probs(policy)
    reach = torch.zeros(graph.n_states, dtype=torch.float64, device=log_pf.device)
    reach[graph.s0] = 1.0
    total = reach.new_zeros(())
    for parents, actions, children in graph.edge_levels:
        flow = reach[parents] * log_pf[parents, actions].exp()
        total += _weighted(flow, log_pb[children, actions] - log_pf[parents, actions])
        reach.index_add_(0, children, flow)
    ends = graph.terminal_ids
    total += _weighted(reach[ends] * log_pf[ends, -1].exp(), graph.log_rewards.double() - log_pf[ends, -1])
    return float(total)


@torch.no_grad()
def exact_eubo(graph: StateGraph, policy: Policy) -> float:
    """E_{x ~ R/Z, tau ~ P_B(.|x)}[w]: the target's mass flowed backward over the graph."""
    log_pf, log_pb = graph.forward_log_probs(policy), graph.backward_log_probs(policy)
    ends = graph.terminal_ids
    mass = torch.zeros(graph.n_states, dtype=torch.float64, device=log_pf.device)
    mass[ends] = graph.target.double()
    total = _weighted(mass[ends], graph.log_rewards.double() - log_pf[ends, -1])
    for parents, actions, children in reversed(graph.edge_levels):
        flow = mass[children] * log_pb[children, actions].exp()
        total += _weighted(flow, log_pb[children, actions] - log_pf[parents, actions])
        mass.index_add_(0, parents, flow)
    return float(total)


def exact_entropy(graph: StateGraph, policy: Policy) -> float:
    """Entropy of the exact learned terminal distribution."""
    p = graph.terminal_distribution(policy)
    return float(-_weighted(p, p.log()))


def _weighted(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """sum weights * values, where zero weights count nothing (even against -inf values)."""
    return torch.where(weights > 0, weights * values, 0.0).sum()


# ------------------------------------------------------------------ everything at once
def estimate_all(env: DiscreteEnv, policy: Policy, n: int = 10_000, k: int = 10, n_trajectories: int = 10,
                 generator: torch.Generator | None = None, confidence: float = 0.95,
                 graph: StateGraph | None = None, learned_log_z: float | None = None,
                 objects: torch.Tensor | None = None, events: tuple[str, ...] = (),
                 progress: Callable[[int], object] | None = None) -> dict[str, Any]:
    """Every estimator, as `gflownets estimate` prints them: {"log_z_true", "estimates", "notes"}.
    The n forward trajectories serve the ELBO, the IW-ELBO (n // k groups), the entropy and the
    marginals; the EUBO uses n objects from the target where `graph` is given, else the given
    `objects` (assumed drawn from the target), else it is left out with a note. `progress(m)` is
    called as each chunk of m forward trajectories is done (a progress bar's update)."""
    for event in events:  # refuse a bad event before any sampling
        parse_event(env, event)
    z_score(confidence)
    notes: list[str] = []
    log_z_true = float(graph.log_z) if graph is not None else None
    estimates: dict[str, Any] = {}
    if learned_log_z is not None:
        estimates["log_z_learned"] = Estimate(learned_log_z, exact=log_z_true).to_dict()

    log_w, sampled = forward_log_weights(env, policy, n, generator, progress=progress)
    result = elbo(log_w, confidence)
    result.exact = exact_elbo(graph, policy) if graph is not None else None
    estimates["elbo"] = result.to_dict()
    estimates["iw_elbo"] = iw_elbo(log_w, k, confidence).to_dict()
    notes.append("elbo/eubo exact: the exact expectation of the bound; log_z_learned exact and the limit "
                 "of iw_elbo as k grows: log_z_true")

    if graph is not None:
        result = elbo(eubo_log_weights(env, policy, sample_target(graph, n, generator), generator), confidence)
        result.exact = exact_eubo(graph, policy)
        result.extra["objects"] = "exact draws from the target"
        estimates["eubo"] = result.to_dict()
    elif objects is not None:
        result = elbo(eubo_log_weights(env, policy, objects, generator), confidence)
        result.extra["objects"] = "--objects (assumed drawn from the target)"
        estimates["eubo"] = result.to_dict()
    else:
        notes.append("eubo left out: it needs objects drawn from the target (--objects FILE) on an "
                     "environment too large to enumerate")

    result = entropy(env, policy, sampled, n_trajectories, generator, confidence)
    result.exact = exact_entropy(graph, policy) if graph is not None else None
    estimates["entropy"] = result.to_dict()

    learned = graph.terminal_distribution(policy) if graph is not None else None
    for event in events:
        result = wilson_ci(int(event_mask(env, sampled, event).sum()), n, confidence)
        if graph is not None:
            hits = event_mask(env, graph.terminal_states, event)
            result.exact = float(learned[hits].sum())
            result.extra["target"] = float(graph.target[hits].sum())
        estimates[f"marginal[{event}]"] = result.to_dict()

    if objects is not None:
        log_p, half = log_prob_ci(backward_log_weights(env, policy, objects, n_trajectories, generator), confidence)
        exact = None
        if graph is not None:
            positions = graph.terminal_positions(objects)
            exact = torch.where(positions >= 0, learned[positions.clamp(min=0)].log(), float("nan"))
        columns = [env.objects_to_rows(objects).tolist(), log_p.tolist(), (log_p - half).tolist(),
                   (log_p + half).tolist(), [None] * len(objects) if exact is None else exact.tolist()]
        estimates["log_prob"] = [{"object": row, "estimate": est, "ci_low": low, "ci_high": high, "exact": ex,
                                  "samples": n_trajectories} for row, est, low, high, ex in zip(*columns)]
    return {"log_z_true": log_z_true, "estimates": estimates, "notes": notes}
