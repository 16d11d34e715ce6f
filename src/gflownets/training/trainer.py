"""The training loop. `Trainer.__init__` assembles the pieces a RunConfig names (environment,
policy, objective, batch source, evaluation, run files); `train_step` and `run` are the loop:
sample a batch, compute the gradients, step, average, log, evaluate, checkpoint."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from gflownets.envs.base import DiscreteEnv
from gflownets.errors import CheckpointError, ConfigError, Interrupted, RewardError, TrainingError
from gflownets.evaluation.evaluator import SAMPLE_CHUNK, evaluate, mode_tracker, sample_objects
from gflownets.limits import check_run_memory
from gflownets.evaluation.conditional import ContextEvaluator, contexts_for
from gflownets.evaluation.exact import try_state_graph
from gflownets.objectives import OBJECTIVES
from gflownets.policies import ConvSequencePolicy, MLPPolicy, Policy, TabularPolicy
from gflownets.policies.graph import GraphPolicy
from gflownets.policies.distributions import MASKED_LOGIT
from gflownets.sampling.trajectories import Trajectories
from gflownets.reward_pool import serve_reward
from gflownets.sources import build_source
from gflownets.training import distributed
from gflownets.training.config import RunConfig
from gflownets.training.io import read_objects_csv
from gflownets.training.run_files import RunFiles, file_sha256, load_checkpoint_file


def build_policy(config: RunConfig, env: DiscreteEnv) -> Policy:
    if config.policy == "tabular":
        return TabularPolicy(env, backward=config.backward_policy)
    if config.policy == "conv":  # a ConfigError for an environment that holds no sequences
        return ConvSequencePolicy(env, hidden=config.hidden, layers=config.layers, backward=config.backward_policy,
                                  state_flow=OBJECTIVES[config.objective].uses_state_flow)
    if config.policy == "graph":  # a ConfigError for an environment without a graph layout
        return GraphPolicy(env, hidden=config.hidden, layers=config.layers, backward=config.backward_policy,
                           state_flow=OBJECTIVES[config.objective].uses_state_flow)
    return MLPPolicy(env, hidden=config.hidden, layers=config.layers, backward=config.backward_policy,
                     state_flow=OBJECTIVES[config.objective].uses_state_flow)


class Trainer:
    """Owns every piece of a run's state; `run()` trains to `total_iters`, and a Trainer made
    with `resume=True` continues from `out_dir/checkpoint.pt` to the same result. `env`: an
    environment instance of the user's (its reward function included) instead of the one the
    config names. A folder that holds a run is only written over with `overwrite=True`; a data
    file that changed since the checkpoint is refused unless `accept_changed_data=True`. Inside
    a torch.distributed process group (torchrun), each rank trains its share of the batch."""

    def __init__(self, config: RunConfig, out_dir: str | Path | None = None, *,
                 env: DiscreteEnv | None = None, progress: bool = True, resume: bool = False,
                 overwrite: bool = False, accept_changed_data: bool = False):
        if env is not None:
            config = config.describing(env)
        config.validate(check_env=env is None)
        self.config = config
        self.ranks = distributed.current_ranks()
        self.device = torch.device(config.device)
        self.files = self._run_files(out_dir, resume, overwrite)
        self.progress = progress and self.ranks.is_main
        self.accept_changed_data = accept_changed_data
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        # a user's environment instance is conditioned as the config says, like a named one
        self.env = (config.conditioned(env) if env is not None else config.build_env()).to(self.device)
        check_run_memory(config, self.env)  # sizes that cannot fit: refused before they are allocated
        # a slow user reward: scored by worker processes and/or through a cache until close()
        self._release_reward = serve_reward(self.env, config.reward_workers, config.reward_timeout,
                                            config.reward_cache)
        # a conditional environment is evaluated exactly per context (each fixed context is enumerable)
        self.graph = try_state_graph(self.env, self._note_no_exact) if config.exact and not self.env.conditional \
            else None
        self.context_evaluator = (ContextEvaluator(self.env, contexts_for(self.env, config.eval_contexts))
                                  if config.exact and self.env.conditional else None)
        self.modes = mode_tracker(self.env, self.graph)
        #: the line that says which path runs (compiled or eager), when the config left it open
        self.path_note: str | None = None
        if config.compile is None:
            from gflownets.fast.auto import choose_path

            use, self.path_note = choose_path(config, self.env)
            config = self.config = dataclasses.replace(config, compile=use)
        self.policy = build_policy(config, self.env).to(self.device)
        distributed.broadcast_from_main(self.policy, self.ranks)  # under torchrun: one start for all ranks
        # Polyak averaging: training samples on-policy from the raw weights; evaluation, sampling
        # and plots use the average, which removes most of the step-to-step noise of small batches
        self.ema_policy = self._copy(self.policy) if config.ema_decay > 0 else None
        # parameter lists made once: listing them costs more than the averages' update
        self._ema_parameters = list(self.ema_policy.parameters()) if self.ema_policy is not None else None
        objective_cls = OBJECTIVES[config.objective]
        # target network (mdb): a Polyak-averaged copy, without gradient, for the bootstrapped side
        self.target_policy = (self._copy(self.policy) if config.target_decay > 0 and objective_cls.uses_target
                              else None)
        self._target_parameters = list(self.target_policy.parameters()) if self.target_policy is not None else None
        self.objective = objective_cls(config, target=self.target_policy)
        self.objective.check_env(self.env)
        self.optimizer = torch.optim.Adam([
            {"params": self.policy.network_parameters(), "lr": config.lr},
            {"params": self.policy.flow_parameters(), "lr": config.lr_logz},
        ], fused=True)  # one kernel over all parameters: the per-tensor loop cost more than the maths
        self.parameters = list(self.policy.parameters())
        self.data_files = {path: file_sha256(path) for path in
                           [*self.env.data_files(), *([config.offline] if config.offline else [])]}
        data = read_objects_csv(config.offline, self.env) if config.offline else None
        if data is not None:
            self.env.use_training_data(data)
        # where batches come from; with --compile, also the closed-form gradient step where it
        # applies; each rank draws its share, and train_step averages the gradients over ranks
        rank_config = dataclasses.replace(config, batch_size=distributed.per_rank_batch(config.batch_size, self.ranks))
        self.source, closed_form = build_source(rank_config, self.env, self.policy, self._observe, data)
        self.gradient_step = closed_form or self.autograd_step
        self.total_iters = (self.source.iterations(config.epochs) if data is not None and config.epochs
                            else config.iters)
        self.generator = torch.Generator(device=self.device).manual_seed(
            distributed.rank_seed(config.seed, self.ranks.rank))
        self.saved_world_size = self.ranks.world_size
        self.stop_signal: int | None = None
        self.skipped_batches = 0  # non-finite batches skipped (--on-nonfinite skip)
        self.skipped_in_a_row = 0
        self.step = 0
        self.train_seconds = 0.0  # the loop's wall time, periodic evaluation excluded
        self.loss_window: list[float] = []
        self.last_batch: Trajectories | None = None
        if resume:
            self.load_checkpoint()

    def _note_no_exact(self, why: str) -> None:
        if self.progress:
            tqdm.write(f"note: no exact evaluation ({why}); metrics come from samples (--final-samples N)",
                       file=sys.stderr)

    def _copy(self, policy: Policy) -> Policy:
        return copy.deepcopy(policy, memo={id(self.env): self.env})

    def _run_files(self, out_dir: str | Path | None, resume: bool, overwrite: bool) -> RunFiles | None:
        """The run folder; one that holds an earlier run is only reused by --resume or --overwrite."""
        if out_dir is None:
            return None
        if not str(out_dir).strip():
            raise ConfigError("the run folder (--out) must be a path, not an empty string")
        files = RunFiles(out_dir)
        if resume and overwrite:
            raise ConfigError("--resume continues the run in the folder, --overwrite replaces it: not both")
        if files.holds_run() and not resume and self.ranks.is_main:
            if not overwrite:
                raise ConfigError(f"{files.folder} already holds a run: continue it with --resume, replace it "
                                  "with --overwrite, or choose another --out")
            files.clear()
        return files

    def _observe(self, objects: torch.Tensor) -> None:
        if self.modes is not None:
            self.modes.add(objects)

    # ------------------------------------------------------------------ one iteration
    def train_step(self) -> float:
        """One optimiser step on a fresh batch (kept as `last_batch` for callers that inspect it)."""
        try:
            batch = self.last_batch = self.source.sample(self.generator)
        except (IndexError, RuntimeError) as err:  # what sampling from non-finite logits ends in
            self._refuse_diverged(err)
            raise
        except RewardError as err:  # a reward NaN, infinite or negative on the batch's objects
            raise RewardError(f"at step {self.step + 1}: {err}") from err
        loss = self.gradient_step(batch).detach()
        distributed.average_gradients(self.parameters, self.ranks)  # under torchrun: the mean over ranks
        loss, gradient_norm = self._loss_and_gradient_norm(loss)
        if not (math.isfinite(loss) and math.isfinite(gradient_norm)):
            self._nonfinite_step(batch, f"the loss became {loss}" if not math.isfinite(loss)
                                 else f"the gradient norm became {gradient_norm}")
            return math.nan
        self.skipped_in_a_row = 0
        self.optimizer.step()
        self._update_averages()
        return loss

    def _loss_and_gradient_norm(self, loss: torch.Tensor) -> tuple[float, float]:
        """Both read in one device sync; under torchrun the gradients are already averaged, and the
        loss is made non-finite on every rank if it is on one, so that all ranks decide alike."""
        gradients = [p.grad for p in self.parameters if p.grad is not None]
        norm = torch.stack(torch._foreach_norm(gradients)).sum() if gradients else loss.new_zeros(())
        values = torch.stack([loss.to(torch.float64), norm.to(torch.float64)])
        if self.ranks.distributed:
            values = distributed.any_nonfinite(values, self.ranks)
        loss_value, norm_value = values.tolist()
        return loss_value, norm_value

    def _nonfinite_step(self, batch: Trajectories, what: str) -> None:
        """A batch whose loss or gradients are not finite, before the optimiser step: skip it
        (--on-nonfinite skip), or stop with the step, the batch's most extreme objects and a
        checkpoint of the parameters as they still are (the last good state)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped_batches += 1
        self.skipped_in_a_row += 1
        if self.config.on_nonfinite == "skip" and self.skipped_in_a_row < 100:
            return
        log_rewards = batch.log_rewards.double()
        extreme = torch.argsort(log_rewards.abs().nan_to_num(math.inf), descending=True)[:3]
        objects = self.env.objects_to_rows(batch.terminal_states[extreme]).tolist()
        saved = ""
        if self.files is not None:
            self.save_checkpoint()
            saved = f"; the last good state (step {self.step}) is in {self.files.checkpoint_path}"
        in_a_row = f" ({self.skipped_in_a_row} batches in a row were skipped)" if self.skipped_in_a_row > 1 else ""
        raise TrainingError(
            f"{what} at step {self.step + 1}{in_a_row}: training diverged (a learning rate too high, or rewards "
            f"too extreme?); the batch's most extreme objects {objects} have log-rewards "
            f"{[round(v, 4) for v in log_rewards[extreme].tolist()]}{saved}")

    @torch.no_grad()
    def _refuse_diverged(self, cause: Exception) -> None:
        """Sampling failed: a TrainingError if the policy's outputs on the last batch's states are
        no longer finite or reach the scale of the masked logit (then forbidden actions win),
        else nothing (the caller re-raises the original error)."""
        finite = all(bool(torch.isfinite(p).all()) for p in self.parameters)
        if finite and self.last_batch is not None:
            logits = self.policy.forward_logits(self.last_batch.states[self.last_batch.valid])
            finite = bool(torch.isfinite(logits).all()) and float(logits.abs().max()) < abs(MASKED_LOGIT) / 10
        if not finite:
            raise TrainingError(f"the policy's outputs stopped being finite after step {self.step}: training "
                                "diverged (a learning rate too high, or rewards too extreme?); the last "
                                "checkpoint is intact") from cause

    def autograd_step(self, batch: Trajectories) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.objective(self.policy, batch)
        loss.backward()
        return loss

    @torch.no_grad()
    def _update_averages(self) -> None:
        """average <- decay * average + (1 - decay) * current, for the EMA and the target network."""
        if self.ema_policy is not None:
            # warm-up (as TensorFlow's ExponentialMovingAverage with num_updates): early on the
            # average forgets the random initial weights quickly instead of lagging behind
            decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
            torch._foreach_lerp_(self._ema_parameters, self.parameters, 1.0 - decay)
        if self.target_policy is not None:
            torch._foreach_lerp_(self._target_parameters, self.parameters, 1.0 - self.config.target_decay)

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        """Train to `total_iters`, then `finish`; the reward workers stop when it returns or fails."""
        try:
            return self._train_and_finish()
        finally:
            self.close()

    def close(self) -> None:
        """Stop the reward workers and give the environment its own reward function back (a
        Trainer that samples or evaluates afterwards scores in this process)."""
        self._release_reward()

    def _train_and_finish(self) -> dict[str, Any]:
        cfg = self.config
        if self.saved_world_size != self.ranks.world_size and self.step < self.total_iters:
            raise CheckpointError(f"this run was trained on {self.saved_world_size} rank(s): resume it on as many "
                                  f"(torchrun --nproc_per_node {self.saved_world_size}), so that every rank's random "
                                  "stream and batch sources continue")
        if self.files is not None and self.ranks.is_main:
            self.files.start(cfg.dump(), self.step)
        if self.path_note is not None and self.progress and self.step < self.total_iters:
            tqdm.write(self.path_note, file=sys.stderr)  # stdout carries the summary
        warm_up = self._source_hook("warm_up")
        if warm_up is not None and self.step < self.total_iters:
            if self.progress:  # compile before the clock starts; its time is reported on its own
                tqdm.write(f"compiling the {self.env.name} rollout (torch.compile) ...", file=sys.stderr)
            warm_up()
        bar = tqdm(total=self.total_iters, initial=self.step, disable=not self.progress, dynamic_ncols=True,
                   desc=f"{self.env.name} {cfg.objective}", leave=True)
        try:
            with self._stopped_by_signals():
                while self.step < self.total_iters:
                    started = time.perf_counter()
                    self.loss_window.append(self.train_step())
                    self.step += 1
                    eval_seconds = 0.0
                    if self._due(cfg.log_every) or self._due(cfg.eval_every):
                        so_far = self.train_seconds + time.perf_counter() - started
                        record, eval_seconds = self.record()
                        record["seconds"] = so_far  # training time so far, evaluation excluded
                        bar.set_postfix({k: f"{record[k]:.4g}" for k in ("loss", "l1", "log_z") if record.get(k) is not None})
                        if self.files is not None and self.ranks.is_main:
                            self.files.log(record)
                    if self.files is not None and self._due(cfg.checkpoint_every, last=False):
                        self.save_checkpoint()
                    bar.update(1)
                    self.train_seconds += time.perf_counter() - started - eval_seconds
                    if self.files is not None and distributed.any_rank(self.stop_signal is not None, self.ranks,
                                                                        self.device):
                        self._stop()
        finally:
            bar.close()
            if self.files is not None:
                self.files.close()
        return self.finish()

    @contextlib.contextmanager
    def _stopped_by_signals(self) -> Iterator[None]:
        """While training into a run folder, SIGINT and SIGTERM let the current iteration finish,
        then `_stop` writes a checkpoint; a second signal stops at once."""
        if self.files is None or threading.current_thread() is not threading.main_thread():
            yield
            return

        def note(signum: int, frame: Any) -> None:
            if self.stop_signal is not None:
                raise KeyboardInterrupt
            self.stop_signal = signum

        previous = {number: signal.signal(number, note) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _stop(self) -> None:
        self.save_checkpoint()
        number = self.stop_signal or signal.SIGTERM
        raise Interrupted(f"stopped by {signal.Signals(number).name} after step {self.step} of {self.total_iters}; "
                          f"checkpoint written: continue with `gflownets train {self.config.env} --out "
                          f"{self.files.folder} --resume`", exit_code=128 + number)

    def _due(self, every: int, last: bool = True) -> bool:
        return bool(every and self.step % every == 0) or (last and self.step == self.total_iters)

    def record(self) -> tuple[dict[str, Any], float]:
        """A metrics line: the mean loss since the last one, and the evaluation when one is due
        (else the cheap numbers: log Z and modes found); and the seconds evaluation took."""
        finite = [value for value in self.loss_window if math.isfinite(value)]  # skipped batches are NaN
        loss = distributed.mean_over_ranks(sum(finite) / len(finite) if finite else math.nan, self.ranks, self.device)
        record: dict[str, Any] = {"step": self.step, "loss": loss if math.isfinite(loss) else None}
        if self.skipped_batches:
            record["skipped_batches"] = self.skipped_batches
        self.loss_window = []
        self._merge_modes()
        started = time.perf_counter()
        if self._due(self.config.eval_every):
            if self.ranks.is_main:
                record.update(self.evaluate(self.config.eval_samples))
            return record, time.perf_counter() - started
        record["log_z"] = self.objective.log_z(self.eval_policy)
        if self.modes is not None:  # cheap, and it makes the modes-found curve fine-grained
            record["modes_found"] = self.modes.n_found
            record["n_modes"] = self.modes.n_modes
        return record, 0.0

    def _merge_modes(self) -> None:
        """Under torchrun, every rank's mode tracker holds the modes found by any rank."""
        if self.modes is not None and self.ranks.distributed:
            self.modes.found = distributed.union_over_ranks(self.modes.found, self.ranks)

    def finish(self) -> dict[str, Any]:
        """Final metrics as summary.json, a checkpoint and the plots (rank 0 only, which alone
        returns the summary under torchrun)."""
        self._merge_modes()
        if not self.ranks.is_main:
            if self.files is not None:
                self.save_checkpoint()  # a collective: rank 0 gathers every rank's random streams
            return {}
        summary: dict[str, Any] = {
            "env": self.env.name,
            "env_args": self.env.describe(),
            "objective": self.config.objective,
            "reward": self.config.reward_description(),
            "iterations": self.step,
            "seconds": self.train_seconds,
            "iterations_per_second": self.step / self.train_seconds if self.train_seconds else None,
            "compile_seconds": self._source_hook("compile_seconds") or 0.0,
            "batch_size": self.config.batch_size,
            "ranks": self.ranks.world_size,
        }
        summary.update(self.evaluate(self.config.final_samples))
        if self.files is not None:
            self.files.save_summary(summary)
            self.save_checkpoint()
            from gflownets.plotting import write_plots  # matplotlib, only for runs that write files

            write_plots(self, self.files.plots)
        return summary

    # ------------------------------------------------------------------ using the trained sampler
    @property
    def eval_policy(self) -> Policy:
        """The policy that is evaluated, sampled and plotted: the moving average if enabled."""
        return self.ema_policy if self.ema_policy is not None else self.policy

    @property
    def out_dir(self) -> Path | None:
        return self.files.folder if self.files is not None else None

    def evaluate(self, n_samples: int = 0) -> dict[str, Any]:
        """Exact metrics where the environment is enumerable; with n_samples, the same metrics
        measured on that many samples (suffix `_samples`)."""
        generator = torch.Generator(device=self.device).manual_seed(self.config.seed * 1_000_003 + self.step)
        out = evaluate(self.env, self.eval_policy, self.objective.log_z(self.eval_policy), self.graph,
                       self.modes, n_samples, generator)
        if self.context_evaluator is not None:
            out.update(self.context_evaluator.evaluate(self.eval_policy, self.objective.log_z_at, generator))
        return out

    def sample_objects(self, n: int, generator: torch.Generator | None = None,
                       exploration: float = 0.0, context: Any = None) -> torch.Tensor:
        """n finished objects from the learned forward policy (no exploration by default); a
        conditional run's at the `context` given (a beta, or preference weights)."""
        return sample_objects(self.env_at(context), self.eval_policy, n, generator, exploration)

    def env_at(self, context: Any) -> DiscreteEnv:
        """The environment, with the context fixed where one is given (conditional runs only):
        what to sample from, estimate on or evaluate exactly at that context."""
        if context is None:
            return self.env
        if not self.env.conditional:
            raise ConfigError("a context is given, but this run is unconditional")
        return self.env.fixed(context).to(self.device)

    def sample(self, n: int, seed: int = 0, exploration: float = 0.0,
               context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(objects, log-rewards): n finished objects drawn from the trained sampler, reproducible
        by `seed`; objects in the environment's tensor form (`env.objects_to_rows` gives rows).
        A conditional run samples at `context` (a beta, or preference weights) or, without one,
        at contexts drawn from its training distribution."""
        return next(self.sample_chunks(n, seed, exploration, chunk=None, context=context))

    def sample_chunks(self, n: int, seed: int = 0, exploration: float = 0.0,
                      chunk: int | None = SAMPLE_CHUNK, context: Any = None
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """`sample(n, seed)` as (objects, log-rewards) pieces of `chunk` objects (None: one piece),
        drawn as they are consumed, so memory holds one piece whatever n. One generator runs
        through all pieces, and a chunk that is a multiple of SAMPLE_CHUNK (the size of each
        rollout) splits the draws exactly where one call would: the pieces, joined, are then
        `sample(n, seed)` bit for bit. Other chunk sizes give other (equally valid) draws."""
        generator = torch.Generator(device=self.device).manual_seed(seed)
        sizes = [n] if chunk is None else [min(chunk, n - start) for start in range(0, n, chunk)]
        env = self.env_at(context)
        for size in sizes:
            objects = sample_objects(env, self.eval_policy, size, generator, exploration)
            yield objects, env.log_reward(objects)

    def _sources(self) -> Iterator[Any]:
        """The composed chain of batch sources, outermost first."""
        source = self.source
        while source is not None:
            yield source
            source = getattr(source, "inner", None)

    def _source_hook(self, name: str) -> Any:
        """`name` of the first source in the chain that has it (the compiled sampler's `warm_up`
        and `compile_seconds`), else None."""
        return next((getattr(s, name) for s in self._sources() if hasattr(s, name)), None)

    def find_source(self, kind: type) -> Any:
        """The batch source of type `kind` in the composed chain (None if there is none)."""
        return next((s for s in self._sources() if isinstance(s, kind)), None)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "env": self.env.describe(),
            "config": self.config.to_dict(),
            "step": self.step,
            "train_seconds": self.train_seconds,
            "loss_window": list(self.loss_window),
            "policy": self.policy.state_dict(),
            "ema_policy": self.ema_policy.state_dict() if self.ema_policy is not None else None,
            "target_policy": self.target_policy.state_dict() if self.target_policy is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "device": self.device.type,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "source": self.source.state_dict(),
            "modes_found": self.modes.found if self.modes is not None else None,
            "data_files": dict(self.data_files),
            "skipped_batches": [self.skipped_batches, self.skipped_in_a_row],
        }

    def _rank_state(self) -> dict[str, Any]:
        """What differs between ranks: random streams and batch sources."""
        return {"generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
                "source": self.source.state_dict()}

    def save_checkpoint(self) -> None:
        """Under torchrun a collective: every rank calls it, rank 0 writes every rank's streams."""
        rank_states = distributed.gather_to_main(self._rank_state(), self.ranks) if self.ranks.distributed else None
        if self.ranks.is_main:
            self.files.save_checkpoint({**self.state_dict(), "ranks": rank_states})

    def load_checkpoint(self, path: str | Path | None = None) -> None:
        path = Path(path) if path is not None else self.files.checkpoint_path
        state = load_checkpoint_file(path, self.device)
        self._check_data_files(path, state.get("data_files") or {})
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
            # the learning rates are the config's (a resumed run may change them), not the saved ones
            for group, lr in zip(self.optimizer.param_groups, (self.config.lr, self.config.lr_logz)):
                group["lr"] = lr
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(f"{path} does not fit this policy "
                                  f"(hidden/layers/objective/backward policy changed?): {err}") from None
        self.step = state["step"]
        self.train_seconds = state["train_seconds"]
        self.loss_window = state["loss_window"]
        self.skipped_batches, self.skipped_in_a_row = state.get("skipped_batches", [0, 0])
        saved_ranks = state.get("ranks")
        self.saved_world_size = len(saved_ranks) if saved_ranks else 1
        mine = saved_ranks[self.ranks.rank] if saved_ranks and self.ranks.rank < len(saved_ranks) else state
        if state.get("device", "cpu") == self.device.type:  # random streams continue only on the same kind of device
            self.generator.set_state(mine["generator"].cpu())
            torch.set_rng_state(mine["torch_rng"].cpu())
        try:
            self.source.load_state_dict(mine["source"])
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise CheckpointError(f"{path}: the saved batch sources do not fit this config "
                                  f"(replay, mutations, local search or offline options changed?): {err!r}") from None
        if self.modes is not None and state["modes_found"] is not None:
            self.modes.found = state["modes_found"]


    def _check_data_files(self, path: Path, recorded: dict[str, str]) -> None:
        """Refuse a data file whose contents changed since the checkpoint was written (the run
        would silently go on with other data), unless accepted; the new hash is then recorded."""
        for data_path, digest in self.data_files.items():
            if data_path in recorded and recorded[data_path] != digest:
                if not self.accept_changed_data:
                    raise CheckpointError(f"{data_path} changed since {path} was written (sha256 "
                                          f"{recorded[data_path][:12]} -> {digest[:12]}): restore it, or pass "
                                          "--accept-changed-data to go on with the new contents")
                if self.progress:
                    tqdm.write(f"note: {data_path} changed since the checkpoint; going on with its new contents",
                               file=sys.stderr)


def _describe(env_state: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={v}" for k, v in env_state.items() if k != "env")
    return f"{env_state['env']}({args})"


def load_run(run_dir: str | Path, *, env: DiscreteEnv | str | None = None, reward: Any = None,
             log_reward: Any = None, device: str | None = None, accept_changed_data: bool = False) -> Trainer:
    """A finished or interrupted run, restored from its checkpoint, to sample from
    (`load_run(dir).sample(n)`) or evaluate. A run folder never imports code by itself: a run
    trained with a reward function of the user's needs it named again (`reward` / `log_reward`:
    a callable or "module:function", or the environment instance `env`), and a run on an
    environment class of the user's needs `env` (the instance, or "module:Class"). A run is
    never silently scored with the environment's default reward instead. `device`: where to
    load it (default: where it was trained). A data file the environment reads that changed
    since training is refused unless `accept_changed_data`."""
    state = load_checkpoint_file(Path(run_dir) / "checkpoint.pt")
    config = RunConfig.from_dict(state["config"], where="checkpoint config")
    config = dataclasses.replace(config, offline=None)  # the data file is not needed to use the model
    if device is not None:
        config = dataclasses.replace(config, device=device)
    if isinstance(env, DiscreteEnv):
        if reward is not None or log_reward is not None:
            raise ConfigError("give the environment instance (with its reward) or reward/log_reward, not both")
    else:
        config.require_named_environment(env, f"run {run_dir}")
        if env is not None:
            config = dataclasses.replace(config, env=env)
        config.require_named_reward(reward, log_reward, f"run {run_dir}")
        env = config.build_env(reward=reward, log_reward=log_reward)
    return Trainer(config, run_dir, env=env, progress=False, resume=True, accept_changed_data=accept_changed_data)
