"""Seeded binary data sets for energy-based GFlowNets (2-D densities as Gray codes, Ising); imports only errors."""

from gflownets.datasets.densities import (DENSITIES, bits_to_int, float_to_gray_bits, float_to_reference_bits,
                                          gray_bits_to_float, gray_decode, gray_encode, int_to_bits,
                                          reference_bits_to_float, sample_density)
from gflownets.datasets.ising import (exact_ising_distribution, exact_ising_samples, gibbs_samples, ising_energy,
                                      lattice_couplings)

__all__ = ["DENSITIES", "sample_density", "gray_encode", "gray_decode", "int_to_bits", "bits_to_int",
           "float_to_gray_bits", "gray_bits_to_float", "float_to_reference_bits", "reference_bits_to_float",
           "lattice_couplings", "ising_energy", "exact_ising_distribution", "exact_ising_samples", "gibbs_samples"]
