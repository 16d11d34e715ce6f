"""Ehrlich functions (Stanton et al. 2024, "Closed-form test functions for biological sequence
design"): a seeded, closed-form oracle over sequences of length L on V states.

Construction, from one torch generator seeded with `oracle_seed`, in this order (the order of
pytorch-holo's `Ehrlich`, so that equal seeds give equal functions):

1. a transition matrix: softmax(randn(V, V) / 0.5) restricted to a banded mask (each row allows
   2b+1 cyclically consecutive states, b = int(0.4 V)) whose rows are permuted by randperm(V),
   plus the diagonal (repeats are always feasible), renormalised per row;
2. c motifs of length k: one chain of c*k states sampled from that Markov chain (started from
   its stationary distribution), cut into c pieces, so a sequence holding all motifs exists;
3. a spacing per motif: offsets s_1 = 0 < s_2 < ... < s_k with gaps 1 + floor(w_j * slack / c),
   w ~ a uniform point of the simplex (normalised rand(k - 1)), slack = L - c*k.

Value of a sequence x: 0 if x is infeasible (some neighbour pair has transition probability 0);
otherwise prod_i r(h_i(x)) where h_i(x) = max over positions l of the quantised fraction of
motif i present at l + s (q levels: floor(count / ceil(k/q)) / (k / ceil(k/q))) and
r(h) = h * (1 + epistasis * h * (h - 1)) (r(h) = h for the default epistasis 0). The optimum is
1.0, reached by `optimal_solution()`.

The environment `ehrlich` builds length-L sequences (appending, or prepending and appending)
with reward R(x) = f(x)^beta, floored at `floor` (f = 0 has log-reward log floor; default
beta 16, floor 1e-40).
By default the known feasibility constraint masks the actions that would create a forbidden
pair (`mask_infeasible`), so every finished sequence is feasible; with it off, infeasible
sequences are reachable and get the floor.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from gflownets.envs.base import EnvConfig
from gflownets.envs.sequences import SequenceEnv
from gflownets.errors import ConfigError
from gflownets.envs.limits import check_seed, require_at_most

#: the most states V: building the oracle checks that its V x V transition matrix is ergodic by
#: ~2 log2 V products of V x V matrices (7 s at 2048 on one core, 40 s at 4096)
MAX_NUM_STATES = 2048


class EhrlichFunction:
    """The oracle itself: `f(x)` for a (B, L) LongTensor of states in [0, V)."""

    def __init__(self, num_states: int, dim: int, num_motifs: int, motif_length: int,
                 quantization: int | None = None, epistasis_factor: float = 0.0, seed: int = 0):
        self.num_states, self.dim = num_states, dim
        self.num_motifs, self.motif_length = num_motifs, motif_length
        self.quantization = motif_length if quantization is None else quantization
        self.epistasis_factor = epistasis_factor
        self.seed = seed
        slack = dim - num_motifs * motif_length
        if slack < 0 or motif_length < 1 or num_motifs < 1:
            raise ValueError(f"{num_motifs} motifs of length {motif_length} do not fit in length {dim}")
        gen = torch.Generator().manual_seed(seed)
        self.transition_matrix = self._transition_matrix(gen)
        self.allowed = self.transition_matrix > 0
        self.stationary = self._stationary(self.transition_matrix)
        chain = self.sample_chain(self.stationary, num_motifs * motif_length, 1, gen)[0]
        self.motifs = chain.reshape(num_motifs, motif_length)
        spacings = []
        for _ in range(num_motifs):
            weights = torch.rand(motif_length - 1, generator=gen)
            weights = weights / weights.sum()
            gaps = 1 + ((slack // num_motifs) * weights).floor().long()
            spacings.append(torch.cat([torch.zeros(1, dtype=torch.long), gaps.cumsum(0)]))
        #: (c, k) offsets of each motif's elements from its start
        self.offsets = torch.stack(spacings)

    @property
    def device(self) -> torch.device:
        """Where the oracle's tables live (`to`); it evaluates sequences there."""
        return self.transition_matrix.device

    def to(self, device: str | torch.device) -> EhrlichFunction:
        """Move the oracle's tables to `device`, in place; returns self."""
        for key, value in list(vars(self).items()):
            if isinstance(value, torch.Tensor):
                setattr(self, key, value.to(device))
        return self

    # ------------------------------------------------------------------ construction
    def _transition_matrix(self, gen: torch.Generator) -> torch.Tensor:
        v = self.num_states
        logits = torch.randn(v, v, generator=gen)
        dense = (logits / 0.5).softmax(dim=-1)
        band = int(v * 0.4)
        diff = (torch.arange(v)[None, :] - torch.arange(v)[:, None]) % v
        banded = (diff <= band) | (diff >= v - band)  # cyclic band of half-width `band`
        mask = banded[torch.randperm(v, generator=gen)] | torch.eye(v, dtype=torch.bool)
        matrix = torch.where(mask, dense, torch.zeros_like(dense))
        matrix = matrix / matrix.sum(dim=-1, keepdim=True)
        # ergodic: some power of the support is all positive (Wielandt's bound (V-1)^2 + 1)
        reach = mask.clone()
        for _ in range(math.ceil(math.log2((v - 1) ** 2 + 1))):
            reach = (reach.float() @ reach.float()) > 0
        if not reach.all():
            raise ValueError(f"Ehrlich seed {self.seed}: the sampled transition matrix is not ergodic")
        return matrix

    @staticmethod
    def _stationary(matrix: torch.Tensor) -> torch.Tensor:
        """pi with pi (I - P)... = 0 and sum 1, by least squares through a QR factorisation."""
        n = matrix.shape[0]
        system = torch.cat([(torch.eye(n) - matrix).T, torch.ones(1, n)], dim=0)
        rhs = torch.zeros(n + 1, 1)
        rhs[-1] = 1
        q, r = torch.linalg.qr(system)
        return torch.linalg.solve(r, q.T @ rhs).squeeze(-1)

    def sample_chain(self, initial: torch.Tensor, steps: int, n: int,
                     gen: torch.Generator | None = None) -> torch.Tensor:
        """(n, steps) sequences of the Markov chain (feasible by construction), drawn on the
        generator's device (else the oracle's), returned on the oracle's device."""
        device = gen.device if gen is not None else self.device
        matrix, initial = self.transition_matrix.to(device), initial.to(device)
        out = torch.zeros(n, steps, dtype=torch.long, device=device)
        out[:, 0] = torch.multinomial(initial, n, replacement=True, generator=gen)
        for t in range(1, steps):
            out[:, t] = torch.multinomial(matrix[out[:, t - 1]], 1, generator=gen).squeeze(-1)
        return out.to(self.device)

    # ------------------------------------------------------------------ evaluation
    def feasible(self, x: torch.Tensor) -> torch.Tensor:
        return self.allowed[x[:, :-1], x[:, 1:]].all(dim=1)

    def motif_presence(self, x: torch.Tensor) -> torch.Tensor:
        """(B, c) quantised fraction h_i(x) of each motif present at its best position."""
        k = self.motif_length
        starts = torch.arange(self.dim, device=self.offsets.device)
        index = starts[None, :, None] + self.offsets[:, None, :]  # (c, P, k)
        fits = index[:, :, -1] < self.dim  # (c, P): the motif's own span fits from this start
        gathered = x[:, index.clamp(max=self.dim - 1)]  # (B, c, P, k)
        count = (gathered == self.motifs[None, :, None, :]).sum(dim=-1).double() * fits
        step = math.ceil(k / self.quantization)
        quantised = torch.div(count, step, rounding_mode="floor") / (k / step)
        return quantised.max(dim=-1).values

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) float64 values in [0, 1]; 0 for infeasible sequences. Evaluated on the oracle's
        device (`x` is moved there), and so returned there."""
        x = torch.as_tensor(x, device=self.device).long()
        h = self.motif_presence(x)
        response = h * (1 + self.epistasis_factor * h * (h - 1))
        value = response.prod(dim=1)
        return torch.where(self.feasible(x), value, torch.zeros_like(value))

    def optimal_solution(self) -> torch.Tensor:
        """(L,) a sequence of value 1: each motif at its spacing, gaps filled by repeating the
        previous element (always feasible), motifs back to back, the rest repeats the last."""
        out = []
        for motif, offsets in zip(self.motifs.tolist(), self.offsets.tolist()):
            for j, element in enumerate(motif):
                gap = offsets[j + 1] - offsets[j] if j + 1 < len(motif) else 1
                out.extend([element] * gap)
        out.extend([out[-1]] * (self.dim - len(out)))
        return torch.tensor(out, dtype=torch.long, device=self.device)

    def initial_solution(self, n: int = 1, seed: int | None = None) -> torch.Tensor:
        """(n, L) feasible sequences sampled from the Markov chain (a typical starting point),
        drawn on the CPU (the same ones on every device), on the oracle's device."""
        gen = torch.Generator().manual_seed(self.seed if seed is None else seed)
        return self.sample_chain(self.stationary, self.dim, n, gen)


@dataclasses.dataclass
class EhrlichConfig(EnvConfig):
    num_states: int = dataclasses.field(default=32, metadata={"help": "vocabulary size V"})
    dim: int = dataclasses.field(default=32, metadata={"help": "sequence length L"})
    num_motifs: int = dataclasses.field(default=4, metadata={"help": "number of motifs c"})
    motif_length: int = dataclasses.field(default=4, metadata={"help": "motif length k"})
    quantization: int = dataclasses.field(default=0, metadata={
        "help": "quantisation levels q of each motif's presence (0: q = motif_length)"})
    epistasis_factor: float = dataclasses.field(default=0.0, metadata={"help": "epistasis of the response"})
    oracle_seed: int = dataclasses.field(default=0, metadata={"help": "seed of the Ehrlich function"})
    beta: float = dataclasses.field(default=16.0, metadata={
        "help": "reward R = f^beta (16 did best in bench/ehrlich_tb.py)"})
    floor: float = dataclasses.field(default=1e-40, metadata={
        "help": "reward floor (> 0): f = 0 gets this reward; below (1/q)^(c*beta), the least "
                "non-zero f^beta, so only f = 0 is floored"})
    mask_infeasible: bool = dataclasses.field(default=True, metadata={
        "help": "mask actions that create an infeasible pair of neighbours"})
    prepend: bool = dataclasses.field(default=False, metadata={
        "help": "prepend/append (non-autoregressive) actions instead of append-only"})

    def validate(self) -> None:
        if self.num_states < 2:
            raise ConfigError(f"num_states must be >= 2, got {self.num_states}")
        check_seed("oracle_seed", self.oracle_seed)
        require_at_most("num_states", self.num_states, MAX_NUM_STATES,
                        "the oracle's V x V transition matrix is checked by ~2 log2 V products of V x V matrices")
        if self.num_motifs < 1 or self.motif_length < 2:
            raise ConfigError("num_motifs must be >= 1 and motif_length >= 2, got "
                              f"{self.num_motifs} and {self.motif_length}")
        if self.num_motifs * self.motif_length > self.dim:
            raise ConfigError(f"num_motifs * motif_length = {self.num_motifs * self.motif_length} "
                              f"exceeds dim = {self.dim}")
        if not 0 <= self.quantization <= self.motif_length:
            raise ConfigError(f"quantization must be in [0, motif_length={self.motif_length}], "
                              f"got {self.quantization}")
        if not (np.isfinite(self.beta) and self.beta > 0):
            raise ConfigError(f"beta must be > 0, got {self.beta}")
        if not 0 < self.floor < 1:
            raise ConfigError(f"floor must be in (0, 1), got {self.floor}")


class Ehrlich(SequenceEnv):
    """Ehrlich holo-bench functions: length-`dim` sequences over `num_states` states, R = f^beta."""

    name = "ehrlich"
    Config = EhrlichConfig
    presets = {
        "small": dict(num_states=4, dim=6, num_motifs=1, motif_length=3),
        "holo32": dict(num_states=32, dim=32, num_motifs=4, motif_length=4),
    }

    #: RunConfig values that `gflownets train ehrlich` starts from (before --config and options),
    #: chosen on oracle seeds 1-5 (bench/ehrlich_tb.py --oracle-seeds, bench/NOTES.md): 16
    #: Metropolis chains of 8 point mutations per iteration whose new token the policy proposes
    #: half of the time (most oracle calls go to the search; the policy learns from where the
    #: chains move and steers them), a small on-policy batch, reward-prioritised replay, and the
    #: convolutional policy (a motif learnt at one place is recognised at every other: the
    #: trained sampler draws optima where the one-hot MLP drew none, bench/NOTES.md session 15)
    run_defaults = {"iters": 3000, "lr_logz": 0.5, "batch_size": 4, "replay_size": 1000, "replay_batch": 4,
                    "replay_keep": "best", "mutations": 16, "mutation_steps": 8, "mutation_guide": 0.5,
                    "policy": "conv", "hidden": 64, "layers": 3, "eval_every": 500, "threads": 1}

    def __init__(self, config: EhrlichConfig | None = None, *, reward_floor: float | None = None, **kwargs):
        """As `DiscreteEnv`'s, except that `reward_floor` defaults to the config's `floor`."""
        super().__init__(config, reward_floor=0.0 if reward_floor is None else reward_floor, **kwargs)
        if reward_floor is None:
            self.reward_floor = float(self.config.floor)

    def setup(self, config: EhrlichConfig) -> None:
        self._setup(config.num_states, config.dim, config.dim, config.prepend)
        self.oracle = EhrlichFunction(config.num_states, config.dim, config.num_motifs,
                                      config.motif_length, config.quantization or None,
                                      config.epistasis_factor, config.oracle_seed)
        if config.mask_infeasible:
            self.allowed = self.oracle.allowed

    def to(self, device: str | torch.device) -> Ehrlich:
        """As `DiscreteEnv.to`, and the oracle's tables too."""
        super().to(device)
        self.oracle.to(device)
        return self

    def default_log_reward(self, states: torch.Tensor) -> torch.Tensor:
        return self.config.beta * self.oracle(states).log()

    def scores(self, objects: torch.Tensor, log_rewards: torch.Tensor) -> torch.Tensor:
        """The Ehrlich value f(x) (the benchmark's score), not the sharpened reward."""
        return self.oracle(objects)

    def n_states_upper_bound(self) -> int:
        if self.allowed is None:
            return super().n_states_upper_bound()
        counts = torch.ones(self.vocab_size, dtype=torch.float64, device=self.allowed.device)
        total = 1.0 + counts.sum().item()
        for _ in range(self.max_length - 1):  # feasible sequences of each length, counted exactly
            counts = self.allowed.double().T @ counts
            total += counts.sum().item()
        return int(total)
