"""Bit sequences of the trajectory balance paper (Malkin et al. 2022, section 5.3): strings of
n bits written k bits (one token of V = 2^k values) at a time, with a reward that peaks at a
fixed set M of mode sequences:

    R(x) = exp(-beta * min_{m in M} d(x, m) / n),   d = Hamming distance.

M is built as in the paper's code: each mode concatenates n/8 blocks drawn uniformly, with
replacement, from H = {00000000, 11111111, 11110000, 00001111, 00111100} (truncated to n bits
when 8 does not divide n), repeated modes drawn again, reproducibly from `mode_seed` (numpy's
PCG64: the same construction, not the paper's exact draw). A mode counts as found once a sample
lies within Hamming distance `mode_threshold` of it (30 of 120 bits).

On beta: with beta = 3 (the default) the reward varies by only e^3 over all distances, and the
exact target puts ~2e-6 of its mass within distance 30 of any mode (bench/README.md), so a
correct sampler finds almost none. The reference implementations of the benchmark that find
modes (Tiapkin et al.'s gflownet-rl `bitseq`, gfnx's code) use log R = -2 d, i.e. beta = 2n = 240
here: the `paper` preset.

`prepend=False` is the append-only (autoregressive) space; `prepend=True` is the paper's
non-autoregressive one, where each sequence has 2^(n/k - 1) construction orders.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from gflownets.envs.base import EnvConfig
from gflownets.envs.sequences import SequenceEnv
from gflownets.errors import ConfigError, DataError
from gflownets.envs.limits import check_seed, require_at_most
from gflownets.measures.distances import hamming_matrix

#: the paper's building blocks of the modes
BLOCKS = ("00000000", "11111111", "11110000", "00001111", "00111100")
#: the most modes: they are drawn one by one, and every reward compares each object with all of them
MAX_MODES = 100_000
#: held-out sequences whose log p is compared with log R at each evaluation (the paper's test set),
#: and how many of them when log p is estimated from 10 backward trajectories each (prepending)
TEST_SIZE, TEST_SIZE_PREPEND = 1000, 200


@dataclasses.dataclass
class BitSeqConfig(EnvConfig):
    length: int = dataclasses.field(default=120, metadata={"help": "number of bits n"})
    token_bits: int = dataclasses.field(default=8, metadata={"help": "bits per token k (n % k == 0)"})
    num_modes: int = dataclasses.field(default=60, metadata={"help": "size of the mode set |M|"})
    mode_seed: int = dataclasses.field(default=0, metadata={"help": "seed of the mode set"})
    beta: float = dataclasses.field(default=3.0, metadata={"help": "reward sharpness beta"})
    mode_threshold: int = dataclasses.field(default=30, metadata={
        "help": "a mode is found by a sample within this Hamming distance"})
    prepend: bool = dataclasses.field(default=False, metadata={
        "help": "prepend/append (non-autoregressive) actions instead of append-only"})

    def validate(self) -> None:
        if self.token_bits < 1 or self.token_bits > 16:
            raise ConfigError(f"token_bits must be in [1, 16], got {self.token_bits}")
        if self.length < 1 or self.length % self.token_bits:
            raise ConfigError(f"length must be a positive multiple of token_bits={self.token_bits}, "
                              f"got {self.length}")
        if self.num_modes < 1:
            raise ConfigError(f"num_modes must be >= 1, got {self.num_modes}")
        require_at_most("num_modes", self.num_modes, MAX_MODES,
                        "the modes are drawn one by one and every reward compares each object with all of them")
        if self.mode_threshold < 0:
            raise ConfigError(f"mode_threshold must be >= 0, got {self.mode_threshold}")
        check_seed("mode_seed", self.mode_seed)
        if not np.isfinite(self.beta):
            raise ConfigError(f"beta must be finite, got {self.beta}")


def make_modes(length: int, num_modes: int, seed: int) -> torch.Tensor:
    """(num_modes, length) distinct 0/1 modes: concatenations of random blocks of `BLOCKS`
    (a repeated draw is discarded and drawn again, as the paper's code keeps a set)."""
    blocks = np.array([[int(b) for b in block] for block in BLOCKS], dtype=np.int64)
    n_blocks = -(-length // 8)
    rng = np.random.default_rng(seed)
    modes: dict[bytes, np.ndarray] = {}
    for _ in range(1000 * num_modes):
        mode = blocks[rng.integers(0, len(BLOCKS), size=n_blocks)].reshape(-1)[:length]
        modes.setdefault(mode.tobytes(), mode)
        if len(modes) == num_modes:
            return torch.from_numpy(np.stack(list(modes.values())))
    raise ConfigError(f"cannot draw {num_modes} distinct modes of {length} bits")


class BitSeq(SequenceEnv):
    """Bit sequences of the trajectory balance paper: n bits as n/k tokens of k bits."""

    name = "bitseq"
    Config = BitSeqConfig
    presets = {
        "paper": dict(length=120, token_bits=8, prepend=True, beta=240.0),
        "small": dict(length=6, token_bits=2, num_modes=4, mode_threshold=1),
    }

    def setup(self, config: BitSeqConfig) -> None:
        self.n_bits, self.token_bits = config.length, config.token_bits
        length = config.length // config.token_bits
        self._setup(2 ** config.token_bits, length, length, config.prepend)
        self.modes = make_modes(config.length, config.num_modes, config.mode_seed)
        self._shifts = torch.arange(self.token_bits - 1, -1, -1)
        self._held_out: torch.Tensor | None = None  # the test set, drawn at the first evaluation

    # ------------------------------------------------------------------ bits <-> tokens
    def to_bits(self, states: torch.Tensor) -> torch.Tensor:
        """(B, n) 0/1 bits of full sequences, most significant bit of each token first."""
        return ((states[:, :, None] >> self._shifts) & 1).flatten(1)

    def from_bits(self, bits: torch.Tensor) -> torch.Tensor:
        chunks = bits.reshape(bits.shape[0], self.max_length, self.token_bits)
        return (chunks << self._shifts).sum(dim=-1)

    def mode_distances(self, states: torch.Tensor) -> torch.Tensor:
        """(B, |M|) Hamming distances to every mode."""
        x = self.to_bits(states).double()
        m = self.modes.double()
        return (x @ (1 - m).T + (1 - x) @ m.T).round().long()

    # ------------------------------------------------------------------ reward and metrics
    def default_log_reward(self, states: torch.Tensor) -> torch.Tensor:
        d = self.mode_distances(states).min(dim=1).values
        return -self.config.beta * d.double() / self.n_bits

    def modes_hit(self, objects: torch.Tensor) -> torch.Tensor:
        return self.mode_distances(objects) <= self.config.mode_threshold

    def distance_matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Hamming distance in bits."""
        return hamming_matrix(self.to_bits(a), self.to_bits(b))

    def test_set(self, n: int, seed: int = 0) -> torch.Tensor:
        """n held-out sequences spread over all reward levels, as the paper's test set: a random
        mode with a uniformly random number (1 to n_bits) of distinct bits flipped. Drawn on
        the CPU (the same set on every device), returned on `self.device`."""
        gen = torch.Generator().manual_seed(seed)
        cpu = torch.device("cpu")
        bits = self.modes.cpu()[torch.randint(len(self.modes), (n,), generator=gen, device=cpu)].clone()
        flips = torch.randint(1, self.n_bits + 1, (n,), generator=gen, device=cpu)
        order = torch.rand(n, self.n_bits, generator=gen, device=cpu).argsort(dim=1)
        flip = torch.zeros_like(bits, dtype=torch.bool)
        flip.scatter_(1, order, torch.arange(self.n_bits, device=cpu).expand(n, -1) < flips[:, None])
        return self.from_bits((bits ^ flip.long()).to(self.device))

    def held_out_objects(self) -> tuple[torch.Tensor, int] | None:
        """The trajectory balance paper's test set for its measure, Spearman(log p, log R), at
        every evaluation: `TEST_SIZE` sequences (`test_set`, seed 0), log p exact when
        append-only (one trajectory each); with prepending, the first `TEST_SIZE_PREPEND` of
        them, log p estimated from 10 backward trajectories each (10x the work per sequence).
        None with a user's reward: it may be costly to call. Drawn once, then kept (`to` moves it
        with the environment's other tensors)."""
        if self.reward_fn is not None or self.log_reward_fn is not None:
            return None
        if self._held_out is None:
            self._held_out = self.test_set(TEST_SIZE)
        test = self._held_out
        return (test[:TEST_SIZE_PREPEND], 10) if self.prepend else (test, 1)

    # ------------------------------------------------------------------ objects
    @property
    def object_columns(self) -> list[str]:
        return [f"b{i}" for i in range(self.n_bits)]

    def objects_to_rows(self, states: torch.Tensor) -> np.ndarray:
        """A finished sequence as its n bits."""
        if (states < 0).any():
            raise ValueError("objects_to_rows takes full-length bit sequences only")
        return self.to_bits(states).cpu().numpy().astype(np.int64)

    def objects_from_rows(self, rows: np.ndarray) -> torch.Tensor:
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] != self.n_bits:
            raise DataError(f"bitseq objects need {self.n_bits} bit columns, got {rows.shape[-1]}")
        bad = (rows != 0) & (rows != 1)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise DataError(f"row {r + 1}: bit {rows[r, c]} in column b{c} is not 0 or 1")
        return self.from_bits(torch.as_tensor(rows.astype(np.int64), device=self.device))
