"""Exact evaluation: the distribution of finished objects under the forward policy, computed
by dynamic programming over the enumerated state graph (no sampling noise)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from gflownets.envs.base import DiscreteEnv
from gflownets.envs.indexing import StateIndex
from gflownets.errors import TooManyStates
from gflownets.policies.base import Policy, PolicyOutput
from gflownets.policies.tabular import TabularPolicy
from gflownets.policies.distributions import masked_log_softmax

#: the most states x steps (`env.max_steps`, the most levels of the graph) exact evaluation takes:
#: building the graph costs a pass over every state per level (~2e-8 s per state and level on one
#: core: ~10 s at the limit), and each evaluation runs the policy on every state. A 2-D hypergrid
#: of side 1414 (2e6 states, 2827 levels) took 113 s and 7 GB; the 4-D 32-grid (1e6 x 125) is in.
MAX_GRAPH_WORK = 500_000_000


class StateGraph:
    """Every reachable state, every forward edge, a topological order and the exact target,
    built once per environment (cost: one pass of the environment over all states). Its tensors
    are on the environment's device (where `enumerate_states` puts them)."""

    def __init__(self, env: DiscreteEnv):
        self.env = env
        self.states = env.enumerate_states()
        work = len(self.states) * env.max_steps
        if work > MAX_GRAPH_WORK:
            raise TooManyStates(f"{env.name}: {len(self.states)} states x up to {env.max_steps} levels = {work:.3g}, "
                                f"more than exact evaluation's limit of {MAX_GRAPH_WORK:.3g}: too many states to "
                                "evaluate exactly")
        device = self.states.device
        self.index = StateIndex(self.states)
        n = len(self.index)
        self.forward_mask = env.forward_mask(self.states)
        parents, actions = self.forward_mask[:, :-1].nonzero(as_tuple=True)
        children = self.index.lookup(env._step(self.states[parents], actions))
        if (children < 0).any():
            raise RuntimeError(f"{env.name}: a step leaves the enumerated state space")
        self.s0 = int(self.index.lookup(env.initial_states(1))[0])

        # Kahn's algorithm, one level (all states whose parents are all done) at a time.
        indegree = torch.bincount(children, minlength=n)
        level_of = torch.full((n,), -1, dtype=torch.long, device=device)
        frontier = (indegree == 0).nonzero().squeeze(1)
        if frontier.tolist() != [self.s0]:
            raise RuntimeError(f"{env.name}: s0 must be the only state without parents")
        level = 0
        self.edge_levels: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        while len(frontier):
            level_of[frontier] = level
            in_frontier = torch.zeros(n, dtype=torch.bool, device=device)
            in_frontier[frontier] = True
            edge_ids = in_frontier[parents].nonzero().squeeze(1)
            self.edge_levels.append((parents[edge_ids], actions[edge_ids], children[edge_ids]))
            indegree -= torch.bincount(children[edge_ids], minlength=n)
            newly = torch.zeros(n, dtype=torch.bool, device=device)
            newly[children[edge_ids]] = True
            frontier = (newly & (indegree == 0)).nonzero().squeeze(1)
            level += 1
        if (level_of < 0).any():
            raise RuntimeError(f"{env.name}: the state graph has a cycle")

        self.terminal_ids = self.forward_mask[:, -1].nonzero().squeeze(1)
        self.terminal_states = self.states[self.terminal_ids]
        self.log_rewards = env.log_reward(self.terminal_states)
        self.log_z = torch.logsumexp(self.log_rewards, dim=0)
        self.target = (self.log_rewards - self.log_z).exp()
        self.terminal_index = StateIndex(self.terminal_states)
        self.mode_mask = self.log_rewards >= self.log_rewards.max() - 1e-9
        self.n_modes = int(self.mode_mask.sum())

    @property
    def n_states(self) -> int:
        return len(self.index)

    @torch.no_grad()
    def policy_outputs(self, policy: Policy, chunk: int = 65536) -> PolicyOutput:
        """The policy on every state, in chunks."""
        parts = [policy(self.states[i:i + chunk]) for i in range(0, self.n_states, chunk)]
        return PolicyOutput(*(torch.cat(p) for p in zip(*parts)))

    def forward_log_probs(self, policy: Policy) -> torch.Tensor:
        """(n_states, n_actions) float64 log P_F over the whole state space."""
        logits = self.policy_outputs(policy).forward_logits
        return masked_log_softmax(logits.double(), self.forward_mask)

    def backward_log_probs(self, policy: Policy) -> torch.Tensor:
        """(n_states, n_actions - 1) float64 log P_B (meaningless rows at s0)."""
        logits = self.policy_outputs(policy).backward_logits
        return masked_log_softmax(logits.double(), self.env.backward_mask(self.states))

    def terminal_distribution(self, policy: Policy) -> torch.Tensor:
        """Exact P(trajectory ends in x) for every terminal x, ordered as `terminal_states`."""
        return self.terminal_distribution_of(self.forward_log_probs(policy))

    @torch.no_grad()
    def terminal_distribution_of(self, forward_log_probs: torch.Tensor) -> torch.Tensor:
        """The same from a table of log P_F, (n_states, n_actions) in the order of `states`
        (masked entries may hold anything: only allowed edges are followed): for samplers that
        are not our policies, such as another library's (bench/dag_speed.py)."""
        probs = forward_log_probs.double().exp()
        reach = torch.zeros(self.n_states, dtype=torch.float64, device=self.states.device)
        reach[self.s0] = 1.0
        for parents, actions, children in self.edge_levels:
            reach.index_add_(0, children, reach[parents] * probs[parents, actions])
        return reach[self.terminal_ids] * probs[self.terminal_ids, -1]

    @torch.no_grad()
    def path_counts(self) -> torch.Tensor:
        """(n_terminal,) float64 number of complete trajectories from s0 to each terminal state,
        ordered as `terminal_states` (by dynamic programming over the levels)."""
        paths = torch.zeros(self.n_states, dtype=torch.float64, device=self.states.device)
        paths[self.s0] = 1.0
        for parents, _, children in self.edge_levels:
            paths.index_add_(0, children, paths[parents])
        return paths[self.terminal_ids]

    def trajectory_level_distribution(self) -> torch.Tensor:
        """The distribution over objects of a sampler of *trajectories* in proportion to the
        reward of their object (the optimum of maximum-entropy RL, and what search over the tree
        of construction paths counts): R(x) times its number of paths, normalised. It differs
        from the target wherever objects have different numbers of paths (seed 003's point)."""
        log_weights = self.log_rewards + self.path_counts().log()
        return (log_weights - torch.logsumexp(log_weights, dim=0)).exp()

    def terminal_positions(self, states: torch.Tensor) -> torch.Tensor:
        """Position of each finished object in `terminal_states` (-1 if not terminal)."""
        return self.terminal_index.lookup(states)

    def empirical_distribution(self, objects: torch.Tensor) -> torch.Tensor:
        positions = self.terminal_positions(objects)
        if (positions < 0).any():
            raise ValueError("a sampled object is not a terminal state of the environment")
        counts = torch.bincount(positions, minlength=len(self.terminal_ids)).double()
        return counts / counts.sum()


def try_state_graph(env: DiscreteEnv, on_refusal: Callable[[str], None] | None = None) -> StateGraph | None:
    """The state graph, or None where the environment refuses to enumerate its states
    (TooManyStates; `on_refusal` hears why). Every other error, a reward that fails on some
    object included, propagates."""
    try:
        return StateGraph(env)
    except TooManyStates as refusal:
        if on_refusal is not None:
            on_refusal(str(refusal))
        return None


def optimal_tabular_policy(graph: StateGraph, backward_log_probs: torch.Tensor | None = None,
                           dtype: torch.dtype = torch.float64) -> TabularPolicy:
    """The exact solution for a given backward policy (uniform by default): state flows
    F(s) = R(s)[s terminal] + sum_{s->c} F(c) P_B(s|c), computed backward over the graph, then
    edge flows F(s->c) = F(c) P_B(s|c), P_F = edge flow / F(s), Z = F(s0). Every objective is
    zero at it, and its exact terminal distribution is the target: the reference for tests."""
    env = graph.env
    n = graph.n_states
    device = graph.states.device
    bmask = env.backward_mask(graph.states)
    if backward_log_probs is None:
        backward_log_probs = masked_log_softmax(
            torch.zeros(n, env.n_actions - 1, dtype=torch.float64, device=device), bmask)
    backward_log_probs = backward_log_probs.to(device)
    pb = backward_log_probs.double().exp()
    log_r = torch.full((n,), float("-inf"), dtype=torch.float64, device=device)
    log_r[graph.terminal_ids] = graph.log_rewards
    flow = log_r.exp()
    for parents, actions, children in reversed(graph.edge_levels):
        flow.index_add_(0, parents, flow[children] * pb[children, actions])
    log_flow = flow.log()

    edge = torch.full((n, env.n_actions), -1e9, dtype=torch.float64, device=device)
    for parents, actions, children in graph.edge_levels:
        edge[parents, actions] = log_flow[children] + backward_log_probs.double()[children, actions]
    terminal = graph.forward_mask[:, -1]
    edge[terminal, -1] = log_r[terminal]

    policy = TabularPolicy(env, backward="learned", dtype=dtype)
    with torch.no_grad():
        policy.forward_table.copy_(edge.to(dtype))
        policy.backward_table.copy_(torch.where(bmask, backward_log_probs.double(), -1e9).to(dtype))
        policy.flow_table.copy_(log_flow.to(dtype))
        policy.log_z.copy_(log_flow[graph.s0].to(dtype))
    return policy
