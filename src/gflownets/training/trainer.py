"""The training loop: sample a batch (forward, replayed or offline), take one optimiser step on
the chosen objective, evaluate now and then, checkpoint atomically, resume exactly."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch.autograd.graph import increment_version
from tqdm import tqdm

from gflownets.envs.base import DiscreteEnv
from gflownets.errors import CheckpointError, ConfigError
from gflownets.evaluation import ModeTracker, distribution_metrics, try_state_graph
from gflownets.objectives import CLOSED_FORM, USES_STATE_FLOW, USES_TARGET, estimated_log_z, get_objective
from gflownets.policies import MLPPolicy, Policy, TabularPolicy
from gflownets.sampling import Trajectories, metropolis_step, sample_backward, sample_forward
from gflownets.sampling.compiled import CompiledSampler
from gflownets.training.config import RunConfig
from gflownets.training.io import atomic_torch_save, atomic_write_json, atomic_write_text, read_objects_csv
from gflownets.training.replay import ReplayBuffer

CHECKPOINT_FORMAT = 1


def build_policy(config: RunConfig, env: DiscreteEnv) -> Policy:
    if config.policy == "tabular":
        return TabularPolicy(env, backward=config.backward_policy)
    return MLPPolicy(env, hidden=config.hidden, layers=config.layers,
                     backward=config.backward_policy, state_flow=config.objective in USES_STATE_FLOW)


class Trainer:
    """Owns every piece of a run's state; `run()` trains to `total_iters`, and a Trainer made
    with `resume=True` continues from `out_dir/checkpoint.pt` to the same result."""

    def __init__(self, config: RunConfig, out_dir: str | Path | None = None, *,
                 env: DiscreteEnv | None = None, progress: bool = True, resume: bool = False):
        if env is not None:  # a user's instance: record what it is instead of what config named
            config = dataclasses.replace(config, env=env.name, preset=None,
                                         env_args=dataclasses.asdict(env.config))
        config.validate(check_env=env is None)
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.env = env if env is not None else config.build_env()
        if config.mutations and type(self.env).mutate is DiscreteEnv.mutate:
            raise ConfigError(f"mutations: {self.env.name} defines no mutation of its objects "
                              "(implement DiscreteEnv.mutate to use mutation search)")
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.graph = try_state_graph(self.env)
        self.policy = build_policy(config, self.env)
        # Polyak averaging: training samples on-policy from the raw weights; evaluation, sampling
        # and plots use the average, which removes most of the step-to-step noise of small batches.
        self.ema_policy = (copy.deepcopy(self.policy, memo={id(self.env): self.env})
                           if config.ema_decay > 0 else None)
        self.optimizer = torch.optim.Adam([
            {"params": self.policy.network_parameters(), "lr": config.lr},
            {"params": self.policy.flow_parameters(), "lr": config.lr_logz},
        ], fused=True)  # one kernel over all parameters: the per-tensor loop cost more than the maths
        # target network (mdb): a Polyak-averaged copy, without gradient, for the bootstrapped side
        self.target_policy = (copy.deepcopy(self.policy, memo={id(self.env): self.env})
                              if config.target_decay > 0 and config.objective in USES_TARGET else None)
        self.objective = get_objective(config.objective, config.subtb_lambda, target=self.target_policy)
        self.closed_form = CLOSED_FORM.get(config.objective)
        # (averaged, current) parameter lists, made once: listing them costs more than the update
        self._ema_pairs = _parameter_pairs(self.ema_policy, self.policy)
        self._target_pairs = _parameter_pairs(self.target_policy, self.policy)
        # --compile: the on-policy rollout as one compiled graph (replayed, offline and refined
        # batches keep the eager samplers)
        self.compiled_sampler = (CompiledSampler(self.env, self.policy, config.exploration, config.temperature)
                                 if config.compile else None)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.replay = (ReplayBuffer(config.replay_size, self.env.state_shape, config.replay_keep)
                       if config.replay_size else None)
        self.modes = self._mode_tracker()
        #: mutation search's Metropolis chains: their objects and log-rewards (None until started)
        self.chains: torch.Tensor | None = None
        self.chain_log_rewards: torch.Tensor | None = None

        self.offline_objects = self.offline_log_rewards = None
        self.offline_order = torch.zeros(0, dtype=torch.long)
        self.offline_cursor = 0
        if config.offline:
            self.offline_objects = read_objects_csv(config.offline, self.env)
            self.offline_log_rewards = self.env.log_reward(self.offline_objects)
            if getattr(self.env, "reference", False) is None:  # novelty is measured against the data
                self.env.reference = self.offline_objects

        self.step = 0
        self.train_seconds = 0.0  # training loop wall time (see `run`)
        self.eval_seconds = 0.0  # evaluation time within the current iteration
        self.loss_window: list[float] = []
        if resume:
            self.load_checkpoint()

    def _mode_tracker(self) -> ModeTracker | None:
        if self.graph is not None:
            return ModeTracker(self.graph.mode_mask, self.graph.terminal_positions)
        probe = self.env.modes_hit(self.env.initial_states(0))
        if probe is None:
            return None
        return ModeTracker(torch.ones(probe.shape[1], dtype=torch.bool),
                           lambda objects: self.env.modes_hit(objects).any(dim=0).nonzero().squeeze(1))

    def _track_modes(self, objects: torch.Tensor) -> None:
        if self.modes is not None:
            self.modes.add(objects)

    # ------------------------------------------------------------------ batches
    @property
    def total_iters(self) -> int:
        if self.offline_objects is not None and self.config.epochs > 0:
            return self.config.epochs * math.ceil(len(self.offline_objects) / self.config.batch_size)
        return self.config.iters

    def _offline_batch(self) -> Trajectories:
        """The next mini-batch of a shuffled pass over the data set, walked back with P_B."""
        n_data = len(self.offline_objects)
        picks = []
        need = min(self.config.batch_size, n_data)
        while need:
            if self.offline_cursor >= len(self.offline_order):
                self.offline_order = torch.randperm(n_data, generator=self.generator)
                self.offline_cursor = 0
            take = self.offline_order[self.offline_cursor:self.offline_cursor + need]
            self.offline_cursor += len(take)
            picks.append(take)
            need -= len(take)
        picks = torch.cat(picks)
        return sample_backward(self.env, self.policy, self.offline_objects[picks], self.generator,
                               self.offline_log_rewards[picks])

    def make_batch(self) -> Trajectories:
        if self.offline_objects is not None:
            return self._offline_batch()
        cfg = self.config
        if self.compiled_sampler is not None:
            batch = self.compiled_sampler(cfg.batch_size, self.generator)
        else:
            batch = sample_forward(self.env, self.policy, cfg.batch_size, self.generator,
                                   gamma=cfg.exploration, temperature=cfg.temperature)
        self._track_modes(batch.terminal_states)
        if cfg.local_search:
            batch = self._with_local_search(batch)
        if cfg.mutations:
            batch = self._with_mutations(batch)
        if self.replay is not None:
            if cfg.replay_batch and len(self.replay):
                objects, log_rewards = self.replay.sample(cfg.replay_batch, self.generator)
                replayed = sample_backward(self.env, self.policy, objects, self.generator, log_rewards)
                self.replay.add(batch.terminal_states, batch.log_rewards)
                return Trajectories.cat([batch, replayed])
            self.replay.add(batch.terminal_states, batch.log_rewards)
        return batch

    def _with_local_search(self, batch: Trajectories) -> Trajectories:
        """LS-GFN (Kim et al. 2024): from each trajectory's state K moves before its end, complete
        again with P_F; of the old and the new object keep the one of higher reward. The kept
        objects join the batch (and so the replay buffer) as off-policy samples, walked backward
        with P_B like replayed ones; the candidates count towards the modes found."""
        cfg = self.config
        back = (batch.lengths - 1 - cfg.local_search).clamp(min=0)
        starts = batch.states[torch.arange(len(batch)), back]
        candidates = sample_forward(self.env, self.policy, len(batch), self.generator,
                                    gamma=cfg.exploration, temperature=cfg.temperature, start=starts)
        self._track_modes(candidates.terminal_states)
        better = candidates.log_rewards > batch.log_rewards
        objects = torch.where(better.view(-1, *[1] * len(self.env.state_shape)),
                              candidates.terminal_states, batch.terminal_states)
        log_rewards = torch.where(better, candidates.log_rewards, batch.log_rewards)
        refined = sample_backward(self.env, self.policy, objects, self.generator, log_rewards)
        return Trajectories.cat([batch, refined])

    def _with_mutations(self, batch: Trajectories) -> Trajectories:
        """Mutation search: `mutations` persistent Metropolis chains over finished objects, started
        from on-policy samples. Each iteration every chain proposes `env.mutate` of its object and
        moves there with probability min(1, R(x') / R(x)) (for a symmetric proposal, as sequence
        point mutations are, each chain then samples R itself). Every changed proposal joins the
        batch as an off-policy sample walked backward with P_B (TB's fixed point does not depend
        on where its objects come from) and so reaches the replay buffer. Chains complete a motif
        anywhere in a sequence and cross valleys of lower reward, moves that building left to
        right reaches only by chance (evolution-guided GFlowNets, Ikram et al. 2023, and LS-GFN's
        Metropolis filtering, Kim et al. 2024, are the same idea)."""
        if self.chains is None:
            picks = torch.randint(len(batch), (self.config.mutations,), generator=self.generator)
            self.chains = batch.terminal_states[picks].clone()
            self.chain_log_rewards = batch.log_rewards[picks].clone()
        step = metropolis_step(self.env, self.chains, self.chain_log_rewards, self.generator)
        self.chains, self.chain_log_rewards = step.objects, step.log_rewards
        if not len(step.proposals):
            return batch
        self._track_modes(step.proposals)
        walked = sample_backward(self.env, self.policy, step.proposals, self.generator, step.proposal_log_rewards)
        return Trajectories.cat([batch, walked])

    def train_step(self) -> float:
        """One optimiser step on a fresh batch (kept as `last_batch` for callers that inspect it)."""
        batch = self.last_batch = self.make_batch()
        solved = self.closed_form(self.policy, batch) if self.closed_form is not None else None
        if solved is None:
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.objective(self.policy, batch)
            loss.backward()
        else:  # the same gradients as autograd's, bit for bit (tests/test_compiled.py), sooner
            loss, gradients = solved
            for parameter in self.policy.parameter_list:  # every one, as zero_grad would
                parameter.grad = gradients.get(parameter)
        self.optimizer.step()
        # fused Adam writes the weights behind autograd's back: bump their version counters, so
        # that anything made with the old weights (kept rollout activations) knows it is stale
        increment_version(self.policy.parameter_list)
        if self.ema_policy is not None:
            # warm-up (as TensorFlow's ExponentialMovingAverage with num_updates): early on the
            # average forgets the random initial weights quickly instead of lagging behind
            decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
            _polyak_update(self._ema_pairs, decay)
        if self.target_policy is not None:
            _polyak_update(self._target_pairs, self.config.target_decay)
        return float(loss.detach())

    @property
    def eval_policy(self) -> Policy:
        """The policy that is evaluated, sampled and plotted: the moving average if enabled."""
        return self.ema_policy if self.ema_policy is not None else self.policy

    # ------------------------------------------------------------------ evaluation
    def sample_objects(self, n: int, generator: torch.Generator, chunk: int = 16384) -> torch.Tensor:
        """n finished objects from the learned forward policy (no exploration)."""
        parts = [sample_forward(self.env, self.eval_policy, min(chunk, n - i), generator).terminal_states
                 for i in range(0, n, chunk)]
        return torch.cat(parts)

    def evaluate(self, n_samples: int = 0) -> dict[str, Any]:
        """Exact metrics where the environment is enumerable; with n_samples, the same metrics
        measured on that many samples (suffix `_samples`)."""
        out: dict[str, Any] = {"log_z": estimated_log_z(self.eval_policy, self.config.objective)}
        if self.graph is not None:
            learned = self.graph.terminal_distribution(self.eval_policy)
            out.update(distribution_metrics(learned, self.graph.target))
            out["log_z_true"] = float(self.graph.log_z)
            out.update(self.env.exact_metrics(self.graph, learned))
        if self.modes is not None:
            out["modes_found"] = self.modes.n_found
            out["n_modes"] = self.modes.n_modes
        if n_samples:
            generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.step)
            objects = self.sample_objects(n_samples, generator)
            log_rewards = self.env.log_reward(objects)
            out["mean_log_reward_samples"] = float(log_rewards.mean())
            out.update({f"{k}_samples": v for k, v in self.env.sample_metrics(objects, log_rewards).items()})
            if self.modes is not None:  # modes among these samples; the run's own count is untouched
                in_samples = ModeTracker(self.modes.mode_mask, self.modes.locate)
                in_samples.add(objects)
                out["modes_found_samples"] = in_samples.n_found
            if self.graph is not None:
                empirical = self.graph.empirical_distribution(objects)
                metrics = distribution_metrics(empirical, self.graph.target)
                metrics.pop("kl", None)
                out.update({f"{k}_samples": v for k, v in metrics.items()})
                out["n_samples"] = n_samples
        return out

    # ------------------------------------------------------------------ loop
    def run(self) -> dict[str, Any]:
        cfg = self.config
        total = self.total_iters
        metrics_file = None
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out_dir / "config.yaml", cfg.dump())
            self._truncate_metrics()
            metrics_file = open(self.out_dir / "metrics.jsonl", "a")
        if self.compiled_sampler is not None and self.step < total:  # (config refuses it offline)
            # compile before the clock starts; its time is reported on its own (`compile_seconds`)
            if self.progress:
                tqdm.write(f"compiling the {self.env.name} rollout (torch.compile) ...")
            self.compiled_sampler.warm_up(cfg.batch_size)
        bar = tqdm(total=total, initial=self.step, disable=not self.progress, dynamic_ncols=True,
                   desc=f"{self.env.name} {cfg.objective}", leave=True)
        try:
            while self.step < total:
                started = time.perf_counter()
                self.eval_seconds = 0.0
                loss = self.train_step()
                self.step += 1
                self.loss_window.append(loss)
                record = self._maybe_record(total)
                if record is not None:
                    bar.set_postfix({k: f"{record[k]:.4g}" for k in ("loss", "l1", "log_z") if k in record})
                    if metrics_file is not None:
                        metrics_file.write(json.dumps(record) + "\n")
                        metrics_file.flush()
                if self.out_dir is not None and cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                bar.update(1)
                # the loop's wall time (logging and checkpoints included), periodic evaluation excluded
                self.train_seconds += time.perf_counter() - started - self.eval_seconds
        finally:
            bar.close()
            if metrics_file is not None:
                metrics_file.close()
        return self.finish()

    def _maybe_record(self, total: int) -> dict[str, Any] | None:
        cfg = self.config
        last = self.step == total
        logging = (cfg.log_every and self.step % cfg.log_every == 0) or last
        evaluating = (cfg.eval_every and self.step % cfg.eval_every == 0) or last
        if not (logging or evaluating):
            return None
        record: dict[str, Any] = {"step": self.step, "loss": sum(self.loss_window) / len(self.loss_window)}
        self.loss_window = []
        if evaluating:
            started = time.perf_counter()
            record.update(self.evaluate(cfg.eval_samples))
            self.eval_seconds = time.perf_counter() - started
        else:
            record["log_z"] = estimated_log_z(self.eval_policy, cfg.objective)
            if self.modes is not None:  # cheap, and it makes the modes-found curve fine-grained
                record["modes_found"] = self.modes.n_found
                record["n_modes"] = self.modes.n_modes
        return record

    def finish(self) -> dict[str, Any]:
        """Final metrics as summary.json, a checkpoint and the plots."""
        summary: dict[str, Any] = {
            "env": self.env.name,
            "env_args": self.env.describe(),
            "objective": self.config.objective,
            "iterations": self.step,
            "seconds": self.train_seconds,
            "iterations_per_second": self.step / self.train_seconds if self.train_seconds else None,
            "compile_seconds": self.compiled_sampler.compile_seconds if self.compiled_sampler else 0.0,
            "batch_size": self.config.batch_size,
        }
        summary.update(self.evaluate(self.config.final_samples))
        if self.out_dir is not None:
            atomic_write_json(self.out_dir / "summary.json", summary)
            self.save_checkpoint()
            from gflownets.plotting import write_plots
            write_plots(self, self.out_dir / "plots")
        return summary

    # ------------------------------------------------------------------ checkpoints
    def _truncate_metrics(self) -> None:
        """Drop metrics lines past the checkpoint, so a resumed run's log equals an uninterrupted one."""
        path = self.out_dir / "metrics.jsonl"
        if not path.exists():
            return
        kept = [line for line in path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= self.step]
        atomic_write_text(path, "".join(line + "\n" for line in kept))

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "env": self.env.describe(),
            "config": self.config.to_dict(),
            "step": self.step,
            "train_seconds": self.train_seconds,
            "loss_window": list(self.loss_window),
            "policy": self.policy.state_dict(),
            "ema_policy": self.ema_policy.state_dict() if self.ema_policy is not None else None,
            "target_policy": self.target_policy.state_dict() if self.target_policy is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "replay": self.replay.state_dict() if self.replay is not None else None,
            "chains": (self.chains, self.chain_log_rewards) if self.chains is not None else None,
            "offline": {"order": self.offline_order, "cursor": self.offline_cursor},
            "modes_found": self.modes.found if self.modes is not None else None,
        }

    def save_checkpoint(self) -> None:
        atomic_torch_save(self.out_dir / "checkpoint.pt", self.state_dict())

    def load_checkpoint(self, path: str | Path | None = None) -> None:
        path = Path(path) if path is not None else self.out_dir / "checkpoint.pt"
        state = load_checkpoint_file(path)
        if state["env"] != self.env.describe():
            raise CheckpointError(f"{path} was written for {_describe(state['env'])}, "
                                  f"not {_describe(self.env.describe())}")
        try:
            self.policy.load_state_dict(state["policy"])
            if self.ema_policy is not None:
                self.ema_policy.load_state_dict(state["ema_policy"] or state["policy"])
            if self.target_policy is not None:
                self.target_policy.load_state_dict(state.get("target_policy") or state["policy"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(f"{path} does not fit this policy "
                                  f"(hidden/layers/objective/backward policy changed?): {err}") from None
        self.step = state["step"]
        self.train_seconds = state["train_seconds"]
        self.loss_window = state["loss_window"]
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if self.replay is not None and state["replay"] is not None:
            self.replay.load_state_dict(state["replay"])
        if state.get("chains") is not None:
            self.chains, self.chain_log_rewards = state["chains"]
        self.offline_order = state["offline"]["order"]
        self.offline_cursor = state["offline"]["cursor"]
        if self.modes is not None and state["modes_found"] is not None:
            self.modes.found = state["modes_found"]


def _parameter_pairs(averaged: Policy | None, current: Policy) -> tuple[list, list] | None:
    return (averaged.parameter_list, current.parameter_list) if averaged is not None else None


@torch.no_grad()
def _polyak_update(pairs: tuple[list, list], decay: float) -> None:
    """averaged <- decay * averaged + (1 - decay) * current, parameter by parameter."""
    torch._foreach_lerp_(pairs[0], pairs[1], 1.0 - decay)


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear error
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a gflownets checkpoint (format {CHECKPOINT_FORMAT})")
    return state


def _describe(env_state: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={v}" for k, v in env_state.items() if k != "env")
    return f"{env_state['env']}({args})"
