"""Energy-based GFlowNets (EB-GFN): an energy E(x) learned from binary data, its negatives drawn by a GFlowNet (or Gibbs, GWG)."""

from gflownets.energy.metrics import coupling_rmse, exact_kl, exp_hamming_mmd, kernel_log_z, energy_nll
from gflownets.energy.models import IsingEnergy, MLPEnergy
from gflownets.energy.negatives import GFlowNetNegatives, GibbsNegatives, GWGNegatives, linear_k
from gflownets.energy.training import EnergyTrainer, EnergyTraining, train_energy

__all__ = ["MLPEnergy", "IsingEnergy", "GFlowNetNegatives", "GibbsNegatives", "GWGNegatives", "linear_k",
           "EnergyTraining", "EnergyTrainer", "train_energy", "exp_hamming_mmd", "coupling_rmse", "exact_kl", "kernel_log_z",
           "energy_nll"]
