"""A forward rollout with fixed shapes, for `torch.compile`: every trajectory runs all
`env.max_steps` steps (finished ones stand still), so one compiled graph covers a whole batch.

Eager `sample_forward` pays Python and dispatch overhead for each of ~20 small tensor ops per
step; compiled, a step is its matmuls and a few fused kernels (measured in bench/NOTES.md).
Compiling the *step* instead loses: the guards and wrapper of one compiled call per step cost
more than the fusion saves. So the whole loop is one call, with the randomness drawn outside
(uniforms, made into exponential races inside) so that the graph is a pure function of the
policy's weights and its inputs.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import torch
from torch.nn import functional as F

from gflownets.caches import use_compile_cache
from gflownets.envs.base import DiscreteEnv
from gflownets.errors import ConfigError
from gflownets.fast import mlp
from gflownets.fast.closed_form import KeptRollout
from gflownets.policies.base import Policy
from gflownets.policies.distributions import exploration_probs, masked_log_softmax, move_log_probs
from gflownets.sampling.trajectories import PAD, Trajectories
from gflownets.sources.base import Stateless


class FixedStepRollout(NamedTuple):
    #: (B, T, *state_shape) padded states and (B, T) actions; (B,) lengths, 0: never exited
    states: torch.Tensor
    actions: torch.Tensor
    lengths: torch.Tensor
    #: (B, *state_shape) the final states
    last: torch.Tensor
    #: with `keep`: the policy's kept activations and the steps' log-probability derivatives
    kept: tuple[torch.Tensor, ...]
    log_probs: tuple[torch.Tensor, ...]
    #: `env.default_log_reward(last)`, when asked for (else None)
    default_log_rewards: torch.Tensor | None


def rollout_fixed_steps(env: DiscreteEnv, policy: Policy, uniforms: torch.Tensor, gamma: float = 0.0,
                        temperature: float = 1.0, default_reward: bool = False,
                        keep: bool = False, exits: bool = False,
                        initial: torch.Tensor | None = None) -> FixedStepRollout:
    """Roll out `uniforms.shape[1]` trajectories for `uniforms.shape[0]` steps. `uniforms`
    (T, B, n_actions) are U[0, 1) draws; step t takes argmax(p / E) with E = -log U ~ Exp(1), the
    exponential race of `sample_categorical`: a draw from p. (U = 0, of probability 2^-24, is
    clamped to the smallest float so that E stays finite and an action of probability 0 can
    never win.) After exit a row keeps its state; its actions are PAD.

    Returns the padded batch; with `keep` (an MLP policy, `fast.mlp`), also what closed-form
    trajectory balance needs (`KeptRollout`): the MLP's activations and the derivatives of each
    step's log P_F and log P_B with respect to the logits, as T * B rows in step-major order;
    with `exits` too, every row's log P_F(exit | s_t) and its derivative (what modified detailed
    balance needs). With `default_reward`, also the environment's own log-reward of the final
    states: its few small operations are nearly free inside the graph. `initial`: the batch's s0
    (conditional environments draw a context for each), else `env.initial_states(B)`."""
    steps, n, _ = uniforms.shape
    if initial is None and env.conditional:  # its s0 would draw contexts inside the graph
        raise ValueError("a conditional environment's rollout needs the batch's s0 (initial), contexts drawn")
    if initial is not None and len(initial) != n:
        raise ValueError(f"initial holds {len(initial)} states for {n} trajectories")
    races = -uniforms.clamp(min=torch.finfo(uniforms.dtype).tiny).log()
    state_dims = len(env.state_shape)
    states = env.initial_states(n) if initial is None else initial
    done = torch.zeros(n, dtype=torch.bool, device=states.device)
    visited, taken, outputs, kept = [], [], [], []
    for t in range(steps):
        if keep:
            out, kept_now = mlp.forward_keeping(policy, states)
            outputs.append(out)
            kept.append(kept_now)
            forward_logits = out.forward_logits
        else:
            forward_logits = policy.forward_logits(states)
        probs = exploration_probs(forward_logits, env.forward_mask(states), gamma, temperature)
        actions = (probs / races[t]).argmax(dim=-1)
        frozen = done.view(n, *[1] * state_dims)
        visited.append(torch.where(frozen, PAD, states))
        taken.append(torch.where(done, PAD, actions))
        done = done | (actions == env.exit_action)
        # rows that are done get some in-range move whose result is thrown away (see `compilable`)
        moved = env._step(states, torch.where(done, 0, actions))
        states = torch.where(done.view(n, *[1] * state_dims), states, moved)
    actions = torch.stack(taken, dim=1)
    lengths = torch.where(done, (actions != PAD).sum(dim=1), 0)
    kept_rows = log_probs = ()
    if keep:
        # step-major rows; torch.cat, not stack along dim 1, lets each step write its own block
        kept_rows = tuple(torch.cat(per_step) for per_step in zip(*kept))
        log_probs = _log_probs_and_derivatives(env, outputs, visited, taken, exits)
    return FixedStepRollout(torch.stack(visited, dim=1), actions, lengths, states, kept_rows, log_probs,
                            env.default_log_reward(states) if default_reward else None)


def _log_probs_and_derivatives(env: DiscreteEnv, outputs: list, visited: list[torch.Tensor],
                               taken: list[torch.Tensor], exits: bool = False) -> tuple[torch.Tensor, ...]:
    """For `KeptRollout`: by autodiff of every step's log P_F and log P_B (`move_log_probs`), their
    derivatives with respect to its own row of forward and backward logits (T * B rows,
    step-major; rows past a trajectory's end are zero); which rows are steps; and each
    trajectory's sum of log P_F - log P_B: all that trajectory balance needs. With `exits`, also
    each row's log P_F, log P_B and log P_F(exit | s_t), and the derivative of the last: what
    modified detailed balance needs (`closed_form.modified_detailed_balance_gradients`)."""
    n = taken[0].shape[0]
    forward_logits = torch.cat([out.forward_logits for out in outputs])
    backward_logits = torch.cat([out.backward_logits for out in outputs])
    taken = torch.cat(taken)
    valid = taken != PAD
    # rows past a trajectory's end are PAD; any real state stands in for them (their terms are
    # masked to 0). Not a clamp: PAD (-1) is a legitimate entry of some states (sequences).
    states = torch.cat(visited)
    filler = env.initial_states(1).expand_as(states)
    states = torch.where(valid.view(-1, *[1] * (states.dim() - 1)), states, filler)
    actions = taken.clamp(min=0)
    # the move into s_t is a_{t-1}; s_0 has none (any index will do: it is masked to 0)
    previous = F.pad(taken[:-n], (n, 0)).clamp(0, env.n_actions - 2)
    first = torch.arange(len(actions), device=actions.device) < n

    def log_probs(f: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
        log_pf, log_pb = move_log_probs(env, f, b, states, actions, previous, first)
        out = (torch.where(valid, log_pf, 0.0), torch.where(valid, log_pb, 0.0))
        if exits:  # log P_F(exit | s_t)
            log_exit = masked_log_softmax(f, env.forward_mask(states))[:, env.exit_action]
            out += (torch.where(valid, log_exit, 0.0),)
        return out

    outs, vjp = torch.func.vjp(log_probs, forward_logits, backward_logits)
    log_pf, log_pb = outs[:2]
    ones, zeros = torch.ones_like(log_pf), torch.zeros_like(log_pf)

    def derivative(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        # each log-probability depends on its own row only, so a vector-Jacobian product with
        # ones (for output i) gives every row's derivative at once
        return vjp(tuple(ones if j == i else zeros for j in range(len(outs))))

    d_log_pf, d_log_pb = derivative(0)[0], derivative(1)[1]
    log_ratio_sums = (log_pf - log_pb).view(-1, n).sum(dim=0)
    if not exits:
        return d_log_pf, d_log_pb, valid, log_ratio_sums
    return d_log_pf, d_log_pb, valid, log_ratio_sums, (log_pf, log_pb, outs[2], derivative(2)[0])


class CompiledSampler(Stateless):
    """On-policy batches of `batch_size` trajectories (a batch source, like `sources.OnPolicy`)
    from one compiled graph. Same distribution as `sample_forward`, another random stream: it
    draws all of a batch's uniforms from the generator in one call. With `keep`, the rollout also
    keeps what closed-form trajectory balance needs, for the batch it has just made only
    (`last_kept`); nothing else reads it, so it is kept only where that gradient is used."""

    def __init__(self, env: DiscreteEnv, policy: Policy, batch_size: int = 16, gamma: float = 0.0,
                 temperature: float = 1.0, keep: bool = False, observe=None, exits: bool = False):
        if not env.compilable:
            raise ConfigError(f"compile: {env.name} does not declare a step that compiles into one "
                              "graph (DiscreteEnv.compilable); train it without --compile")
        if keep and not mlp.supports(policy):
            raise ValueError(f"keep: {type(policy).__name__} has no kept forward pass (fast.mlp)")
        self.env = env
        self.policy = policy
        self.batch_size = batch_size
        self.keep = keep
        self.observe = observe
        #: the last batch and, with `keep`, what its rollout kept (`KeptRollout`)
        self.last_batch: Trajectories | None = None
        self.last_kept: KeptRollout | None = None
        # the environment's own reward is computed in the graph where it traces; a user's reward
        # function is arbitrary Python, so it is called on the final states afterwards
        default_reward = env.reward_compiles and env.reward_fn is None and env.log_reward_fn is None
        use_compile_cache()  # the user's cache folder, not /tmp: compilations stay cached across reboots
        rollout = functools.partial(rollout_fixed_steps, env, policy, gamma=gamma, temperature=temperature,
                                    default_reward=default_reward, keep=keep, exits=keep and exits)
        # cpp_wrapper: the graph's ~150 kernel and matmul calls are made from C++, not Python.
        # isolate_recompiles: every sampler compiles the same function (with other constants:
        # environment, exploration, temperature), and dynamo's recompile limit (8) would count
        # them all together: a process's ninth sampler (a notebook, a sweep) would fail to compile
        self._rollout = torch.compile(rollout, fullgraph=True, dynamic=False, isolate_recompiles=True,
                                      options={"cpp_wrapper": True})
        #: seconds the first call of each batch size spent compiling (see `warm_up`)
        self.compile_seconds = 0.0

    def inputs(self, n: int, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        """The graph's random inputs: every step's uniforms (not exponentials: the graph turns
        them into exponential races more cheaply) and, for a conditional environment, the s0 of
        each trajectory with the context drawn for it (drawn first)."""
        device = generator.device if generator is not None else self.env.device
        initial = self.env.initial_states(n, generator) if self.env.conditional else None
        uniforms = torch.rand(self.env.max_steps, n, self.env.n_actions, generator=generator, device=device)
        return {"uniforms": uniforms, "initial": initial}

    def warm_up(self, n: int | None = None) -> float:
        """Compile for batch size n (default: `batch_size`) now, on throwaway random numbers (the
        run's generator is not touched, so a warmed-up run samples exactly as a cold one);
        returns the seconds it took."""
        n = self.batch_size if n is None else n
        started = time.perf_counter()
        try:
            with torch.no_grad():
                device = self.env.device
                self._rollout(**self.inputs(n, torch.Generator(device=device).manual_seed(0)))
        except Exception as err:  # noqa: BLE001 - whatever failed, the remedy is the same
            cause = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
            raise ConfigError(f"compile: torch.compile could not build the {self.env.name} rollout "
                              f"({type(err).__name__}: {cause[:300]}). It needs a C++ compiler, and an "
                              "environment whose masks, features and step trace into one graph "
                              "(DiscreteEnv.compilable); train without --compile") from err
        seconds = time.perf_counter() - started
        self.compile_seconds += seconds
        return seconds

    @torch.no_grad()
    def sample(self, generator: torch.Generator | None = None, n: int | None = None) -> Trajectories:
        rollout = self._rollout(**self.inputs(self.batch_size if n is None else n, generator))
        if not bool(rollout.lengths.all()):
            raise RuntimeError(f"{self.env.name}: a trajectory did not exit within max_steps={self.env.max_steps}")
        log_rewards = self.env.log_reward(rollout.last, default=rollout.default_log_rewards)
        batch = Trajectories(rollout.states, rollout.actions, rollout.lengths, log_rewards)
        self.last_batch = batch
        self.last_kept = KeptRollout(rollout.kept, *rollout.log_probs) if self.keep else None
        if self.observe is not None:
            self.observe(rollout.last)
        return batch

    def __call__(self, n: int | None = None, generator: torch.Generator | None = None) -> Trajectories:
        return self.sample(generator, n)
