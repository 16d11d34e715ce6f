"""The synthetic 2-D densities of ALOE (Dai et al. 2020), Gibbs-with-gradients (Grathwohl et al.
2021) and EB-GFN (Zhang et al. 2022), and their discretisation to Gray-coded bit strings.

The densities follow the reference `inf_train_gen` (same shapes, scales and noise levels), written
with NumPy so that scikit-learn is not needed; the random streams differ from the reference's
`np.random.RandomState`, so samples match in distribution, not draw for draw. Unlike the reference,
`2spirals` and `pinwheel` return exactly `n` points (it returned n rounded down to a multiple of
2 and 5).

Two bit encodings are offered:

- `float_to_gray_bits` / `gray_bits_to_float` (the default of this package): each coordinate is
  quantised to one of 2**bits equal cells of [low, high] (values outside are clipped to the end
  cells) and the cell index is Gray-coded, most significant bit first. Adjacent cells differ in
  exactly one bit everywhere, zero included; decoding returns the cell's centre.
- `float_to_reference_bits` / `reference_bits_to_float`: the reference code's exact convention
  (`compress` + `get_binmap(..., 'gray')` + `recover`): a sign bit ('1' for negative) followed by
  the reflected Gray code of the (bits - 1)-bit magnitude int(|x| * int_scale), truncated toward
  zero; decoding returns the signed integer / int_scale. The reference's int_scale is
  2**(bits - 1) / (f_scale + 1) with f_scale = max |x| over 5000 samples + 1, i.e. per data set.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from gflownets.errors import ConfigError

Sampler = Callable[[np.random.Generator, int], np.ndarray]


def _swissroll(rng: np.random.Generator, n: int) -> np.ndarray:
    """scikit-learn's make_swiss_roll(noise=1.0), its (x, z) plane, divided by 5."""
    t = 1.5 * np.pi * (1.0 + 2.0 * rng.random(n))
    xz = np.stack([t * np.cos(t), t * np.sin(t)], axis=1)
    return (xz + rng.standard_normal((n, 2))) / 5.0


def _circles(rng: np.random.Generator, n: int) -> np.ndarray:
    """make_circles(factor=0.5, noise=0.08) times 3: half the points on each circle, shuffled."""
    n_out = n // 2
    angles = np.concatenate([np.linspace(0.0, 2 * np.pi, n_out, endpoint=False),
                             np.linspace(0.0, 2 * np.pi, n - n_out, endpoint=False)])
    radius = np.where(np.arange(n) < n_out, 1.0, 0.5)
    points = radius[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    points = points + 0.08 * rng.standard_normal((n, 2))
    return 3.0 * points[rng.permutation(n)]


def _moons(rng: np.random.Generator, n: int) -> np.ndarray:
    """make_moons(noise=0.1), scaled by 2 and shifted by (-1, -0.2) to centre it."""
    n_out = n // 2
    outer = np.linspace(0.0, np.pi, n_out)
    inner = np.linspace(0.0, np.pi, n - n_out)
    points = np.concatenate([np.stack([np.cos(outer), np.sin(outer)], axis=1),
                             np.stack([1.0 - np.cos(inner), 0.5 - np.sin(inner)], axis=1)])
    points = points + 0.1 * rng.standard_normal((n, 2))
    return 2.0 * points[rng.permutation(n)] + np.array([-1.0, -0.2])


def _eight_gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
    """Eight isotropic Gaussians (std 0.5) on a circle of radius 4, all divided by 1.414."""
    angles = np.pi / 4 * np.arange(8)
    centres = 4.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return (centres[rng.integers(0, 8, n)] + 0.5 * rng.standard_normal((n, 2))) / 1.414


def _pinwheel(rng: np.random.Generator, n: int) -> np.ndarray:
    """Five arms: radial N(1, 0.3), tangential N(0, 0.1), rotated by an angle growing with radius."""
    features = rng.standard_normal((n, 2)) * np.array([0.3, 0.1]) + np.array([1.0, 0.0])
    arm = rng.permutation(np.arange(n) % 5)
    angles = 2 * np.pi / 5 * arm + 0.25 * np.exp(features[:, 0])
    cos, sin = np.cos(angles), np.sin(angles)
    # the row vector times [[cos, -sin], [sin, cos]], as the reference's einsum
    rotated = np.stack([features[:, 0] * cos + features[:, 1] * sin,
                        -features[:, 0] * sin + features[:, 1] * cos], axis=1)
    return 2.0 * rotated


def _two_spirals(rng: np.random.Generator, n: int) -> np.ndarray:
    """Two interleaved spirals of 1.5 turns, the second the first's point reflection."""
    half = (n + 1) // 2
    t = np.sqrt(rng.random(half)) * 3 * np.pi
    arm = np.stack([-np.cos(t) * t, np.sin(t) * t], axis=1) + 0.5 * rng.random((half, 2))
    points = np.concatenate([arm, -arm])[:n] / 3.0
    return points + 0.1 * rng.standard_normal((n, 2))


def _checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform on the eight dark squares of a 4 x 4 board of side 8 centred on the origin."""
    x1 = rng.random(n) * 4 - 2
    x2 = rng.random(n) - 2 * rng.integers(0, 2, n) + np.floor(x1) % 2
    return 2.0 * np.stack([x1, x2], axis=1)


DENSITIES: dict[str, Sampler] = {
    "2spirals": _two_spirals,
    "8gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "pinwheel": _pinwheel,
    "moons": _moons,
    "circles": _circles,
    "swissroll": _swissroll,
}


def sample_density(name: str, n: int, seed: int) -> np.ndarray:
    """(n, 2) float64 points of the named density; the same seed gives the same points."""
    if name not in DENSITIES:
        raise ConfigError(f"unknown density {name!r}; known: {', '.join(DENSITIES)}")
    if n < 0:
        raise ConfigError(f"the number of points must be >= 0, got {n}")
    return DENSITIES[name](np.random.default_rng(seed), int(n)).astype(np.float64)


def gray_encode(index: np.ndarray) -> np.ndarray:
    """The reflected Gray code of non-negative integers: consecutive integers differ in one bit."""
    index = np.asarray(index, dtype=np.int64)
    return index ^ (index >> 1)


def gray_decode(code: np.ndarray, bits: int = 63) -> np.ndarray:
    """Inverse of gray_encode for codes below 2**bits: a prefix XOR in log2(bits) shifts."""
    value = np.asarray(code, dtype=np.int64).copy()
    shift = 1
    while shift < bits:
        value ^= value >> shift
        shift *= 2
    return value


def int_to_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """(..., k) integers -> (..., k * bits) uint8 bits, most significant first per integer."""
    values = np.asarray(values, dtype=np.int64)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    out = (values[..., None] >> shifts) & 1
    return out.reshape(*values.shape[:-1], values.shape[-1] * bits).astype(np.uint8)


def bits_to_int(bit_array: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of int_to_bits: (..., k * bits) {0, 1} -> (..., k) int64."""
    bit_array = np.asarray(bit_array)
    if bit_array.shape[-1] % bits:
        raise ConfigError(f"{bit_array.shape[-1]} bits do not split into words of {bits}")
    words = bit_array.reshape(*bit_array.shape[:-1], -1, bits).astype(np.int64)
    return words @ (np.int64(1) << np.arange(bits - 1, -1, -1, dtype=np.int64))


def _check_bits(bits: int, low: float, high: float) -> None:
    if not 1 <= bits <= 62:
        raise ConfigError(f"bits must be in 1..62, got {bits}")
    if not high > low:
        raise ConfigError(f"the range needs low < high, got [{low}, {high}]")


def float_to_gray_bits(points: np.ndarray, bits: int = 16, low: float = -4.0,
                       high: float = 4.0) -> np.ndarray:
    """(n, d) floats -> (n, d * bits) uint8 Gray codes of their cells among 2**bits in [low, high];
    a small move of a point flips one bit, so bit-flip samplers see the geometry of the plane."""
    _check_bits(bits, low, high)
    points = np.asarray(points, dtype=np.float64)
    cells = np.floor((points - low) / (high - low) * 2.0 ** bits)
    index = np.clip(np.nan_to_num(cells, nan=0.0), 0, 2 ** bits - 1).astype(np.int64)
    return int_to_bits(gray_encode(index), bits)


def gray_bits_to_float(bit_array: np.ndarray, bits: int = 16, low: float = -4.0,
                       high: float = 4.0) -> np.ndarray:
    """Inverse of float_to_gray_bits: each coordinate is its cell's centre, so a point of
    [low, high] comes back within half a cell, (high - low) / 2**(bits + 1)."""
    _check_bits(bits, low, high)
    index = gray_decode(bits_to_int(bit_array, bits), bits)
    return low + (index + 0.5) * ((high - low) / 2.0 ** bits)


def float_to_reference_bits(points: np.ndarray, int_scale: float, bits: int = 16) -> np.ndarray:
    """(n, d) floats -> (n, d * bits) uint8 in the reference code's convention (sign bit, then the
    Gray code of the truncated magnitude), for comparing with its published samples and models.
    Magnitudes beyond 2**(bits - 1) - 1 are clipped (the reference would fail on them)."""
    _check_bits(bits, 0.0, 1.0)
    scaled = np.nan_to_num(np.asarray(points, dtype=np.float64) * int_scale)
    magnitude = np.minimum(np.abs(scaled).astype(np.int64), 2 ** (bits - 1) - 1)
    negative = (scaled < 0).astype(np.int64)
    return int_to_bits((negative << (bits - 1)) | gray_encode(magnitude), bits)


def reference_bits_to_float(bit_array: np.ndarray, int_scale: float, bits: int = 16) -> np.ndarray:
    """Inverse of float_to_reference_bits, as the reference's bin2float: signed integer / int_scale."""
    _check_bits(bits, 0.0, 1.0)
    words = bits_to_int(bit_array, bits)
    magnitude = gray_decode(words & (2 ** (bits - 1) - 1), bits)
    sign = np.where(words >> (bits - 1) == 1, -1.0, 1.0)
    return sign * magnitude / int_scale
