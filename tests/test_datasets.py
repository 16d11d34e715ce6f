"""gflownets.datasets: the 2-D densities and their Gray-coded bits, and the Ising lattices."""

import numpy as np
import pytest
import torch

from gflownets.datasets import (DENSITIES, exact_ising_distribution, exact_ising_samples, float_to_gray_bits,
                                float_to_reference_bits, gibbs_samples, gray_bits_to_float, gray_decode,
                                gray_encode, int_to_bits, ising_energy, lattice_couplings,
                                reference_bits_to_float, sample_density)
from gflownets.errors import ConfigError, TooManyStates

# ---------------------------------------------------------------- Gray codes


def test_gray_code_round_trips_and_adjacent_integers_differ_in_one_bit():
    index = np.arange(2 ** 16)
    code = gray_encode(index)
    assert np.array_equal(gray_decode(code, 16), index)
    assert len(np.unique(code)) == 2 ** 16 and code.max() == 2 ** 16 - 1
    bits = int_to_bits(code[:, None], 16)
    assert np.all(np.abs(np.diff(bits.astype(int), axis=0)).sum(1) == 1)
    assert gray_encode(np.array([0, 1, 2, 3, 4])).tolist() == [0, 1, 3, 2, 6]   # the reflected code
    big = np.array([2 ** 40 + 12345, 2 ** 62 - 1])
    assert np.array_equal(gray_decode(gray_encode(big)), big)


def test_float_bits_round_trip_within_half_a_cell_and_neighbouring_cells_flip_one_bit():
    step = 8.0 / 2 ** 16
    points = np.random.default_rng(0).uniform(-4, 4, size=(1000, 2))
    bits = float_to_gray_bits(points)
    assert bits.shape == (1000, 32) and bits.dtype == np.uint8 and set(np.unique(bits)) <= {0, 1}
    assert np.abs(gray_bits_to_float(bits) - points).max() <= step / 2 + 1e-12
    assert np.array_equal(float_to_gray_bits(gray_bits_to_float(bits)), bits)   # centres are fixed points
    centres = -4 + (np.arange(2 ** 16) + 0.5) * step                            # every cell, in order
    column = float_to_gray_bits(centres[:, None])
    assert np.all(np.abs(np.diff(column.astype(int), axis=0)).sum(1) == 1)      # across 0 too
    clipped = gray_bits_to_float(float_to_gray_bits(np.array([[-100.0, 100.0]])))
    assert np.allclose(clipped, [[-4 + step / 2, 4 - step / 2]])
    other = float_to_gray_bits(points, bits=8, low=-5, high=5)
    assert other.shape == (1000, 16)
    assert np.abs(gray_bits_to_float(other, bits=8, low=-5, high=5) - points).max() <= 10 / 2 ** 9 + 1e-12


def test_reference_convention_sign_bit_then_gray_magnitude():
    int_scale = 2 ** 15 / 5.0
    # +3 -> sign 0, magnitude 3 = Gray 0b10; -3 -> sign 1, same magnitude bits
    three = 3 / int_scale
    assert float_to_reference_bits(np.array([[three, -three]]), int_scale)[0].tolist() == \
        [0] * 14 + [1, 0] + [1] + [0] * 13 + [1, 0]
    points = np.random.default_rng(1).uniform(-4, 4, size=(500, 2))
    back = reference_bits_to_float(float_to_reference_bits(points, int_scale), int_scale)
    assert np.all(np.abs(back) <= np.abs(points)) and np.abs(back - points).max() < 1 / int_scale  # truncation
    # the cells ..., -1, -0, +0, +1, ... are one bit apart, as in the reference
    cells = (np.arange(-50, 50) + 0.5) / int_scale
    column = float_to_reference_bits(cells[:, None], int_scale)
    assert np.all(np.abs(np.diff(column.astype(int), axis=0)).sum(1) == 1)


# ---------------------------------------------------------------- densities

#: per-coordinate standard deviations known in closed form
EXACT_STD = {"checkerboard": 8 / np.sqrt(12),
             "8gaussians": np.sqrt((4 / 1.414) ** 2 / 2 + (0.5 / 1.414) ** 2),
             "circles": np.sqrt(9 * (1 + 0.25) / 4 + 9 * 0.08 ** 2)}


@pytest.mark.parametrize("name", sorted(DENSITIES))
def test_each_density_is_finite_seeded_and_has_the_expected_spread(name):
    points = sample_density(name, 20001, seed=3)
    assert points.shape == (20001, 2) and points.dtype == np.float64 and np.isfinite(points).all()
    assert np.array_equal(points, sample_density(name, 20001, seed=3))
    assert not np.array_equal(points, sample_density(name, 20001, seed=4))
    assert sample_density(name, 7, seed=0).shape == (7, 2) and sample_density(name, 0, seed=0).shape == (0, 2)
    assert np.abs(points).max() < 5.0 and np.mean(np.abs(points) < 4.0) > 0.999   # the data range
    std = points.std(0)
    assert np.all((std > 0.9) & (std < 2.5)), std
    if name in EXACT_STD:
        assert np.allclose(std, EXACT_STD[name], rtol=0.03), (std, EXACT_STD[name])
        assert np.abs(points.mean(0)).max() < 0.1
    bits = float_to_gray_bits(points)
    assert bits.shape == (20001, 32)
    assert np.abs(gray_bits_to_float(bits) - np.clip(points, -4, 4)).max() <= 8 / 2 ** 17 + 1e-12


def test_unknown_density_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown density 'spiral'"):
        sample_density("spiral", 10, 0)


# ---------------------------------------------------------------- Ising


@pytest.mark.parametrize("side", [3, 4, 5])
def test_lattice_couplings_are_symmetric_with_four_neighbours_per_site(side):
    J = lattice_couplings(side, 0.3)
    assert J.shape == (side ** 2, side ** 2) and torch.equal(J, J.T)
    assert torch.all((J != 0).sum(1) == 4) and torch.all(torch.diagonal(J) == 0)
    assert torch.allclose(J[J != 0], torch.tensor(0.3, dtype=torch.float64))
    grid = torch.arange(side ** 2).reshape(side, side)
    assert J[grid[0, 0], grid[0, side - 1]] != 0 and J[grid[0, 0], grid[side - 1, 0]] != 0   # periodic
    assert J[grid[0, 0], grid[1, 1]] == 0


def test_ising_energy_accepts_bits_or_spins():
    J = lattice_couplings(3, 0.5)
    x = torch.randint(0, 2, (6, 9), generator=torch.Generator().manual_seed(0))
    s = 2.0 * x - 1
    expected = -(torch.einsum("bi,ij,bj->b", s.double(), J, s.double()) + 0.2 * s.double().sum(1))
    assert torch.allclose(ising_energy(x, J, 0.2), expected)
    assert torch.allclose(ising_energy(s, J, 0.2), expected)
    assert torch.allclose(ising_energy(torch.ones(9), J), torch.tensor(-0.5 * 9 * 4, dtype=torch.float64))


def test_exact_sampling_matches_the_exact_distribution():
    J = lattice_couplings(2, 0.25)                    # D = 4, 16 states
    field = torch.tensor([0.3, -0.2, 0.1, 0.0])
    states, probs = exact_ising_distribution(J, field)
    assert states.shape == (16, 4) and torch.isclose(probs.sum(), torch.tensor(1.0, dtype=torch.float64))
    weights = torch.exp(-ising_energy(states, J, field))
    assert torch.allclose(probs, weights / weights.sum())
    n = 200_000
    samples = exact_ising_samples(J, n, seed=5, field=field)
    assert samples.shape == (n, 4) and samples.dtype == torch.uint8
    assert torch.equal(samples, exact_ising_samples(J, n, seed=5, field=field))
    index = (samples.long() * torch.tensor([8, 4, 2, 1])).sum(1)
    counts = torch.bincount(index, minlength=16).double()
    chi2 = (((counts - n * probs) ** 2) / (n * probs)).sum()
    assert chi2 < 45.0, chi2                          # 15 degrees of freedom: p ~ 1e-4
    assert 0.5 * (counts / n - probs).abs().sum() < 0.01


def test_exact_enumeration_refuses_large_lattices():
    with pytest.raises(TooManyStates):
        exact_ising_distribution(lattice_couplings(5, 0.1))
    with pytest.raises(ConfigError):
        lattice_couplings(1, 0.1)


def test_gibbs_matches_exact_marginals_and_correlations_on_a_3x3_lattice():
    J = lattice_couplings(3, 0.2)
    field = torch.linspace(-0.3, 0.3, 9)
    states, probs = exact_ising_distribution(J, field)
    spins = 2.0 * states.double() - 1
    exact_mean = probs @ spins
    exact_corr = torch.einsum("k,ki,kj->ij", probs, spins, spins)
    samples = gibbs_samples(J, 8000, sweeps=100, seed=0, field=field)
    assert samples.shape == (8000, 9) and samples.dtype == torch.uint8
    assert torch.equal(samples, gibbs_samples(J, 8000, sweeps=100, seed=0, field=field))
    s = 2.0 * samples.double() - 1
    assert (s.mean(0) - exact_mean).abs().max() < 0.05
    assert ((s.T @ s) / len(s) - exact_corr).abs().max() < 0.05
    # started far from equilibrium (all spins down), it reaches the same marginals; sigma = 0.2
    # (an edge weight 2 * sigma = 0.4) is near the critical 0.44, so the magnetisation mixes slowly
    cold = gibbs_samples(J, 8000, sweeps=200, seed=1, field=field, init=torch.zeros(9))
    assert ((2.0 * cold.double() - 1).mean(0) - exact_mean).abs().max() < 0.05
