"""The pieces of an energy-model run that the `gflownets energy` command and the benchmark share:
the data (a 2-D density as Gray codes, an Ising lattice, or a CSV of bits), the energy model that
fits it, the negative sampler by name, and the evaluation of a trained energy and sampler."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gflownets.datasets import (DENSITIES, exact_ising_distribution, exact_ising_samples, float_to_gray_bits,
                                gray_bits_to_float, lattice_couplings, sample_density)
from gflownets.datasets.ising import MAX_EXACT_SITES
from gflownets.energy.metrics import (MAX_EXACT_BITS, all_bit_vectors, coupling_rmse, energy_nll, exact_kl,
                                      energies_of, exact_log_z, exp_hamming_mmd,
                                      kernel_log_z)
from gflownets.energy.models import IsingEnergy, MLPEnergy
from gflownets.energy.training import EnergyTrainer, EnergyTraining
from gflownets.energy.negatives import GFlowNetNegatives, GibbsNegatives, GWGNegatives, linear_k
from gflownets.envs.bits import MAX_DIM, Bits
from gflownets.errors import CheckpointError, ConfigError
from gflownets.evaluation.likelihood import estimate_log_prob
from gflownets.figures import plot_curves, plot_point_panels, skipped_plots
from gflownets.textfiles import is_number, read_csv_rows
from gflownets.training.run_files import safe_torch_load
from gflownets.training.io import (LOG_REWARD_COLUMN, atomic_torch_save, atomic_write_json, atomic_write_text,
                                   read_objects_csv, write_objects_csv)

#: negative samplers by name
SAMPLERS = ("eb-gfn", "gibbs", "gwg")
#: steps per iteration that give the chain samplers EB-GFN's energy cost per iteration (3 B
#: evaluations: Gibbs 1 + 2; GWG 2 + 2, the nearest not below)
EQUAL_COST_STEPS = {"gibbs": 2, "gwg": 1}
#: bits per coordinate of the 2-D densities
DENSITY_BITS = 16


@dataclasses.dataclass
class EnergyData:
    name: str
    train: torch.Tensor  # (N, D) float 0/1
    test: torch.Tensor  # (M, D) float 0/1, held out
    couplings: torch.Tensor | None = None  # the true J of Ising data
    is_density: bool = False  # 2-D points as Gray codes: samples can be decoded and plotted

    @property
    def dim(self) -> int:
        return self.train.shape[1]


def density_data(name: str, n_train: int = 20_000, n_test: int = 4000, seed: int = 0) -> EnergyData:
    """A 2-D toy density as 32-bit Gray codes; the held-out points come from another seed."""
    if name not in DENSITIES:
        raise ConfigError(f"unknown density {name!r}; choose from {', '.join(sorted(DENSITIES))}")
    train = float_to_gray_bits(sample_density(name, n_train, seed=seed), bits=DENSITY_BITS)
    test = float_to_gray_bits(sample_density(name, n_test, seed=10_000 + seed), bits=DENSITY_BITS)
    return EnergyData(name, torch.from_numpy(train).float(), torch.from_numpy(test).float(), is_density=True)


def ising_data(side: int = 4, sigma: float = 0.2, n_train: int = 2000, n_test: int = 2000, seed: int = 0) -> EnergyData:
    """Exact samples of the periodic side x side lattice with J = sigma * adjacency."""
    if side ** 2 > MAX_EXACT_SITES:
        raise ConfigError(f"an Ising side of {side} has {side ** 2} sites; exact data stops at {MAX_EXACT_SITES}")
    couplings = lattice_couplings(side, sigma)
    train = exact_ising_samples(couplings, n_train, seed=1000 + seed).float()
    test = exact_ising_samples(couplings, n_test, seed=2000 + seed).float()
    return EnergyData(f"ising{side}x{side}", train, test, couplings=couplings)


def split_data(name: str, bits: torch.Tensor, test_fraction: float = 0.1, seed: int = 0) -> EnergyData:
    """A user's (N, D) bits, shuffled and split into training and held-out rows."""
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if len(bits) < 4:
        raise ConfigError(f"{name}: {len(bits)} rows; at least 4 are needed (2 to train on, 2 held out)")
    if bits.shape[1] > MAX_DIM:
        raise ConfigError(f"{name}: {bits.shape[1]} bits per row, more than the {MAX_DIM} the bits environment takes")
    order = torch.randperm(len(bits), generator=torch.Generator().manual_seed(seed))
    n_test = min(len(bits) - 2, max(2, round(test_fraction * len(bits))))
    bits = bits.float()[order]
    return EnergyData(name, bits[n_test:], bits[:n_test])


def read_bits_csv(path: str | Path) -> torch.Tensor:
    """(N, D) 0/1 rows of a CSV of bits: columns b0..b{D-1} (a header is optional, and a trailing
    log_reward column, as `sample` and `energy` write it, is ignored), read by the bits
    environment's reader, so every row and value is checked."""
    first = read_csv_rows(path, ConfigError, "data file")[:1]
    if not first:
        raise ConfigError(f"{path}: no rows")
    cells = [c.strip() for c in first[0]]
    if not is_number(cells[0]):  # a header
        dim = len(cells) - (cells[-1] == LOG_REWARD_COLUMN)
    else:
        dim = len(cells) - (not cells[-1].lstrip("-").isdigit())
    if not 1 <= dim <= MAX_DIM:
        raise ConfigError(f"{path}: {dim} bit columns; the bits environment takes 1 to {MAX_DIM}")
    return read_objects_csv(path, Bits(dim=dim)) - 1


def make_energy(data: EnergyData, hidden: int = 256, layers: int = 3) -> nn.Module:
    """The Ising model family for Ising data, else an MLP over the data-mean base."""
    if data.couplings is not None:
        return IsingEnergy(data.dim)
    return MLPEnergy(data.dim, hidden=hidden, layers=layers, base_probs=data.train.mean(0))


def make_negatives(sampler: str, dim: int, batch_size: int, iters: int, hidden: int = 256, layers: int = 2,
                   steps: int | None = None, k_warmup: int | None = None):
    """A negative sampler by name: EB-GFN (K growing to D over `k_warmup` iterations, default
    half the run), or `batch_size` persistent Gibbs/GWG chains taking `steps` steps per
    iteration (default: EB-GFN's energy cost)."""
    if sampler == "eb-gfn":
        return GFlowNetNegatives(dim, hidden=hidden, layers=layers,
                                 k_schedule=linear_k(dim, k_warmup or max(1, iters // 2)))
    chains = {"gibbs": GibbsNegatives, "gwg": GWGNegatives}.get(sampler)
    if chains is None:
        raise ConfigError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
    return chains(dim, batch_size, steps=steps or EQUAL_COST_STEPS[sampler])


def evaluate(energy: nn.Module, negatives, data: EnergyData, generator: torch.Generator, n_samples: int = 4000,
             sample_steps: int = 320, is_samples: int = 20_000, trajectories: int = 20) -> tuple[dict, torch.Tensor]:
    """Metrics of a trained energy and sampler, and `n_samples` samples: the GFlowNet's for
    EB-GFN, fresh chains of `sample_steps` steps on the learned energy for Gibbs/GWG.

    Always: held-out NLL of the energy model (log Z_E by kernel importance sampling, or exact
    for D <= 20) and MMD of the samples to the held-out data. EB-GFN: the sampler's own NLL
    (`trajectories` backward trajectories per point). Ising: coupling RMSE and exact KLs."""
    if isinstance(negatives, GFlowNetNegatives):
        samples = negatives.sample(energy, n_samples, generator)
    else:
        samples = negatives.sample(energy, n_samples, generator, steps=sample_steps)
    metrics: dict = {"mmd": exp_hamming_mmd(samples, data.test)}
    if data.dim <= MAX_EXACT_BITS:
        log_z = exact_log_z(energy, data.dim)
        metrics.update(log_z=log_z, log_z_exact=True)
    else:
        estimate = kernel_log_z(energy, data.train, n=is_samples, generator=generator)
        log_z = estimate["log_z"]
        metrics.update(log_z=log_z, log_z_exact=False, log_z_half_width=estimate["half_width"],
                       log_z_ess=estimate["ess"])
    metrics["energy_nll"] = energy_nll(energy, data.test, log_z)
    metrics["uniform_nll"] = data.dim * math.log(2)
    if isinstance(negatives, GFlowNetNegatives):
        negatives.energy = energy
        log_p = estimate_log_prob(negatives.env, negatives.policy, data.test.long() + 1, trajectories, generator)
        metrics["sampler_nll"] = float(-log_p.mean())
    if data.couplings is not None:
        _, probs = exact_ising_distribution(data.couplings)
        metrics["rmse_J"] = coupling_rmse(energy.couplings, data.couplings)
        metrics.update(exact_kl(energy, probs, all_bit_vectors(data.dim)))
    return metrics, samples


def decode_points(bits: torch.Tensor) -> np.ndarray:
    """(n, 32) Gray-code bits -> (n, 2) points."""
    return gray_bits_to_float(bits.cpu().numpy().astype(np.int64), bits=DENSITY_BITS)


def default_out(data: EnergyData, sampler: str) -> Path:
    return Path("runs") / f"energy-{data.name}-{sampler}"


#: the files of an energy run (`--overwrite` replaces them)
ENERGY_RUN_FILES = ("summary.json", "metrics.jsonl", "model.pt", "checkpoint.pt", "samples.csv",
                    "plots/samples.png", "plots/energies.png")
#: settings a resumed run must share with its checkpoint (iters may grow; the rest is the run)
RESUME_FIXED = ("data", "data_sha256", "dim", "sampler", "steps", "k_warmup", "hidden", "layers", "batch_size", "lr",
                "l2", "seed")


def _settings(data: EnergyData, sampler: str, config: EnergyTraining, steps: int | None, hidden: int,
              layers: int, k_warmup: int | None) -> dict:
    digest = hashlib.sha256(data.train.cpu().numpy().tobytes() + data.test.cpu().numpy().tobytes()).hexdigest()
    return {"data": data.name, "data_sha256": digest, "dim": data.dim, "n_train": len(data.train),
            "n_test": len(data.test), "sampler": sampler, "steps": steps, "hidden": hidden, "layers": layers,
            "k_warmup": (k_warmup or max(1, config.iters // 2)) if sampler == "eb-gfn" else None,
            **{k: v for k, v in dataclasses.asdict(config).items() if k != "progress"}}


def _load_energy_checkpoint(checkpoint: Path) -> dict:
    state = safe_torch_load(checkpoint)
    if not isinstance(state, dict) or not isinstance(state.get("settings"), dict) or "trainer" not in state:
        raise CheckpointError(f"{checkpoint} is not an energy-run checkpoint")
    return state


def _resume_state(checkpoint: Path, settings: dict, k_warmup_given: bool) -> dict:
    """The checkpoint of the run in `checkpoint`'s folder, refused (naming the settings) where
    it was trained with other data or settings than `settings`. Without a K warm-up given, the
    run's own is kept (the default is half the first run's iterations, whatever --iters is now)."""
    state = _load_energy_checkpoint(checkpoint)
    saved = state["settings"]
    if not k_warmup_given:
        settings["k_warmup"] = saved.get("k_warmup")
    changed = [f"{k} {saved.get(k)!r} -> {settings[k]!r}" for k in RESUME_FIXED if saved.get(k) != settings[k]]
    if changed:
        raise ConfigError(f"cannot resume {checkpoint.parent}: it was trained with other settings ({'; '.join(changed)})")
    if settings["iters"] < state["trainer"]["step"]:
        raise ConfigError(f"cannot resume {checkpoint.parent} with --iters {settings['iters']}: it has trained "
                          f"{state['trainer']['step']} iterations already")
    return state


def train_and_write(data: EnergyData, sampler: str, config: EnergyTraining, out: Path, *, hidden: int = 256,
                    layers: int = 2, steps: int | None = None, n_samples: int = 4000, sample_steps: int = 320,
                    overwrite: bool = False, resume: bool = False, checkpoint_every: int = 500,
                    k_warmup: int | None = None) -> dict:
    """Train an energy model on `data` with the named negative sampler and write the run folder:
    checkpoint.pt every `checkpoint_every` iterations and at the end (the whole training state,
    atomically, as plain tensors: `resume` continues it bit for bit), then summary.json
    (settings, metrics, seconds), metrics.jsonl (the training records), model.pt (the energy's and
    the GFlowNet's weights), samples.csv and plots (decoded samples next to the held-out data for
    2-D densities; data vs negative energies over training). Returns the summary."""
    out = Path(out)
    checkpoint = out / "checkpoint.pt"
    settings = _settings(data, sampler, config, steps, hidden, layers, k_warmup)
    state = None
    if resume:
        state = _resume_state(checkpoint, settings, k_warmup_given=k_warmup is not None)
    elif any((out / name).exists() for name in ENERGY_RUN_FILES) and not overwrite:
        raise ConfigError(f"{out} holds an energy run already; pass --resume to continue it or --overwrite to replace it")
    if checkpoint_every < 1:
        raise ConfigError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    if not resume:
        for name in ENERGY_RUN_FILES:
            (out / name).unlink(missing_ok=True)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    energy = make_energy(data)
    negatives = make_negatives(sampler, data.dim, config.batch_size, config.iters, hidden, layers, steps,
                               settings["k_warmup"])
    trainer = EnergyTrainer(energy, negatives, data.train, config)
    if state is not None:
        trainer.load_state_dict(state["trainer"])

    saved_at = [trainer.step]

    def save() -> None:
        atomic_torch_save(checkpoint, {"settings": settings, "trainer": trainer.state_dict()})
        saved_at[0] = trainer.step

    def on_record(record: dict) -> None:
        if record["step"] - saved_at[0] >= checkpoint_every:
            save()

    records = trainer.run(record_every=max(1, config.iters // 100), on_record=on_record)
    save()
    metrics, samples = evaluate(energy, negatives, data, torch.Generator().manual_seed(config.seed + 1),
                                n_samples=n_samples, sample_steps=sample_steps)
    summary = {**{k: v for k, v in settings.items() if k != "steps"}, "steps_per_iteration": getattr(negatives, "steps", None),
               "train_seconds": round(trainer.seconds, 2), "energy_evaluations": records[-1]["energy_evaluations"],
               **metrics}
    weights = {"energy": energy.state_dict()}
    if isinstance(negatives, GFlowNetNegatives):
        weights["policy"] = negatives.policy.state_dict()
    atomic_torch_save(out / "model.pt", weights)
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    write_objects_csv(out / "samples.csv", Bits(dim=data.dim), samples.long() + 1, -energies_of(energy, samples))
    steps_axis = np.array([r["step"] for r in records])
    with skipped_plots():
        plot_curves({"data": (steps_axis, np.array([r["data_energy"] for r in records])),
                     "negatives": (steps_axis, np.array([r["fake_energy"] for r in records]))},
                    out / "plots" / "energies.png", "iteration", "mean energy", f"{data.name}, {sampler}")
    if data.is_density:
        with skipped_plots():
            plot_point_panels([("held-out data", decode_points(data.test)),
                               (f"{sampler} samples", decode_points(samples))], out / "plots" / "samples.png")
    atomic_write_json(out / "summary.json", summary)
    return summary
