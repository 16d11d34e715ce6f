"""Replay: train on the current batch plus objects drawn from a buffer of earlier ones. The buffer
keeps finished objects only: trajectories to them are re-drawn backward with the current P_B at
every use, the same path as offline training, so replay adds no second trajectory format and
its samples always match the current backward policy."""

from __future__ import annotations

from typing import Any

import torch

from gflownets.envs.base import DiscreteEnv, draw_device
from gflownets.policies.base import Policy
from gflownets.sampling.trajectories import Trajectories, sample_backward
from gflownets.measures.diversity import top_k_distinct
from gflownets.sources.base import BatchSource


KEEP = ("recent", "best")


class ReplayBuffer:
    """Up to `capacity` objects and their log-rewards. `keep="recent"`: first in, first out.
    `keep="best"`: the `capacity` distinct objects of highest reward seen so far (reward-
    prioritised replay): a rare high-reward object, once sampled, keeps being trained on instead
    of being forgotten, which is what finds the last steps to an optimum in sparse landscapes.
    The buffer lives on `device` (the environment's: `build_source` passes `env.device`);
    objects added from elsewhere are moved there. Its storage grows as it fills (doubling, up to
    `capacity` rows), so a large capacity costs memory only once it holds that many objects."""

    def __init__(self, capacity: int, state_shape: tuple[int, ...], keep: str = "recent",
                 device: str | torch.device = "cpu"):
        if keep not in KEEP:
            raise ValueError(f"replay keep must be one of {KEEP}, got {keep!r}")
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.keep = keep
        self.device = torch.device(device)
        # rows in use are [0, size); storage beyond them is allocated by `_reserve` as needed
        self.objects = torch.zeros(0, *state_shape, dtype=torch.long, device=self.device)
        self.log_rewards = torch.zeros(0, dtype=torch.float64, device=self.device)
        self.size = 0
        self.cursor = 0

    def __len__(self) -> int:
        return self.size

    def _reserve(self, rows: int) -> None:
        """Storage for at least `rows` objects (at most `capacity`): grown by doubling, so that n
        objects added one batch at a time are copied O(n) times in all."""
        if rows <= len(self.objects):
            return
        grown = min(self.capacity, max(rows, 2 * len(self.objects)))
        objects = self.objects.new_zeros(grown, *self.objects.shape[1:])
        log_rewards = self.log_rewards.new_zeros(grown)
        objects[:self.size] = self.objects[:self.size]
        log_rewards[:self.size] = self.log_rewards[:self.size]
        self.objects, self.log_rewards = objects, log_rewards

    def add(self, objects: torch.Tensor, log_rewards: torch.Tensor) -> None:
        objects, log_rewards = objects.to(self.device), log_rewards.to(self.device)
        if self.keep == "best":
            self._add_best(objects, log_rewards)
            return
        n = min(objects.shape[0], self.capacity)
        self._reserve(min(self.size + n, self.capacity))  # until full, cursor == size: slots are appended
        slots = (self.cursor + torch.arange(n, device=self.device)) % self.capacity
        self.objects[slots] = objects[-n:]
        self.log_rewards[slots] = log_rewards[-n:]
        self.cursor = (self.cursor + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def _add_best(self, objects: torch.Tensor, log_rewards: torch.Tensor) -> None:
        pool = torch.cat([self.objects[:self.size], objects])
        pool_log_rewards = torch.cat([self.log_rewards[:self.size], log_rewards.to(torch.float64)])
        candidates = top_k_distinct(pool, pool_log_rewards, self.capacity)
        self._reserve(len(candidates))
        self.size = len(candidates)
        self.objects[:self.size] = pool[candidates]
        self.log_rewards[:self.size] = pool_log_rewards[candidates]

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        picks = torch.randint(self.size, (n,), generator=generator, device=draw_device(generator, self.objects))
        picks = picks.to(self.device)
        return self.objects[picks], self.log_rewards[picks]

    def state_dict(self) -> dict:
        return {"objects": self.objects[:self.size].clone(), "log_rewards": self.log_rewards[:self.size].clone(),
                "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        """A saved buffer; one larger than this capacity (a resumed run that shrank it) keeps its
        first `capacity` objects (for "best", the best ones)."""
        size = min(len(state["objects"]), self.capacity)
        self._reserve(size)
        self.size = size
        self.objects[:self.size] = state["objects"][:self.size].to(self.device)
        self.log_rewards[:self.size] = state["log_rewards"][:self.size].to(self.device)
        self.cursor = state["cursor"] % self.capacity


class Replay:
    """Wraps a source: each batch is the inner batch plus `n_replayed` objects replayed from a
    `ReplayBuffer` (once it holds any); the inner batch's objects then join the buffer."""

    def __init__(self, inner: BatchSource, env: DiscreteEnv, policy: Policy, buffer: ReplayBuffer,
                 n_replayed: int):
        self.inner, self.env, self.policy = inner, env, policy
        self.buffer, self.n_replayed = buffer, n_replayed

    def sample(self, generator: torch.Generator) -> Trajectories:
        batch = self.inner.sample(generator)
        if self.n_replayed and len(self.buffer):
            objects, log_rewards = self.buffer.sample(self.n_replayed, generator)
            replayed = sample_backward(self.env, self.policy, objects, generator, log_rewards)
            self.buffer.add(batch.terminal_states, batch.log_rewards)
            return Trajectories.cat([batch, replayed])
        self.buffer.add(batch.terminal_states, batch.log_rewards)
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict(), "buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # a run resumed with replay newly switched on has no buffer saved: it starts empty
        self.inner.load_state_dict(state.get("inner", state))
        if "buffer" in state:
            self.buffer.load_state_dict(state["buffer"])
