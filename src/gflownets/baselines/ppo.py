"""Reward-maximising RL: proximal policy optimisation with action masks, batched over whole
trajectories of any environment of the library.

The episode is the construction of one object; the only reward, R(x), comes with the exit
action, undiscounted (gamma = 1: a discount would favour objects built in fewer steps). The
actor and the critic share the MLP trunk (`MLPPolicy`: its forward head is the actor, its
state-flow head the value V(s)). Each `step` rolls out `rollout` trajectories with the current
policy, computes GAE(lambda) advantages over the padded batch, then takes `epochs` passes of
shuffled minibatches of single steps with the clipped surrogate, a value loss and an entropy
bonus: the settings of the PPO paper and stable-baselines3, clip 0.2 included. Its optimum puts
all its mass on the best objects: the collapse onto one mode that the GFlowNet papers contrast
with proportional sampling."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from gflownets.baselines.samplers import PolicyBaseline
from gflownets.envs.base import DiscreteEnv
from gflownets.errors import ConfigError
from gflownets.policies.distributions import masked_log_softmax
from gflownets.policies.mlp import MLPPolicy
from gflownets.sampling.trajectories import Trajectories, sample_forward


def step_rewards(batch: Trajectories, rewards: torch.Tensor) -> torch.Tensor:
    """(B, T) rewards of each step: `rewards` on the exit step of each trajectory, 0 elsewhere."""
    out = torch.zeros(batch.actions.shape, dtype=torch.float32, device=batch.actions.device)
    out[torch.arange(len(batch), device=out.device), batch.lengths - 1] = rewards.float()
    return out


def gae(rewards: torch.Tensor, values: torch.Tensor, valid: torch.Tensor, lam: float,
        gamma: float = 1.0) -> torch.Tensor:
    """Generalised advantage estimates over padded (B, T) steps; the value after a trajectory's
    last step is 0 (the episode ends with exit). One pass backward in time, batched over B."""
    values = values * valid
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    for t in range(values.shape[1] - 1, -1, -1):
        next_value = values[:, t + 1] if t + 1 < values.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = torch.where(valid[:, t], delta + gamma * lam * running, torch.zeros_like(running))
        advantages[:, t] = running
    return advantages


class PPOSampler(PolicyBaseline):
    """PPO on R(x). `rollout` trajectories (reward calls) per update; `epochs` passes over their
    steps in minibatches of `minibatch` steps; `clip` the surrogate's ratio clip; `entropy` the
    entropy bonus; `value_coef` the value loss weight; `lam` GAE's lambda; `lr` Adam's rate;
    `max_grad_norm` the gradient clip; `normalize_advantages` per minibatch, as stable-baselines3.
    `reward`: "reward" maximises R(x) (the reference); "log" maximises log R(x)."""

    name = "ppo"

    def __init__(self, env: DiscreteEnv, rollout: int = 64, epochs: int = 4, minibatch: int = 64,
                 clip: float = 0.2, entropy: float = 0.01, value_coef: float = 0.5, lam: float = 0.95,
                 lr: float = 3e-4, max_grad_norm: float = 0.5, hidden: int = 256, layers: int = 2,
                 normalize_advantages: bool = True, reward: str = "reward", seed: int = 0):
        super().__init__(env)
        for label, value in (("rollout", rollout), ("epochs", epochs), ("minibatch", minibatch)):
            if value < 1:
                raise ConfigError(f"ppo: {label} must be >= 1, got {value}")
        if not 0 < clip < 1:
            raise ConfigError(f"ppo: clip must be in (0, 1), got {clip}")
        if not 0 <= lam <= 1:
            raise ConfigError(f"ppo: lam must be in [0, 1], got {lam}")
        if entropy < 0 or value_coef < 0 or lr <= 0 or max_grad_norm <= 0:
            raise ConfigError("ppo: entropy and value_coef must be >= 0, lr and max_grad_norm > 0")
        if reward not in ("reward", "log"):
            raise ConfigError(f"ppo: reward must be 'reward' or 'log', got {reward!r}")
        self.rollout, self.epochs, self.minibatch = rollout, epochs, minibatch
        self.clip, self.entropy, self.value_coef, self.lam = clip, entropy, value_coef, lam
        self.max_grad_norm, self.normalize_advantages, self.reward = max_grad_norm, normalize_advantages, reward
        with torch.random.fork_rng(devices=[]):  # the seed initialises the network, not the caller's stream
            torch.manual_seed(seed)
            self.policy = MLPPolicy(env, hidden=hidden, layers=layers, backward="uniform", state_flow=True)
        self.optimizer = torch.optim.Adam(self.policy.network_parameters(), lr=lr)
        self.updates = 0
        self.last_mean_reward = float("nan")

    def step(self, generator: torch.Generator | None) -> torch.Tensor:
        batch = sample_forward(self.env, self.policy, self.rollout, generator)
        self.reward_calls += len(batch)
        rewards = batch.log_rewards if self.reward == "log" else batch.log_rewards.exp()
        self.last_mean_reward = float(rewards.mean())
        self.update(batch, rewards, generator)
        return batch.terminal_states

    def update(self, batch: Trajectories, rewards: torch.Tensor, generator: torch.Generator | None) -> None:
        """The PPO update on one rollout."""
        valid = batch.valid
        states, actions = batch.states[valid], batch.actions[valid]  # (N, ...) steps in (row, t) order
        masks = self.env.forward_mask(states)
        with torch.no_grad():
            out = self.policy(states)
            old_log_probs = masked_log_softmax(out.forward_logits, masks).gather(1, actions[:, None]).squeeze(1)
            values = torch.zeros(valid.shape, device=states.device)
            values[valid] = out.log_flow
            advantages = gae(step_rewards(batch, rewards), values, valid, self.lam)
            returns = (advantages + values)[valid]
            advantages = advantages[valid]
        n = len(actions)
        for _ in range(self.epochs):
            order = torch.randperm(n, generator=generator, device=states.device)
            for start in range(0, n, self.minibatch):
                idx = order[start:start + self.minibatch]
                self.minibatch_step(states[idx], masks[idx], actions[idx], old_log_probs[idx], advantages[idx],
                                    returns[idx])
        self.updates += 1

    def minibatch_step(self, states: torch.Tensor, masks: torch.Tensor, actions: torch.Tensor,
                       old_log_probs: torch.Tensor, advantages: torch.Tensor, returns: torch.Tensor) -> None:
        out = self.policy(states)
        log_probs_all = masked_log_softmax(out.forward_logits, masks)
        log_probs = log_probs_all.gather(1, actions[:, None]).squeeze(1)
        if self.normalize_advantages and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        ratio = (log_probs - old_log_probs).exp()
        surrogate = torch.minimum(ratio * advantages, ratio.clamp(1 - self.clip, 1 + self.clip) * advantages)
        entropy = -(log_probs_all.exp() * log_probs_all).masked_fill(~masks, 0.0).sum(dim=1)
        loss = (-surrogate.mean() + self.value_coef * F.mse_loss(out.log_flow, returns)
                - self.entropy * entropy.mean())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.policy.network_parameters(), self.max_grad_norm)
        self.optimizer.step()
