"""Maximum-entropy RL: soft Q-learning with action masks, on the log-reward.

The episode builds one object; the exit action from x earns log R(x), so Q(x, exit) = log R(x);
every other step earns 0, and the soft Bellman target of a move s -> s' is
V(s') = alpha * logsumexp_a' Q(s', a') / alpha over the actions allowed in s'. At alpha = 1
the optimal Boltzmann policy pi(a|s) = exp((Q(s,a) - V(s)) / alpha) samples each complete
*trajectory* with probability proportional to the reward of its object, so an object is sampled
in proportion to R(x) times its number of construction paths (`StateGraph.
trajectory_level_distribution`): the difference from a GFlowNet that seed 003 describes, which
vanishes where every object has one path (a tree). Discrete soft actor-critic at temperature 1
has the same optimum; soft Q-learning reaches it with one network.

Each `step` rolls out `rollout` trajectories with the Boltzmann policy mixed with `epsilon`
uniform exploration, stores their transitions in a replay ring, and takes `updates` Adam steps on
minibatches from it against a Polyak-averaged target network."""

from __future__ import annotations

import copy

import torch
from torch.nn import functional as F

from gflownets.baselines.samplers import PolicyBaseline
from gflownets.envs.base import DiscreteEnv
from gflownets.errors import ConfigError
from gflownets.policies.distributions import MASKED_LOGIT
from gflownets.policies.mlp import MLPPolicy
from gflownets.sampling.trajectories import Trajectories, sample_forward


class TransitionRing:
    """The last `capacity` transitions (state, action, next state, log-reward of exit moves) as
    preallocated tensors, overwritten in a ring."""

    def __init__(self, env: DiscreteEnv, capacity: int):
        self.capacity, self.size, self.next = capacity, 0, 0
        self.states = torch.zeros((capacity, *env.state_shape), dtype=torch.long, device=env.device)
        self.next_states = torch.zeros_like(self.states)
        self.actions = torch.zeros(capacity, dtype=torch.long, device=env.device)
        self.log_rewards = torch.zeros(capacity, dtype=torch.float32, device=env.device)

    def add(self, batch: Trajectories, exit_action: int) -> None:
        valid = batch.valid
        states, actions = batch.states[valid], batch.actions[valid]
        # the state after each move: the next entry of the same row (exit moves keep their state)
        following = torch.cat([batch.states[:, 1:], batch.states[:, -1:]], dim=1)[valid]
        done = actions == exit_action
        next_states = torch.where(done.view(-1, *[1] * (states.dim() - 1)), states, following)
        log_rewards = torch.zeros(len(actions), dtype=torch.float32, device=states.device)
        exit_rows = torch.repeat_interleave(torch.arange(len(batch), device=states.device), batch.lengths)[done]
        log_rewards[done] = batch.log_rewards[exit_rows].float()
        n = min(len(actions), self.capacity)
        slots = (self.next + torch.arange(n, device=states.device)) % self.capacity
        for store, values in ((self.states, states), (self.next_states, next_states), (self.actions, actions),
                              (self.log_rewards, log_rewards)):
            store[slots] = values[-n:]
        self.next = int((self.next + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, n: int, generator: torch.Generator | None) -> tuple[torch.Tensor, ...]:
        idx = torch.randint(self.size, (n,), generator=generator, device=self.states.device)
        return self.states[idx], self.actions[idx], self.next_states[idx], self.log_rewards[idx]


class SoftQSampler(PolicyBaseline):
    """Soft Q-learning at temperature `alpha` (1: the maximum-entropy optimum samples
    trajectories in proportion to R). The network is an `MLPPolicy` whose forward head is
    Q(s, .) / alpha, so the policy it defines (`self.policy`) is the Boltzmann policy and the
    library's exact evaluation applies to it unchanged."""

    name = "soft-q"

    def __init__(self, env: DiscreteEnv, rollout: int = 16, updates: int = 4, minibatch: int = 256,
                 alpha: float = 1.0, epsilon: float = 0.05, lr: float = 1e-3, polyak: float = 0.01,
                 capacity: int = 100_000, hidden: int = 256, layers: int = 2, seed: int = 0):
        super().__init__(env)
        for label, value in (("rollout", rollout), ("updates", updates), ("minibatch", minibatch),
                             ("capacity", capacity)):
            if value < 1:
                raise ConfigError(f"soft-q: {label} must be >= 1, got {value}")
        if alpha <= 0 or lr <= 0:
            raise ConfigError(f"soft-q: alpha and lr must be > 0, got {alpha} and {lr}")
        if not 0 <= epsilon <= 1 or not 0 < polyak <= 1:
            raise ConfigError(f"soft-q: epsilon must be in [0, 1] and polyak in (0, 1], got {epsilon} and {polyak}")
        self.rollout, self.updates, self.minibatch = rollout, updates, minibatch
        self.alpha, self.epsilon, self.polyak = alpha, epsilon, polyak
        with torch.random.fork_rng(devices=[]):  # the seed initialises the network, not the caller's stream
            torch.manual_seed(seed)
            self.policy = MLPPolicy(env, hidden=hidden, layers=layers, backward="uniform", state_flow=False)
        self.target = copy.deepcopy(self.policy).requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.policy.network_parameters(), lr=lr)
        self.replay = TransitionRing(env, capacity)

    def step(self, generator: torch.Generator | None) -> torch.Tensor:
        batch = sample_forward(self.env, self.policy, self.rollout, generator, gamma=self.epsilon)
        self.reward_calls += len(batch)
        self.replay.add(batch, self.env.exit_action)
        for _ in range(self.updates):
            self.update(*self.replay.sample(self.minibatch, generator))
        return batch.terminal_states

    def update(self, states: torch.Tensor, actions: torch.Tensor, next_states: torch.Tensor,
               log_rewards: torch.Tensor) -> None:
        """One step on the soft Bellman error (Huber), toward log R on exit moves and the target
        network's soft value of the next state on the others."""
        done = actions == self.env.exit_action
        with torch.no_grad():
            next_logits = self.target.forward_logits(next_states).masked_fill(~self.env.forward_mask(next_states),
                                                                              MASKED_LOGIT)
            soft_value = self.alpha * torch.logsumexp(next_logits, dim=1)  # alpha * logsumexp(Q / alpha)
            target = torch.where(done, log_rewards, soft_value)
        q = self.alpha * self.policy.forward_logits(states).gather(1, actions[:, None]).squeeze(1)
        loss = F.smooth_l1_loss(q, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            for online, averaged in zip(self.policy.parameters(), self.target.parameters()):
                averaged.lerp_(online, self.polyak)
