"""Energy-based GFlowNets: the back-and-forth MH proposal, Gibbs and GWG leave their target
invariant exactly (chi-square against the enumerated distribution, and the raw proposals do
not, so the test can fail); the metrics hit closed forms; joint training brings the learned
energy's exact KL to the Ising data distribution down for EB-GFN, Gibbs and GWG."""

import json
import math

import pytest
import torch
from scipy.stats import chisquare

from gflownets.datasets import exact_ising_distribution, exact_ising_samples, lattice_couplings
from gflownets.energy import (EnergyTraining, GFlowNetNegatives, GibbsNegatives, GWGNegatives, IsingEnergy,
                              MLPEnergy, coupling_rmse, energy_nll, exact_kl, exp_hamming_mmd, kernel_log_z,
                              linear_k, train_energy)
from gflownets.energy.metrics import all_bit_vectors
from gflownets.envs import Bits
from gflownets.errors import ConfigError
from gflownets.evaluation.likelihood import estimate_log_prob
from gflownets.policies import MLPPolicy
from gflownets.sampling.back_and_forth import back_and_forth
from gflownets.sampling.metropolis import metropolis_hastings

from cli_helpers import one_error_line, run_cli

N_CHAINS = 40_000


def histogram(objects: torch.Tensor, dim: int) -> torch.Tensor:
    """Counts of each of the 2^dim bit vectors (row k: k's binary digits, most significant first)."""
    weights = 2 ** torch.arange(dim - 1, -1, -1)
    return torch.bincount((objects.long() * weights).sum(1), minlength=2 ** dim).double()


def exact_draws(log_probs: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    index = torch.multinomial(log_probs.exp(), n, replacement=True, generator=generator)
    return all_bit_vectors(int(math.log2(len(log_probs))))[index]


def target_of_bits(env: Bits) -> torch.Tensor:
    """log-probabilities of the bits env's objects, in `all_bit_vectors` order."""
    objects = all_bit_vectors(env.dim).long() + 1
    return env.log_reward(objects).log_softmax(0)


@pytest.mark.parametrize("backward,k", [("learned", 2), ("learned", 4), ("uniform", 3)])
def test_back_and_forth_leaves_the_reward_distribution_invariant(backward, k):
    torch.manual_seed(3)
    env = Bits(dim=4, coupling=0.8, field=0.4)
    policy = MLPPolicy(env, hidden=32, layers=1, backward=backward, state_flow=False)
    with torch.no_grad():  # a policy far from the target: the MH correction has work to do
        policy.head.weight.mul_(5)
    log_target = target_of_bits(env)
    start = exact_draws(log_target, N_CHAINS, seed=1).long() + 1
    generator = torch.Generator().manual_seed(2)
    proposal = back_and_forth(env, policy, start, k, generator)
    moved, accepted = metropolis_hastings(start, env.log_reward(start), proposal.proposals,
                                          env.log_reward(proposal.proposals), proposal.log_ratio, generator)
    expected = log_target.exp() * N_CHAINS
    assert chisquare(histogram(moved - 1, 4), expected).pvalue > 1e-3
    assert 0.05 < accepted.double().mean() < 0.95
    # the proposals alone are off target: the test would catch a wrong acceptance ratio
    assert chisquare(histogram(proposal.proposals - 1, 4), expected).pvalue < 1e-6


def test_back_and_forth_refuses_too_many_steps():
    env = Bits(dim=3)
    policy = MLPPolicy(env, hidden=8, layers=1)
    with pytest.raises(ValueError, match="fewer than k=4"):
        back_and_forth(env, policy, env.initial_states(2) + 1, 4)
    with pytest.raises(ValueError, match="k >= 1"):
        back_and_forth(env, policy, env.initial_states(2) + 1, 0)


@pytest.mark.parametrize("sampler", [GibbsNegatives, GWGNegatives])
def test_chain_samplers_leave_the_energy_distribution_invariant(sampler):
    torch.manual_seed(0)
    energy = IsingEnergy(4, field=True)
    with torch.no_grad():
        energy.weight.normal_(0, 0.6)
        energy.field.normal_(0, 0.6)
    states = all_bit_vectors(4)
    with torch.no_grad():
        log_target = (-energy(states)).double().log_softmax(0)
    start = exact_draws(log_target, N_CHAINS, seed=5)
    chains = sampler(4, N_CHAINS, steps=1)
    moved = chains.run(energy, start, 1, torch.Generator().manual_seed(6))
    assert chisquare(histogram(moved, 4), log_target.exp() * N_CHAINS).pvalue > 1e-3
    assert (moved != start).any(dim=1).double().mean() > 0.1
    assert chains.energy_evaluations == (2 if sampler is GibbsNegatives else 4) * N_CHAINS


def test_exp_hamming_mmd_closed_forms():
    dim = 8
    zeros, ones = torch.zeros(50, dim), torch.ones(60, dim)
    assert exp_hamming_mmd(zeros, ones) == pytest.approx(2 - 2 * math.exp(-0.1 * dim), rel=1e-12)
    assert exp_hamming_mmd(zeros, zeros[:10]) == pytest.approx(0.0, abs=1e-12)
    generator = torch.Generator().manual_seed(0)
    a = torch.randint(0, 2, (2000, dim), generator=generator)
    b = torch.randint(0, 2, (2000, dim), generator=generator)
    skewed = (torch.rand(2000, dim, generator=generator) < 0.8).long()
    assert abs(exp_hamming_mmd(a, b)) < 2e-3  # unbiased: near 0 for one distribution
    assert exp_hamming_mmd(a, skewed) > 20 * abs(exp_hamming_mmd(a, b))


def test_kernel_log_z_matches_the_exact_partition_function():
    torch.manual_seed(1)
    energy = IsingEnergy(10, field=True)
    with torch.no_grad():
        energy.weight.normal_(0, 0.15)
        energy.field.normal_(0, 0.3)
    with torch.no_grad():
        exact = float(torch.logsumexp(-energy(all_bit_vectors(10)).double(), 0))
    train = (torch.rand(300, 10) < 0.5).float()
    estimate = kernel_log_z(energy, train, n=20_000, flip=0.2, generator=torch.Generator().manual_seed(2))
    assert abs(estimate["log_z"] - exact) < max(3 * estimate["half_width"], 0.02)
    nll = energy_nll(energy, train[:5], estimate["log_z"])
    with torch.no_grad():
        assert nll == pytest.approx(float(energy(train[:5]).double().mean()) + estimate["log_z"])


def test_a_uniform_sampler_scores_the_uniform_nll_floor():
    """A forward policy uniform over (bit, value) moves samples every x with p = 2^-D: the
    NLL floor of 32 ln 2 = 22.18 nats on 32 bits, which importance sampling gets exactly."""
    env = Bits(dim=32)
    policy = MLPPolicy(env, hidden=8, layers=1, backward="uniform")
    with torch.no_grad():
        policy.head.weight.zero_()
        policy.head.bias.zero_()
    objects = torch.randint(0, 2, (20, 32), generator=torch.Generator().manual_seed(0)) + 1
    log_p = estimate_log_prob(env, policy, objects, n_trajectories=3, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(-log_p, torch.full_like(log_p, 32 * math.log(2)), atol=1e-4)


def test_linear_k_grows_from_one_to_the_dimension():
    k = linear_k(32, warmup=100)
    assert [k(0), k(49), k(99), k(500)] == [1, 16, 32, 32]
    with pytest.raises(ConfigError, match="warm-up"):
        linear_k(8, 0)


def test_training_rejects_bad_input():
    energy = MLPEnergy(4, hidden=8, layers=1)
    chains = GibbsNegatives(4, 8)
    with pytest.raises(ConfigError, match="only 0 and 1"):
        train_energy(energy, chains, torch.full((10, 4), 2.0), EnergyTraining(iters=1, progress=False))
    with pytest.raises(ConfigError, match="iters"):
        train_energy(energy, chains, torch.zeros(10, 4), EnergyTraining(iters=0, progress=False))
    with pytest.raises(ConfigError, match="batch_size must be of type int, got 12.5"):
        train_energy(energy, chains, torch.zeros(10, 4), EnergyTraining(batch_size=12.5, progress=False))
    with pytest.raises(ConfigError, match="back_ratio"):
        GFlowNetNegatives(4, back_ratio=1.5)
    with pytest.raises(ConfigError, match="base_probs"):
        MLPEnergy(4, base_probs=torch.full((3,), 0.5))


@pytest.mark.parametrize("method", ["eb-gfn", "gibbs", "gwg"])
def test_joint_training_learns_the_ising_distribution(method):
    """Ising 3 x 3 (512 states, exact): 400 iterations (EB-GFN) or 600 (the chains) take the exact
    KL of the learned energy's distribution to the true one from about 3 nats to under 0.3, and
    the couplings towards J."""
    torch.manual_seed(0)
    couplings = lattice_couplings(3, 0.2)
    states, probs = exact_ising_distribution(couplings)
    data = exact_ising_samples(couplings, 2000, seed=1).float()
    energy = IsingEnergy(9)
    negatives = {"eb-gfn": lambda: GFlowNetNegatives(9, hidden=64, layers=2, k_schedule=linear_k(9, 150)),
                 "gibbs": lambda: GibbsNegatives(9, 64, steps=2),
                 "gwg": lambda: GWGNegatives(9, 64, steps=1)}[method]()
    iters = 400 if method == "eb-gfn" else 600
    before = exact_kl(energy, probs, states)["kl_true_learned"]
    records = train_energy(energy, negatives, data, EnergyTraining(iters=iters, batch_size=64, lr=0.01, progress=False))
    after = exact_kl(energy, probs, states)["kl_true_learned"]
    assert before > 2.5 and after < 0.3
    assert coupling_rmse(energy.couplings, couplings) < 0.5 * coupling_rmse(torch.zeros(9, 9), couplings)
    assert records[-1]["step"] == iters and records[-1]["energy_evaluations"] > 0
    if method == "eb-gfn":
        assert records[-1]["k"] == 9 and records[-1]["acceptance"] > 0.3


def test_energy_command_writes_a_run(tmp_path, capsys):
    """`gflownets energy` on exact Ising data: the run folder, the JSON, the exact metrics."""
    out = tmp_path / "run"
    assert run_cli("energy", "--ising", 3, "--sampler", "gwg", "--iters", 300, "--batch-size", 64,
                   "--samples", 500, "--out", out, "--quiet") == 0
    printed = json.loads(capsys.readouterr().out)
    summary = json.loads((out / "summary.json").read_text())
    assert printed["out"] == str(out) and summary["sampler"] == "gwg" and summary["dim"] == 9
    assert summary["log_z_exact"] and summary["kl_true_learned"] < 0.5 and summary["rmse_J"] < 0.1
    assert summary["energy_nll"] < summary["uniform_nll"]
    assert summary["energy_evaluations"] == 300 * 64 * 4
    weights = torch.load(out / "model.pt", weights_only=True)
    assert set(weights) == {"energy"} and weights["energy"]["weight"].shape == (9, 9)
    assert len((out / "samples.csv").read_text().splitlines()) == 501
    assert (out / "plots" / "energies.png").stat().st_size > 0
    err = one_error_line(capsys, "energy", "--ising", 3, "--iters", 2, "--out", out, "--quiet")
    assert "holds an energy run already" in err and "--overwrite" in err


def test_energy_command_on_a_density_and_a_csv(tmp_path, capsys):
    out = tmp_path / "spirals"
    assert run_cli("energy", "--density", "2spirals", "--iters", 3, "--n-data", 500, "--samples", 100,
                   "--hidden", 16, "--out", out, "--quiet") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dim"] == 32 and summary["sampler_nll"] > 0 and not summary["log_z_exact"]
    assert set(torch.load(out / "model.pt", weights_only=True)) == {"energy", "policy"}
    assert (out / "plots" / "samples.png").stat().st_size > 0
    # the samples it wrote are a valid data file for the next run
    capsys.readouterr()
    assert run_cli("energy", "--data", out / "samples.csv", "--sampler", "gibbs", "--iters", 3, "--samples", 10,
                   "--out", tmp_path / "again", "--quiet") == 0
    assert json.loads((tmp_path / "again" / "summary.json").read_text())["n_test"] == 10


def test_energy_command_errors(tmp_path, capsys):
    assert "exactly one of --density, --ising and --data" in one_error_line(capsys, "energy", "--iters", 1)
    assert "exactly one" in one_error_line(capsys, "energy", "--ising", 2, "--density", "moons")
    bad = tmp_path / "bad.csv"
    bad.write_text("b0,b1\n0,1\n1,2\n")
    assert "outside [0, 1]" in one_error_line(capsys, "energy", "--data", bad, "--out", tmp_path / "x")
    few = tmp_path / "few.csv"
    few.write_text("b0,b1\n0,1\n1,1\n")
    assert "at least 4" in one_error_line(capsys, "energy", "--data", few, "--out", tmp_path / "y")


@pytest.mark.parametrize("sampler", ["eb-gfn", "gwg"])
def test_energy_run_resumes_bit_for_bit(tmp_path, capsys, sampler):
    """A run stopped at a checkpoint and resumed ends with the same weights as one run straight."""
    common = ["energy", "--ising", 2, "--sampler", sampler, "--batch-size", 16, "--hidden", 16, "--samples", 50,
              "--checkpoint-every", 10, "--k-warmup", 20, "--quiet"]
    assert run_cli(*common, "--iters", 40, "--out", tmp_path / "straight") == 0
    assert run_cli(*common, "--iters", 20, "--out", tmp_path / "resumed") == 0
    assert run_cli(*common, "--iters", 40, "--out", tmp_path / "resumed", "--resume") == 0
    straight = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)
    for part in straight:
        for name, tensor in straight[part].items():
            assert torch.equal(tensor, resumed[part][name]), (part, name)
    records = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 41))
    err = one_error_line(capsys, *common, "--iters", 40, "--lr", 0.5, "--out", tmp_path / "resumed", "--resume")
    assert "other settings" in err and "lr 0.01 -> 0.5" in err
    err = one_error_line(capsys, *common, "--iters", 10, "--out", tmp_path / "resumed", "--resume")
    assert "40 iterations already" in err
    (tmp_path / "resumed" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert "damaged" in one_error_line(capsys, *common, "--iters", 50, "--out", tmp_path / "resumed", "--resume")
    assert "no checkpoint" in one_error_line(capsys, *common, "--out", tmp_path / "none", "--resume")
