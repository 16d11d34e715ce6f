"""Trajectory batches and the samplers that make them, forward from s0 and backward from objects.

A batch of B trajectories is a set of padded tensors, aligned by step t:
`states[:, t]` is the state in which `actions[:, t]` is taken. A trajectory of n moves has
`lengths = n + 1` entries: states s_0..s_n and actions a_0..a_{n-1} then exit. Entries past
the length are -1 (the tutorial's padding).
"""

from __future__ import annotations

import dataclasses

import torch

from gflownets.envs.base import DiscreteEnv
from gflownets.policies.base import Policy
from gflownets.policies.distributions import exploration_probs, sample_categorical

PAD = -1


@dataclasses.dataclass
class Trajectories:
    states: torch.Tensor  # (B, T, *state_shape) long
    actions: torch.Tensor  # (B, T) long
    lengths: torch.Tensor  # (B,) long, >= 1
    log_rewards: torch.Tensor  # (B,) float64

    def __len__(self) -> int:
        return self.actions.shape[0]

    @property
    def valid(self) -> torch.Tensor:
        """(B, T) bool: which steps exist."""
        return torch.arange(self.actions.shape[1], device=self.lengths.device) < self.lengths[:, None]

    @property
    def terminal_states(self) -> torch.Tensor:
        return self.states[torch.arange(len(self), device=self.lengths.device), self.lengths - 1]

    @staticmethod
    def cat(batches: list[Trajectories]) -> Trajectories:
        """Concatenate, padding to the longest."""
        width = max(b.actions.shape[1] for b in batches)

        def pad(x: torch.Tensor) -> torch.Tensor:
            extra = width - x.shape[1]
            if extra == 0:
                return x
            filler = x.new_full((x.shape[0], extra, *x.shape[2:]), PAD)
            return torch.cat([x, filler], dim=1)

        return Trajectories(
            states=torch.cat([pad(b.states) for b in batches]),
            actions=torch.cat([pad(b.actions) for b in batches]),
            lengths=torch.cat([b.lengths for b in batches]),
            log_rewards=torch.cat([b.log_rewards for b in batches]),
        )


@torch.no_grad()
def sample_forward(env: DiscreteEnv, policy: Policy, n: int, generator: torch.Generator | None = None,
                   gamma: float = 0.0, temperature: float = 1.0,
                   start: torch.Tensor | None = None) -> Trajectories:
    """Roll out n trajectories from s0 with P_F (mixed with uniform exploration `gamma`).
    Runs without autograd: objectives re-evaluate all visited states in one batched pass.
    `start` (n states) begins the rollouts there instead: the result is then a batch of partial
    trajectories, whose terminal states are objects completed from those states (local search).

    The loop is the hot path of training, so each step is a handful of tensor ops on the
    trajectories still running; what they visit is written into the padded batch once, at the end."""
    states = env.initial_states(n, generator) if start is None else start  # the unfinished trajectories' states
    device = states.device
    rows = torch.arange(n, device=device)  # ...and which trajectories they are
    visited_rows, visited_states, taken = [], [], []
    for _ in range(env.max_steps):
        probs = exploration_probs(policy.forward_logits(states), env.forward_mask(states), gamma, temperature)
        actions = sample_categorical(probs, generator)
        visited_rows.append(rows)
        visited_states.append(states)
        taken.append(actions)
        moving = (actions != env.exit_action).nonzero().squeeze(1)
        if moving.numel() == 0:
            break
        if moving.numel() < rows.numel():  # some trajectories exited: drop them
            rows, states, actions = (x.index_select(0, moving) for x in (rows, states, actions))
        states = env._step(states, actions)
    else:
        raise RuntimeError(f"{env.name}: a trajectory did not exit within max_steps={env.max_steps}")
    width = len(taken)
    counts = [len(r) for r in visited_rows]
    step_of = torch.repeat_interleave(torch.arange(width, device=device), torch.tensor(counts, device=device),
                                      output_size=sum(counts))
    flat_rows = torch.cat(visited_rows)
    all_states = states.new_full((n, width, *env.state_shape), PAD)
    all_states[flat_rows, step_of] = torch.cat(visited_states)
    all_actions = torch.full((n, width), PAD, dtype=torch.long, device=device)
    all_actions[flat_rows, step_of] = torch.cat(taken)
    lengths = torch.bincount(flat_rows, minlength=n)
    traj = Trajectories(all_states, all_actions, lengths, log_rewards=torch.empty(0, device=device))
    traj.log_rewards = env.log_reward(traj.terminal_states)
    return traj


@torch.no_grad()
def sample_backward(env: DiscreteEnv, policy: Policy, objects: torch.Tensor,
                    generator: torch.Generator | None = None,
                    log_rewards: torch.Tensor | None = None) -> Trajectories:
    """Trajectories ending in the given finished objects, drawn backward with P_B (sampled,
    not argmax: argmax would always replay the same path and bias every objective), then
    returned in forward order with exit as the last action."""
    n = objects.shape[0]
    device = objects.device
    max_moves = env.max_steps - 1
    back_states = objects.new_full((n, max_moves + 1, *env.state_shape), PAD)
    back_actions = torch.full((n, max_moves), PAD, dtype=torch.long, device=device)
    states = objects.clone()
    moves = torch.zeros(n, dtype=torch.long, device=device)
    for k in range(max_moves + 1):
        back_states[:, k] = states
        mask = env.backward_mask(states)
        active = mask.any(dim=-1)
        if not active.any():
            break
        if k == max_moves:
            raise RuntimeError(f"{env.name}: backward walk did not reach s0 in {max_moves} steps")
        allowed = mask[active]
        # skip the network where its logits cannot matter: all-zero logits are the uniform P_B,
        # and a state with one parent (append-only sequences) is left by that move whatever the
        # logits; the draws (and so the generator's stream) are the same either way
        if policy.backward == "uniform" or bool((allowed.sum(dim=-1) == 1).all()):
            logits = torch.zeros(int(active.sum()), env.n_actions - 1, device=device)
        else:
            logits = policy(states[active]).backward_logits
        actions = sample_categorical(exploration_probs(logits, allowed), generator)
        back_actions[active, k] = actions
        states = states.clone()
        states[active] = env._backward_step(states[active], actions)
        moves += active
    # Reverse: forward step t is backward step (moves - 1 - t); forward state t is back state moves - t.
    width = int(moves.max()) + 1
    t = torch.arange(width, device=device)
    valid = t < (moves + 1)[:, None]
    state_src = (moves[:, None] - t).clamp(min=0)
    index = state_src.view(n, width, *([1] * len(env.state_shape))).expand(n, width, *env.state_shape)
    fwd_states = back_states.gather(1, index)
    fwd_states[~valid] = PAD
    action_src = (moves[:, None] - 1 - t).clamp(min=0, max=max(max_moves - 1, 0))
    fwd_actions = back_actions.gather(1, action_src) if max_moves else back_actions.new_zeros(n, width)
    fwd_actions = torch.where(t < moves[:, None], fwd_actions, PAD)
    fwd_actions[torch.arange(n, device=device), moves] = env.exit_action
    if log_rewards is None:
        log_rewards = env.log_reward(objects)
    return Trajectories(fwd_states, fwd_actions, moves + 1, log_rewards)
