"""Devices: training, sampling and evaluation run on the device a run names (`RunConfig.device`),
and nothing silently assumes the CPU.

Without a GPU the CPU runs are checked by an audit: while a run trains, evaluates, samples and
writes its files, every tensor factory called from the package's own code (torch.zeros,
arange, rand, tensor, ...) must name its device, and every `.numpy()` must be of a tensor just
brought to the CPU (`.cpu().numpy()`). A factory without a device makes a CPU tensor on every
machine, the bug that only shows on a GPU; the audit finds it on the CPU. The tests marked for
CUDA run the same trainings on a GPU where there is one."""

from __future__ import annotations

import re
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

import gflownets
from gflownets.envs import BitSeq, DiscreteEnv, Ehrlich, Hypergrid, Sequence, Sets
from gflownets.envs.indexing import StateIndex
from gflownets.errors import ConfigError
from gflownets.evaluation import (estimate_log_prob, exact_log_prob, log_prob_reward_correlation,
                                  optimal_tabular_policy, try_state_graph)
from gflownets.sampling import metropolis_step, sample_backward, sample_forward
from gflownets.sources.replay import Replay
from gflownets.training import RunConfig, Trainer, load_run
from gflownets.training.io import read_objects_csv, write_objects_csv

SRC = Path(gflownets.__file__).resolve().parent
TORCH = Path(torch.__file__).resolve().parent

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

#: small runs of every environment, each with the batch sources it supports and another objective
COMMON = dict(iters=4, batch_size=8, hidden=16, eval_every=2, eval_samples=16, final_samples=16, log_every=1,
              checkpoint_every=2, seed=0)
CASES = {
    "hypergrid-tb": dict(env="hypergrid", env_args=dict(ndim=2, height=4), objective="tb", replay_size=16,
                         replay_batch=4, local_search=1, mutations=4),
    "hypergrid-tabular-db": dict(env="hypergrid", env_args=dict(ndim=3, height=3), policy="tabular",
                                 objective="db", replay_size=16, replay_batch=4, replay_keep="best"),
    "sets-subtb": dict(env="sets", env_args=dict(n_items=5, set_size=2), objective="subtb", replay_size=16,
                       replay_batch=4, replay_keep="best", local_search=1),
    "bitseq-fldb": dict(env="bitseq", preset="small", objective="fldb", replay_size=16, replay_batch=4,
                        local_search=1, mutations=4),
    "sequence-fm": dict(env="sequence", env_args=dict(alphabet="AB", max_length=3, prepend=True),
                        objective="fm", local_search=1, mutations=2),
    "dag-mdb": dict(env="dag", env_args=dict(nodes=3, samples=20), replay_size=16, replay_batch=4,
                    exploration=0.1, target_decay=0.9),
    "ehrlich-vargrad": dict(env="ehrlich", preset="small", objective="vargrad", replay_size=16, replay_batch=4,
                            replay_keep="best", mutations=4, local_search=1),
}


def config(case: str, device: str = "cpu", **overrides) -> RunConfig:
    return RunConfig(**{**COMMON, **CASES[case], "device": device, **overrides})


# ---------------------------------------------------------------------------------------- the audit
class ImplicitDevices(TorchFunctionMode):
    """Records, as "file:line what", every tensor factory called by the package's code without
    `device=`, and every `.numpy()` / `np.asarray` of a tensor that did not just come from `.cpu()`."""

    FACTORIES = {torch.zeros, torch.ones, torch.full, torch.empty, torch.arange, torch.eye, torch.tensor,
                 torch.as_tensor, torch.rand, torch.randn, torch.randint, torch.randperm, torch.linspace}

    def __init__(self):
        super().__init__()
        self.found: set[str] = set()
        self._on_cpu: dict[int, weakref.ref] = {}  # id -> the tensor, of results of `.cpu()`

    @staticmethod
    def _ours(frame) -> str | None:
        path = Path(frame.f_code.co_filename).resolve()
        if path.is_relative_to(SRC):
            return f"{path.relative_to(SRC).as_posix()}:{frame.f_lineno}"
        return None

    def _caller(self, skip_torch: bool) -> str | None:
        frame = sys._getframe(2)  # above __torch_function__ and this method
        while skip_torch and frame is not None and (Path(frame.f_code.co_filename).resolve().is_relative_to(TORCH)
                                                    or "numpy" in frame.f_code.co_filename):
            frame = frame.f_back
        return self._ours(frame) if frame is not None else None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if func in self.FACTORIES and "device" not in kwargs:
            if not (func is torch.as_tensor and args and isinstance(args[0], torch.Tensor)):
                where = self._caller(skip_torch=False)
                if where is not None:
                    self.found.add(f"{where} torch.{func.__name__} without device")
        elif func is torch._C.TensorBase.cpu:
            self._on_cpu[id(result)] = weakref.ref(result)
        elif func is torch._C.TensorBase.numpy or func is torch.Tensor.__array__:
            ref = self._on_cpu.get(id(args[0]))
            if ref is None or ref() is not args[0]:
                where = self._caller(skip_torch=func is torch.Tensor.__array__)
                if where is not None:
                    self.found.add(f"{where} {func.__name__} of a tensor not brought to the CPU")
        return result


def check(audit: ImplicitDevices) -> None:
    """Fail on any finding: every tensor the package makes names its device."""
    assert not audit.found, "implicit CPU tensors:\n" + "\n".join(sorted(audit.found))


# ---------------------------------------------------------------------------------------- (1) training
@pytest.mark.parametrize("case", sorted(CASES))
def test_training_on_an_explicit_device_runs_evaluates_and_samples(case, tmp_path):
    trainer = Trainer(config(case), tmp_path / "run", progress=False)
    assert trainer.device == torch.device("cpu") and trainer.env.device == torch.device("cpu")
    summary = trainer.run()
    assert summary["iterations"] == 4 and np.isfinite(summary["log_z"])
    assert np.isfinite(summary["mean_log_reward_samples"])
    objects, log_rewards = trainer.sample(8, seed=3)
    assert objects.shape == (8, *trainer.env.state_shape) and log_rewards.dtype == torch.float64
    assert_on("cpu", trainer)


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_implicit_cpu_tensors_while_training_evaluating_and_sampling(case, tmp_path):
    trainer = Trainer(config(case), tmp_path / "run", progress=False)
    with ImplicitDevices() as audit:
        trainer.run()
        objects, log_rewards = trainer.sample(8, seed=3)
        write_objects_csv(tmp_path / "samples.csv", trainer.env, objects, log_rewards)
        read_objects_csv(tmp_path / "samples.csv", trainer.env)
        env, policy = trainer.env, trainer.eval_policy
        if trainer.graph is not None:
            exact_log_prob(trainer.graph, policy, objects)
            optimal_tabular_policy(trainer.graph)
        estimate_log_prob(env, policy, objects, n_trajectories=2, generator=torch.Generator().manual_seed(0))
        if type(env).mutate is not DiscreteEnv.mutate:
            metropolis_step(env, objects, log_rewards, torch.Generator().manual_seed(0))
    check(audit)


def test_no_implicit_cpu_tensors_in_the_environments_helpers():
    """Construction makes CPU tensors (`env.to(device)` moves them); what runs after must not."""
    bitseq = BitSeq(length=6, token_bits=2, num_modes=4, mode_threshold=1)
    policy = _policy(bitseq)
    ehrlich = Ehrlich(num_states=4, dim=6, num_motifs=1, motif_length=3)
    sequence = Sequence(alphabet="ACGT", max_length=4)
    # a user's reward: it receives CPU rows, and its result goes to the states' device
    grid = Hypergrid(ndim=2, height=3, reward_fn=lambda x: 1.0 + x.sum(dim=1).double())
    sets = Sets(n_items=4, set_size=2)
    with ImplicitDevices() as audit:
        test_set = bitseq.test_set(16, seed=1)
        log_prob_reward_correlation(bitseq, policy, test_set, n_trajectories=2)
        bitseq.objects_from_rows(bitseq.objects_to_rows(test_set))
        oracle = ehrlich.oracle
        assert float(oracle(oracle.optimal_solution()[None])[0]) == 1.0
        oracle(oracle.initial_solution(4))
        ehrlich.n_states_upper_bound()
        sequence.encode(["AC", "GGT"])
        sequence.sample_metrics(sequence.encode(["AC", "GGT", "A"]), torch.zeros(3, dtype=torch.float64))
        states = grid.enumerate_states()
        grid.log_reward(states[-3:])
        grid.intermediate_log_reward(states)
        grid.step(states[:1], [0])
        sets.objects_from_rows(np.array([[0, 1], [2, 3]]))
    check(audit)


def test_every_numpy_conversion_in_the_package_is_of_a_cpu_tensor():
    """Static: each `.numpy()` in the package's source reads `.cpu().numpy()`; a bare one fails
    on a GPU tensor. (Conversions of values that are not tensors never need `.numpy()`.)"""
    bare = []
    for path in sorted(SRC.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            if re.search(r"(?<!\.cpu\(\))\.numpy\(\)", code):
                bare.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert not bare, "\n".join(bare)


def _policy(env):
    from gflownets.policies import MLPPolicy

    return MLPPolicy(env, hidden=8, layers=1).to(env.device)


# ---------------------------------------------------------------------------------------- pieces
def test_tensors_follow_the_environment_and_the_states():
    env = Hypergrid(ndim=2, height=3)
    assert env.initial_state.device == env.device == torch.device("cpu")
    index = StateIndex(env.enumerate_states())
    states = env.enumerate_states()[:4]
    assert index.lookup(states).device == states.device
    graph = try_state_graph(env)
    assert graph.states.device == env.device and graph.target.device == env.device
    policy = optimal_tabular_policy(graph)
    assert {p.device for p in policy.parameters()} == {env.device}
    batch = sample_forward(env, policy, 4, torch.Generator(device=env.device).manual_seed(0))
    back = sample_backward(env, policy, batch.terminal_states, torch.Generator(device=env.device).manual_seed(0))
    for traj in (batch, back):
        assert traj.valid.device == traj.states.device == traj.log_rewards.device == env.device


@pytest.mark.parametrize("case", sorted(CASES))
def test_env_to_moves_every_tensor_it_holds(case):
    """`env.to(device)` leaves no tensor behind, in the environment or the objects it holds (the
    Ehrlich oracle's tables, ...): checked with the meta device, which every machine has."""
    env = config(case).build_env()
    env.enumerate_states()  # a cached enumeration moves too
    env.to("meta")
    assert env.device == torch.device("meta") and env.initial_state.device == env.device
    left = []

    def walk(value, name, seen):
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, torch.Tensor):
            if value.device != env.device:
                left.append(f"{name} on {value.device}")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{name}[{i}]", seen)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{name}[{k!r}]", seen)
        elif hasattr(value, "__dict__") and type(value).__module__.startswith("gflownets"):
            for k, v in vars(value).items():
                walk(v, f"{name}.{k}", seen)

    walk(env, "env", set())
    assert not left, left


def test_replay_buffer_lives_on_the_environments_device():
    trainer = Trainer(config("hypergrid-tb", iters=2), progress=False)
    replay = trainer.find_source(Replay)
    assert replay.buffer.device == trainer.env.device
    trainer.train_step()
    trainer.train_step()
    assert replay.buffer.objects.device == replay.buffer.log_rewards.device == trainer.env.device


# ---------------------------------------------------------------------------------------- (2) load_run
def test_load_run_on_an_explicit_device(tmp_path):
    out = tmp_path / "run"
    trained = Trainer(config("hypergrid-tb", iters=4), out, progress=False)
    summary = trained.run()
    run = load_run(out, device="cpu")
    assert run.device == torch.device("cpu") and run.step == 4
    assert run.evaluate()["l1"] == pytest.approx(summary["l1"], abs=1e-12)
    objects, log_rewards = run.sample(16, seed=1)
    again, _ = trained.sample(16, seed=1)
    assert torch.equal(objects, again)
    assert objects.device == log_rewards.device == torch.device("cpu")


# ---------------------------------------------------------------------------------------- (3) validation
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_a_config_error_naming_the_device():
    with pytest.raises(ConfigError, match="'cuda'"):
        RunConfig(device="cuda").validate()
    with pytest.raises(ConfigError, match="'cuda:1'"):
        Trainer(RunConfig(device="cuda:1", iters=1), progress=False)


@pytest.mark.parametrize("name", ["cuda:x", "gpu", "cpu0"])
def test_a_bad_device_name_is_a_config_error(name):
    with pytest.raises(ConfigError, match=re.escape(repr(name))):
        RunConfig(device=name).validate()


def test_mps_is_refused_for_want_of_float64():
    with pytest.raises(ConfigError, match="mps.*float64"):
        RunConfig(device="mps").validate()


# ---------------------------------------------------------------------------------------- (4) CUDA
def assert_on(device_type: str, trainer: Trainer) -> None:
    """Every tensor of the last batch, the policies, the replay buffer, the mutation chains, the
    environment and the generator are on `device_type`."""
    tensors = {f"batch.{k}": v for k, v in vars(trainer.last_batch).items()}
    for name, policy in (("policy", trainer.policy), ("ema_policy", trainer.ema_policy),
                         ("target_policy", trainer.target_policy)):
        if policy is not None:
            tensors.update({f"{name}.{k}": v for k, v in policy.state_dict().items()})
    tensors.update({f"env.{k}": v for k, v in vars(trainer.env).items() if isinstance(v, torch.Tensor)})
    replay = trainer.find_source(Replay)
    if replay is not None:
        tensors["replay.objects"], tensors["replay.log_rewards"] = replay.buffer.objects, replay.buffer.log_rewards
    from gflownets.sources import MutationChains

    chains = trainer.find_source(MutationChains)
    if chains is not None and chains.chains is not None:
        tensors["chains"], tensors["chain_log_rewards"] = chains.chains, chains.chain_log_rewards
    if trainer.graph is not None:
        tensors.update({f"graph.{k}": getattr(trainer.graph, k) for k in ("states", "target", "log_rewards")})
    wrong = {k: str(v.device) for k, v in tensors.items() if v.device.type != device_type}
    assert not wrong, f"not on {device_type}: {wrong}"
    assert trainer.generator.device.type == device_type


@cuda
def test_hypergrid_trains_and_samples_on_cuda(tmp_path):
    trainer = Trainer(config("hypergrid-tb", "cuda", iters=6), tmp_path / "run", progress=False)
    summary = trainer.run()
    assert np.isfinite(summary["l1"])
    assert_on("cuda", trainer)
    trainer.train_step()  # a batch with replayed objects, local search and mutations, all on the GPU
    assert_on("cuda", trainer)
    objects, log_rewards = trainer.sample(32, seed=0)
    assert objects.device.type == log_rewards.device.type == "cuda"
    assert trainer.env.is_terminal(objects).all()
    run = load_run(tmp_path / "run", device="cuda")
    assert {p.device.type for p in run.policy.parameters()} == {"cuda"}
    assert run.sample(8, seed=0)[0].device.type == "cuda"
    cpu = load_run(tmp_path / "run", device="cpu")  # a GPU run's checkpoint opens on the CPU
    assert cpu.sample(8, seed=0)[0].device.type == "cpu"


@cuda
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_environment_trains_on_cuda(case, tmp_path):
    trainer = Trainer(config(case, "cuda"), tmp_path / "run", progress=False)
    summary = trainer.run()
    assert np.isfinite(summary["log_z"])
    assert_on("cuda", trainer)
    objects, _ = trainer.sample(8, seed=0)
    assert objects.device.type == "cuda"


@cuda
def test_compiled_hypergrid_on_cuda():
    trainer = Trainer(config("hypergrid-tb", "cuda", compile=True, replay_size=0, replay_batch=0,
                             local_search=0, mutations=0), progress=False)
    summary = trainer.run()
    assert np.isfinite(summary["l1"])
    assert_on("cuda", trainer)


def test_compiled_hypergrid_with_the_device_named():
    trainer = Trainer(config("hypergrid-tb", compile=True, iters=3, env_args=dict(ndim=2, height=3),
                             replay_size=0, replay_batch=0, local_search=0, mutations=0), progress=False)
    summary = trainer.run()
    assert np.isfinite(summary["l1"])
    assert_on("cpu", trainer)
