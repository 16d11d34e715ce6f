"""Sequences of tokens (seed of issue 3): the shared machinery of every sequence environment and
`sequence`, the general one over any alphabet with variable length and any reward.

A state is the sequence built so far, left-aligned and padded with -1: with L = 5,
`[2, 0, 3, -1, -1]` holds three tokens. Forward actions, for a vocabulary of V tokens:

- `v` (0 <= v < V): append token v (allowed while the sequence is shorter than L);
- `V + v` (only with `prepend=True`): prepend token v (allowed on a non-empty sequence
  shorter than L; the empty sequence is only ever extended by appending, so every edge of
  the state graph is made by exactly one action);
- the last action: exit, allowed once the sequence has at least `min_length` tokens.

Backward action `a` undoes forward action `a`: "undo append v" is allowed when the last token
is v, "undo prepend v" when the first token is v and the sequence has at least two tokens.
In the append-only space every state has one parent, so the backward policy is irrelevant;
with prepending a sequence of length l has 2^(l-1) construction orders and P_B matters.

An optional feasibility relation `allowed[u, v]` (token v may follow token u) masks actions
that would create a forbidden neighbour pair, so every reachable sequence is feasible.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from gflownets.envs.base import DiscreteEnv, EnvConfig, draw_device
from gflownets.errors import ConfigError, DataError, TooManyStates
from gflownets.envs.limits import check_policy_inputs
from gflownets.measures.distances import edit_distance, edit_distance_matrix, hamming_matrix
from gflownets.measures.diversity import sequence_sample_metrics

PAD = -1


class SequenceEnv(DiscreteEnv):
    """Base of the sequence environments; subclasses call `_setup` from their `setup` and
    define the reward."""

    #: (V, V) bool: may token v follow token u? None: every pair is allowed.
    allowed: torch.Tensor | None = None
    #: finished objects the `novelty` sample metric is measured against (None: not reported);
    #: training with offline data (`--offline`) sets it to that data set
    reference: torch.Tensor | None = None
    #: how many of the best distinct samples the top-k metrics use
    top_k: int = 100
    compilable = True

    def _setup(self, vocab_size: int, max_length: int, min_length: int, prepend: bool) -> None:
        """The shared sizes, first checked (before a subclass builds its tables) against the limit
        of policy inputs."""
        check_policy_inputs(self.name, max_length * (vocab_size + 1),
                            f"max_length * (vocabulary + 1) = {max_length} * {vocab_size + 1} one-hot features")
        self.vocab_size = int(vocab_size)
        self.max_length = int(max_length)
        self.min_length = int(min_length)
        self.prepend = bool(prepend)
        self.n_actions = self.vocab_size * (2 if self.prepend else 1) + 1
        self.state_shape = (self.max_length,)
        self.max_steps = self.max_length + 1
        self.feature_dim = self.max_length * (self.vocab_size + 1)

    # ------------------------------------------------------------------ helpers
    def lengths(self, states: torch.Tensor) -> torch.Tensor:
        return (states >= 0).sum(dim=-1)

    def _last(self, states: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        return states.gather(1, (n - 1).clamp(min=0)[:, None]).squeeze(1)

    @property
    def initial_state(self) -> torch.Tensor:
        return torch.full((self.max_length,), PAD, dtype=torch.long, device=self.device)

    # ------------------------------------------------------------------ masks and steps
    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        n = self.lengths(states)
        room = n < self.max_length
        append = room[:, None].expand(-1, self.vocab_size)
        if self.allowed is not None:
            follows = self.allowed[self._last(states, n).clamp(min=0)]  # (B, V): v may follow last
            append = append & (follows | (n == 0)[:, None])
        parts = [append]
        if self.prepend:
            prepend = (room & (n > 0))[:, None].expand(-1, self.vocab_size)
            if self.allowed is not None:
                prepend = prepend & self.allowed[:, states[:, 0].clamp(min=0)].T  # v may precede first
            parts.append(prepend)
        parts.append((n >= self.min_length)[:, None])
        return torch.cat(parts, dim=1)

    def backward_mask(self, states: torch.Tensor) -> torch.Tensor:
        n = self.lengths(states)
        tokens = torch.arange(self.vocab_size, device=states.device)
        undo_append = (n > 0)[:, None] & (self._last(states, n)[:, None] == tokens)
        if not self.prepend:
            return undo_append
        undo_prepend = (n > 1)[:, None] & (states[:, :1] == tokens)
        return torch.cat([undo_append, undo_prepend], dim=1)

    # Both steps are branch-free tensor expressions (no `nonzero`, no data-dependent shapes), so
    # that a rollout of them compiles into one graph (`compilable`); an append to a full
    # sequence leaves it unchanged instead of raising (the masks never allow one).
    def _step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(self.max_length, device=states.device)
        at_end = positions == self.lengths(states)[:, None]
        appended = torch.where(at_end & (actions < self.vocab_size)[:, None], actions[:, None], states)
        if not self.prepend:
            return appended
        shifted = torch.cat([(actions - self.vocab_size)[:, None], states[:, :-1]], dim=1)
        return torch.where((actions >= self.vocab_size)[:, None], shifted, appended)

    def _backward_step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(self.max_length, device=states.device)
        at_last = positions == self.lengths(states)[:, None] - 1
        unappended = torch.where(at_last & (actions < self.vocab_size)[:, None], PAD, states)
        if not self.prepend:
            return unappended
        shifted = torch.cat([states[:, 1:], states.new_full((states.shape[0], 1), PAD)], dim=1)
        return torch.where((actions >= self.vocab_size)[:, None], shifted, unappended)

    def features(self, states: torch.Tensor) -> torch.Tensor:
        """One-hot of each position over {empty, token 0, ..., token V-1}."""
        return torch.nn.functional.one_hot(states + 1, self.vocab_size + 1).flatten(1).float()

    features_one_hot = True

    def feature_indices(self, states: torch.Tensor) -> torch.Tensor:
        blocks = torch.arange(self.max_length, device=states.device) * (self.vocab_size + 1)
        return blocks + states + 1

    def mutate(self, objects: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One token of each sequence replaced by a different, uniformly drawn one; a change
        that creates a forbidden pair of neighbours is not made. Symmetric, and it keeps the
        length: with variable lengths, Metropolis chains of it stay at their start's length."""
        rows = torch.arange(objects.shape[0], device=objects.device)
        lengths = self.lengths(objects)
        device = draw_device(generator, objects)
        position = (torch.rand(len(rows), generator=generator, device=device) * lengths).long()
        shift = torch.randint(1, max(self.vocab_size, 2), (len(rows),), generator=generator, device=device)
        mutants = objects.clone()
        mutants[rows, position] = (objects[rows, position] + shift) % self.vocab_size
        keep = self.feasible(mutants) & (lengths > 0)
        return torch.where(keep[:, None], mutants, objects)

    def guided_mutate(self, objects: torch.Tensor, next_token_logits: Callable[[torch.Tensor], torch.Tensor],
                      generator: torch.Generator, guide: float) -> tuple[torch.Tensor, torch.Tensor]:
        """A point mutation whose new token comes from a learned model: at a uniform position i,
        draw from q = guide * softmax(next_token_logits(x_<i)) + (1 - guide) * uniform, both over
        the tokens that fit between x_{i-1} and x_{i+1}, the current one excluded. The policy's
        append logits at the prefix x_<i (a state) give the next-token model, so a policy
        trained on good sequences proposes the tokens that completed motifs elsewhere. Returns
        (proposals, log q(x | x') - log q(x' | x)), the Metropolis-Hastings correction: the
        prefix, and so q, is the same both ways. A row with no other token to place comes back
        unchanged."""
        n, length = objects.shape
        rows = torch.arange(n, device=objects.device)
        lengths = self.lengths(objects)
        device = draw_device(generator, objects)
        position = (torch.rand(n, generator=generator, device=device) * lengths).long().to(objects.device)
        prefix = torch.where(torch.arange(length, device=objects.device) >= position[:, None], PAD, objects)
        fits = torch.ones(n, self.vocab_size, dtype=torch.bool, device=objects.device)
        if self.allowed is not None:
            before = objects[rows, (position - 1).clamp(min=0)]
            after = objects[rows, (position + 1).clamp(max=length - 1)]
            fits &= self.allowed[before] | (position == 0)[:, None]
            fits &= self.allowed[:, after].T | (position + 1 >= lengths)[:, None]
        with torch.no_grad():
            logits = next_token_logits(prefix)[:, :self.vocab_size].double()
        model = logits.masked_fill(~fits, float("-inf")).softmax(dim=-1).nan_to_num(0.0)
        q = guide * model + (1 - guide) * fits.double() / fits.sum(dim=-1, keepdim=True).clamp(min=1)
        current = objects[rows, position]
        q_current = q[rows, current]
        others = q.clone()
        others[rows, current] = 0.0
        movable = (others.sum(dim=-1) > 1e-12) & (lengths > 0)
        others[~movable, 0] = 1.0  # a placeholder draw, discarded below
        token = torch.multinomial(others.to(device), 1, generator=generator).squeeze(1).to(objects.device)
        q_token = q[rows, token]
        log_q_ratio = (q_current.log() - (1 - q_token).log()) - (q_token.log() - (1 - q_current).log())
        mutants = objects.clone()
        mutants[rows, position] = token
        proposals = torch.where(movable[:, None], mutants, objects)
        return proposals, torch.where(movable, log_q_ratio, torch.zeros_like(log_q_ratio))

    # ------------------------------------------------------------------ enumeration
    def n_states_upper_bound(self) -> int:
        return sum(self.vocab_size ** l for l in range(self.max_length + 1))

    def _enumerate(self) -> torch.Tensor:
        if self.n_states_upper_bound() > self.max_enumerable_states:
            raise TooManyStates(f"{self.name}: up to {self.n_states_upper_bound():.3g} states, "
                                "too many to enumerate")
        return super()._enumerate()

    # ------------------------------------------------------------------ objects
    @property
    def object_columns(self) -> list[str]:
        """Token ids t0, t1, ... (the rows are the states: padded with -1 after the end)."""
        return [f"t{i}" for i in range(self.max_length)]

    def objects_from_rows(self, rows: np.ndarray) -> torch.Tensor:
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] != self.max_length:
            raise DataError(f"{self.name} objects need {self.max_length} token columns, "
                            f"got {rows.shape[-1] if rows.ndim else 0}")
        bad = (rows < PAD) | (rows >= self.vocab_size)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise DataError(f"row {r + 1}: token {rows[r, c]} in column t{c} is outside "
                            f"[0, {self.vocab_size - 1}] (or -1 for padding)")
        present = rows >= 0
        lengths = present.sum(axis=1)
        gap = present[:, 1:] & ~present[:, :-1]
        if gap.any():
            r = int(np.argwhere(gap)[0][0])
            raise DataError(f"row {r + 1}: -1 padding may only follow the last token")
        short = lengths < self.min_length
        if short.any():
            r = int(np.argmax(short))
            raise DataError(f"row {r + 1}: {lengths[r]} tokens, fewer than min_length={self.min_length}")
        states = torch.as_tensor(rows.astype(np.int64), device=self.device)
        if self.allowed is not None:
            ok = self.feasible(states)
            if not ok.all():
                r = int((~ok).nonzero()[0])
                raise DataError(f"row {r + 1}: {rows[r].tolist()} has a forbidden pair of neighbours")
        return states

    def feasible(self, states: torch.Tensor) -> torch.Tensor:
        """(B,) bool: every neighbour pair is allowed (True without a feasibility relation)."""
        if self.allowed is None:
            return torch.ones(states.shape[0], dtype=torch.bool, device=states.device)
        left, right = states[:, :-1], states[:, 1:]
        pair_ok = self.allowed[left.clamp(min=0), right.clamp(min=0)] | (right < 0)
        return pair_ok.all(dim=1)

    # ------------------------------------------------------------------ metrics
    def distance_matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(Na, Nb) distances between finished objects: Hamming for fixed-length sequences,
        Levenshtein (edit) distance otherwise."""
        if self.min_length == self.max_length:
            return hamming_matrix(a, b)
        return edit_distance_matrix(a, b)

    def scores(self, objects: torch.Tensor, log_rewards: torch.Tensor) -> torch.Tensor:
        """The task's score of each object for the top-k metrics (default: the reward)."""
        return log_rewards.double().exp()

    def use_training_data(self, objects: torch.Tensor) -> None:
        """Novelty is measured against the offline data set, unless a reference was given."""
        if self.reference is None:
            self.reference = objects

    def sample_metrics(self, objects: torch.Tensor, log_rewards: torch.Tensor) -> dict[str, float]:
        return sequence_sample_metrics(self, objects, log_rewards, k=self.top_k, reference=self.reference)


@dataclasses.dataclass
class SequenceConfig(EnvConfig):
    alphabet: str = dataclasses.field(default="ACGT", metadata={
        "help": "the tokens, one character each (ACGT for DNA, ACDEFGHIKLMNPQRSTVWY for proteins)"})
    max_length: int = dataclasses.field(default=8, metadata={"help": "longest sequence L"})
    min_length: int = dataclasses.field(default=1, metadata={"help": "shortest finished sequence"})
    prepend: bool = dataclasses.field(default=False, metadata={
        "help": "allow prepending as well as appending (non-autoregressive; P_B then matters)"})
    target_seed: int = dataclasses.field(default=0, metadata={"help": "seed of the default reward's target"})
    beta: float = dataclasses.field(default=3.0, metadata={"help": "sharpness of the default reward"})
    ngrams: str = dataclasses.field(default="", metadata={
        "help": "comma-separated n-grams of the alphabet (e.g. 'AC,GT'): their counts, each divided by the most "
                "that fit, are the objectives of --condition preference (MOGFN's N-gram task)"})

    def validate(self) -> None:
        if len(self.alphabet) < 1 or len(set(self.alphabet)) != len(self.alphabet):
            raise ConfigError(f"alphabet must be non-empty distinct characters, got {self.alphabet!r}")
        if self.max_length < 1:
            raise ConfigError(f"max_length must be >= 1, got {self.max_length}")
        if not 0 <= self.min_length <= self.max_length:
            raise ConfigError(f"min_length must be in [0, max_length={self.max_length}], got {self.min_length}")
        if not np.isfinite(self.beta):
            raise ConfigError(f"beta must be finite, got {self.beta}")
        for gram in self.ngram_list():
            if not 1 <= len(gram) <= self.max_length or any(c not in self.alphabet for c in gram):
                raise ConfigError(f"n-gram {gram!r} must be 1 to max_length={self.max_length} characters of "
                                  f"{self.alphabet!r}")

    def ngram_list(self) -> list[str]:
        return [g.strip() for g in self.ngrams.split(",") if g.strip()]


class Sequence(SequenceEnv):
    """Variable-length sequences over an alphabet with an explicit end (exit) action.

    Give the reward as `reward_fn` / `log_reward_fn`: it receives the (B, max_length) LongTensor
    of token ids padded with -1. The default reward, a toy, is
    log R(x) = -beta * edit_distance(x, target) / max_length for a random target of length
    max_length drawn from `target_seed`."""

    name = "sequence"
    Config = SequenceConfig
    presets = {
        "dna": dict(alphabet="ACGT", max_length=8),
        "protein": dict(alphabet="ACDEFGHIKLMNPQRSTVWY", max_length=6),
    }

    def setup(self, config: SequenceConfig) -> None:
        self._setup(len(config.alphabet), config.max_length, config.min_length, config.prepend)
        gen = torch.Generator().manual_seed(config.target_seed)
        self.target = torch.randint(self.vocab_size, (self.max_length,), generator=gen)
        index = {c: i for i, c in enumerate(config.alphabet)}
        self.ngrams = [torch.tensor([index[c] for c in gram]) for gram in config.ngram_list()]

    def objective_values(self, states: torch.Tensor) -> torch.Tensor | None:
        """With `ngrams`: (B, m) counts of each n-gram (overlapping occurrences), each divided by
        the most occurrences a sequence of max_length can hold (L - n + 1)."""
        if not self.ngrams:
            return None
        columns = []
        for gram in self.ngrams:
            n = len(gram)
            windows = states.unfold(1, n, 1)  # (B, L - n + 1, n); padding (-1) never matches
            hits = (windows == gram.to(states.device)).all(dim=-1).sum(dim=1)
            columns.append(hits.double() / (self.max_length - n + 1))
        return torch.stack(columns, dim=1)

    def default_log_reward(self, states: torch.Tensor) -> torch.Tensor:
        d = edit_distance(states, self.target.expand(states.shape[0], -1))
        return -self.config.beta * d.double() / self.max_length

    def decode(self, states: torch.Tensor) -> list[str]:
        """Finished objects as strings of the alphabet."""
        letters = self.config.alphabet
        return ["".join(letters[t] for t in row if t >= 0) for row in states.tolist()]

    def encode(self, strings: list[str]) -> torch.Tensor:
        index = {c: i for i, c in enumerate(self.config.alphabet)}
        rows = np.full((len(strings), self.max_length), PAD, dtype=np.int64)
        for r, s in enumerate(strings):
            if len(s) > self.max_length or any(c not in index for c in s):
                raise DataError(f"row {r + 1}: {s!r} is not a sequence of at most {self.max_length} "
                                f"characters of {self.config.alphabet!r}")
            rows[r, :len(s)] = [index[c] for c in s]
        return self.objects_from_rows(rows)

