"""Monte Carlo tree search as a sampler (#17): maximum-entropy MCTS (MENTS, Xiao et al. 2019)
over the tree of construction *paths*, whose visit counts are read as a distribution over
finished objects. It is the baseline that shows the path-counting bias of seed 003: the tree
has one node per action sequence (there is no transposition table), so an object that can be
built in many orders (a set of k items: k! orders) collects reward once per path, and the
visits converge to the trajectory-level distribution R(x) x paths(x), not to the target R(x)
that a GFlowNet samples (`StateGraph.trajectory_level_distribution` is that limit, exactly).

One simulation, on the tree as it stands at the start of a `step` (its `simulations` run side
by side, each environment call batched over them):

1. selection: from the root, draw a(s) ~ pi(.|s) = (1 - lam) softmax(Q(s, .) / tau) + lam
   uniform, over the allowed actions, with lam = min(1, eps |A_s| / log(N(s) + 2)) (MENTS's
   decaying exploration), until exit is drawn (the object is the node's state) or the drawn
   child is not in the tree;
2. expansion: that child becomes a node (its allowed actions from `forward_mask`);
3. rollout: the uniform policy completes the trajectory from it, and the finished object is
   scored (the one reward call of the simulation);
4. backup: Q(s, exit) = log R(s) where exit was drawn (exact); the new node's first rollout
   action gets the rollout's estimate; every edge above gets Q(s, a) = V(s'), the soft value
   V(s') = tau logsumexp over allowed a' of Q(s', a') / tau; N(s, a) += 1 along the whole path,
   the new node's first rollout action included, so that N(s) counts every simulation through s.

With tau = 1, the fixed point of the backup is V(s) = log sum over complete paths below s of
R(end of path): the soft values are log path-summed rewards, and the Boltzmann policy (so the
visit counts, once exploration has decayed) draws each trajectory in proportion to its reward,
each object in proportion to R(x) times its number of paths.

The rollout's estimate of a new node's value is importance-weighted: a uniform rollout from c
that takes path p to x has probability P(p) = prod_t 1 / |A_t|, and R(x) / P(p) is an unbiased
estimate of sum_paths R, the quantity exp(V(c)) stands for. So v = log R(x) + tau sum_t log
|A_t| (tau = 1: exactly that estimate; any tau: the same with rewards R^(1/tau)), and every
allowed action of c starts at Q = v - tau log |A_c|, which makes V(c) = v. A plain log R(x)
would start deep subtrees (many paths) far too low and the search would need many more visits
to correct it; the fixed point is the same either way.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from gflownets.baselines.samplers import Baseline
from gflownets.envs.base import DiscreteEnv, draw_device
from gflownets.errors import ConfigError
from gflownets.evaluation.exact import StateGraph
from gflownets.policies.distributions import exploration_probs, sample_categorical
from gflownets.policies.uniform import UniformPolicy
from gflownets.sampling.trajectories import Trajectories, sample_forward

Path = tuple[int, ...]


class Node:
    """One node of the search tree: a path from s0 (`key`, its actions) and the state it
    reaches, with per-action arrays over all `n_actions` of the environment: `allowed`,
    visit counts `visits` N(s, a) and soft values `values` Q(s, a) (-inf where not allowed,
    so that a logsumexp over the whole row is the soft value over the allowed actions)."""

    __slots__ = ("key", "state", "allowed", "visits", "values")

    def __init__(self, key: Path, state: torch.Tensor, allowed: np.ndarray, prior: float):
        self.key = key
        self.state = state
        self.allowed = allowed
        self.visits = np.zeros(len(allowed), dtype=np.float64)
        self.values = np.where(allowed, prior, -np.inf)

    def soft_value(self, temperature: float) -> float:
        """V(s) = tau logsumexp_a Q(s, a) / tau over the allowed actions."""
        scaled = self.values / temperature
        top = scaled.max()
        return float(temperature * (top + np.log(np.exp(scaled - top).sum())))


class MCTSSampler(Baseline):
    """Maximum-entropy MCTS over the tree of action sequences from s0 (see the module's
    docstring), `simulations` simulations per `step`; each returns the object it finished and
    costs one reward call. `temperature` tau of the soft values and the Boltzmann policy (1:
    the visits converge to R(x) x paths(x); below 1 they concentrate on the best paths),
    `epsilon` the strength of MENTS's decaying uniform exploration.

    Memory: at most one node per simulation (about 2 kB each), and never more nodes
    than the environment has paths."""

    name = "mcts"

    def __init__(self, env: DiscreteEnv, simulations: int = 16, temperature: float = 1.0, epsilon: float = 0.1):
        super().__init__(env)
        if isinstance(simulations, bool) or not isinstance(simulations, int) or simulations < 1:
            raise ConfigError(f"simulations must be an integer >= 1, got {simulations!r}")
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise ConfigError(f"temperature must be a finite number > 0, got {temperature!r}")
        if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon >= 0):
            raise ConfigError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
        if env.conditional:
            raise ConfigError(f"{env.name}: MCTS searches one tree from one s0; a conditional environment draws "
                              "its s0 (context) per trajectory")
        self.simulations = simulations
        self.temperature = float(temperature)
        self.epsilon = float(epsilon)
        self.rollout_policy = UniformPolicy(env)
        #: every node, by its path from s0; a parent is always inserted before its children. It
        #: starts empty: the first step's simulations all start at s0, which becomes the root with
        #: the priors of their rollouts like any other new node (a fixed prior, such as 0, would be
        #: on another scale than the soft values, log path-summed rewards)
        self.tree: dict[Path, Node] = {}

    # ------------------------------------------------------------------ one batch of simulations
    def step(self, generator: torch.Generator | None) -> torch.Tensor:
        paths, exited, left = self._descend(generator)
        env, exit_action = self.env, self.env.exit_action
        log_rewards = torch.empty(self.simulations, dtype=torch.float64)
        finished = []  # the objects of the simulations in `exited`, then of those in `left`

        if exited:  # exit drawn inside the tree: the object is the node's state
            states = torch.stack([paths[i][-1][0].state for i in exited])
            finished.append(states)
            log_rewards[exited] = env.log_reward(states).cpu()
        if left:  # stepped off the tree: the new nodes' states, completed by uniform rollouts
            if paths[left[0]]:
                parents = torch.stack([paths[i][-1][0].state for i in left])
                actions = torch.tensor([paths[i][-1][1] for i in left], device=parents.device)
                leaf_states = env._step(parents, actions)
                leaf_keys = [paths[i][-1][0].key + (paths[i][-1][1],) for i in left]
            else:  # the first step: no root yet
                leaf_states = env.initial_states(len(left))
                leaf_keys = [()] * len(left)
            leaf_masks = env.forward_mask(leaf_states)
            rollouts = sample_forward(env, self.rollout_policy, len(left), generator, start=leaf_states)
            finished.append(rollouts.terminal_states)
            log_rewards[left] = rollouts.log_rewards.cpu()
            estimates = (rollouts.log_rewards.cpu() + self.temperature * _log_inverse_uniform_prob(env, rollouts))
            first_actions = rollouts.actions[:, 0].cpu().tolist()
        self.reward_calls += self.simulations

        for i in exited:
            node, _ = paths[i][-1]
            node.values[exit_action] = float(log_rewards[i])  # exact: Q(s, exit) = log R(s)
            node.visits[exit_action] += 1
            self._back_up(paths[i][:-1], node)
        for j, i in enumerate(left):
            node = self._expand(leaf_keys[j], leaf_states[j], leaf_masks[j], float(estimates[j]))
            a0 = first_actions[j]
            if a0 == exit_action:
                estimate = float(log_rewards[i])  # the rollout exited at once: exact
            else:
                estimate = float(estimates[j]) - self.temperature * math.log(node.allowed.sum())
            node.values[a0] = self._running_mean(node.values[a0], node.visits[a0], estimate, exact=a0 == exit_action)
            node.visits[a0] += 1
            self._back_up(paths[i], node)
        order = torch.tensor(exited + left, device=finished[0].device)
        return torch.cat(finished)[order.argsort()]  # in simulation order

    def _descend(self, generator: torch.Generator | None) -> tuple[list[list[tuple[Node, int]]], list[int], list[int]]:
        """Selection for every simulation on the tree as it stands: each one's path of (node,
        action) edges, the simulations that drew exit in the tree and those that stepped off it
        (their last edge leads to a state that is not a node yet)."""
        paths: list[list[tuple[Node, int]]] = [[] for _ in range(self.simulations)]
        if not self.tree:  # the first step: every simulation starts off the (empty) tree, at s0
            return paths, [], list(range(self.simulations))
        at = [self.tree[()]] * self.simulations
        running = list(range(self.simulations))
        exited, left = [], []
        while running:  # one level of the tree per pass, every running simulation at once
            actions = self._select([at[i] for i in running], generator)
            still = []
            for i, action in zip(running, actions):
                paths[i].append((at[i], action))
                if action == self.env.exit_action:
                    exited.append(i)
                    continue
                child = self.tree.get(at[i].key + (action,))
                if child is None:
                    left.append(i)
                else:
                    at[i] = child
                    still.append(i)
            running = still
        return paths, exited, left

    def _select(self, nodes: list[Node], generator: torch.Generator | None) -> list[int]:
        """One action per node from MENTS's policy: the Boltzmann policy of the soft values,
        mixed with the uniform one with weight lam = min(1, eps |A| / log(N + 2))."""
        values = torch.from_numpy(np.stack([n.values for n in nodes]))
        allowed = torch.from_numpy(np.stack([n.allowed for n in nodes]))
        visits = torch.tensor([n.visits.sum() for n in nodes], dtype=torch.float64)
        n_allowed = allowed.sum(dim=1, keepdim=True)
        lam = (self.epsilon * n_allowed / (visits[:, None] + 2).log()).clamp(max=1.0)
        probs = (1 - lam) * exploration_probs(values, allowed, temperature=self.temperature) + lam * allowed / n_allowed
        probs = probs.to(draw_device(generator, probs))
        return sample_categorical(probs, generator).tolist()

    def _expand(self, key: Path, state: torch.Tensor, mask: torch.Tensor, estimate: float) -> Node:
        """The node at `key`, made with every allowed action's Q at estimate - tau log |A| (so
        that its soft value is the estimate) unless an earlier simulation of the step made it."""
        node = self.tree.get(key)
        if node is None:
            allowed = mask.cpu().numpy()
            node = Node(key, state, allowed, estimate - self.temperature * math.log(allowed.sum()))
            self.tree[key] = node
        return node

    def _running_mean(self, current: float, count: float, estimate: float, exact: bool) -> float:
        """Q of an edge below which the tree has no node yet, after one more rollout estimate:
        the mean of the estimates in reward space (where each is unbiased), tau log mean
        exp(q / tau); the first estimate replaces the prior. An exit value is exact."""
        if exact or count == 0:
            return estimate
        t = self.temperature
        return t * (np.logaddexp(current / t + math.log(count), estimate / t) - math.log(count + 1))

    def _back_up(self, path: list[tuple[Node, int]], child: Node) -> None:
        """From the bottom up, each edge (s, a) of `path` takes Q(s, a) = V(s') of the node below."""
        for node, action in reversed(path):
            node.values[action] = child.soft_value(self.temperature)
            node.visits[action] += 1
            child = node

    # ------------------------------------------------------------------ the tree as a sampler
    def visit_distribution(self, graph: StateGraph) -> torch.Tensor:
        """Exact distribution, over `graph.terminal_states` (float64), of the sampler that
        descends from the root choosing a(s) in proportion to the visit counts N(s, a), and
        that completes with the uniform policy where the tree ends: the search's answer read off
        its visits, the usual way to read MCTS. Before any step it is the uniform policy's."""
        return self._descent_distribution(graph, lambda node: node.visits)

    def policy_distribution(self, graph: StateGraph) -> torch.Tensor:
        """The same for the Boltzmann policy of the soft values, softmax(Q(s, .) / tau) without
        exploration: where the visits are heading. The gap between the two is MENTS's
        exploration, which decays only as 1 / log N; the gap between this one and the
        trajectory-level distribution is what the values have not learned yet."""
        def boltzmann(node: Node) -> np.ndarray:
            scaled = node.values / self.temperature
            return np.exp(scaled - scaled.max())  # 0 where not allowed
        return self._descent_distribution(graph, boltzmann)

    @torch.no_grad()
    def _descent_distribution(self, graph: StateGraph, weights: Callable[[Node], np.ndarray]) -> torch.Tensor:
        """Exact terminal distribution of descending the tree with P(a | s) proportional to
        `weights(node)` (a node whose weights are all 0 is where the tree ends), then the
        uniform policy from the first state that is not a node. The root's mass is pushed down
        the tree in insertion order (parents first); the mass that left it, through the state
        graph with uniform forward probabilities, one level at a time."""
        env = self.env
        if graph.env is not env and graph.env.describe() != env.describe():
            raise ConfigError(f"the state graph is of another environment ({graph.env.describe()}) than this "
                              f"sampler's ({env.describe()})")
        exit_action = env.exit_action
        mass: dict[Path, float] = {(): 1.0}
        exit_states, exit_mass = [], []  # exit drawn inside the tree
        # states where the tree ends, completed uniformly from there: s0 before the first step
        frontier_states, frontier_mass = ([], []) if self.tree else ([env.initial_states(1)], [1.0])
        off_parents, off_actions, off_mass = [], [], []  # edges to states that are not nodes
        for key, node in self.tree.items():
            m = mass.pop(key, 0.0)
            if m == 0.0:
                continue
            w = weights(node)
            total = w.sum()
            if total == 0:
                frontier_states.append(node.state)
                frontier_mass.append(m)
                continue
            for action in np.flatnonzero(w):
                p = m * w[action] / total
                child = key + (int(action),)
                if action == exit_action:
                    exit_states.append(node.state)
                    exit_mass.append(p)
                elif child in self.tree:
                    mass[child] = mass.get(child, 0.0) + p
                else:
                    off_parents.append(node.state)
                    off_actions.append(int(action))
                    off_mass.append(p)
        if off_parents:
            parents = torch.stack(off_parents)
            frontier_states.append(env._step(parents, torch.tensor(off_actions, device=parents.device)))
            frontier_mass.extend(off_mass)
        device = graph.states.device
        reach = torch.zeros(graph.n_states, dtype=torch.float64, device=device)
        if frontier_states:
            states = torch.cat([s.reshape(-1, *env.state_shape) for s in frontier_states]).to(device)
            positions = graph.index.lookup(states)
            if (positions < 0).any():
                raise ConfigError(f"the state graph does not hold this sampler's tree: not one of {env.name}'s")
            reach.index_add_(0, positions, torch.tensor(frontier_mass, dtype=torch.float64, device=device))
        probs = graph.forward_log_probs(self.rollout_policy).exp()
        for parents, actions, children in graph.edge_levels:
            reach.index_add_(0, children, reach[parents] * probs[parents, actions])
        distribution = reach[graph.terminal_ids] * probs[graph.terminal_ids, -1]
        if exit_states:
            positions = graph.terminal_positions(torch.stack(exit_states).to(device))
            if (positions < 0).any():
                raise ConfigError(f"the state graph does not hold this sampler's tree: not one of {env.name}'s")
            distribution.index_add_(0, positions, torch.tensor(exit_mass, dtype=torch.float64, device=device))
        return distribution

    def learned_distribution(self, graph: StateGraph) -> torch.Tensor:
        """What the search has learned, as a sampler: its visit distribution."""
        return self.visit_distribution(graph)

    @property
    def n_nodes(self) -> int:
        return len(self.tree)


def _log_inverse_uniform_prob(env: DiscreteEnv, trajectories: Trajectories) -> torch.Tensor:
    """(B,) float64 sum_t log |A(s_t)| over each trajectory's decisions, exit included: minus
    the log-probability of the path under the uniform policy (CPU)."""
    valid = trajectories.valid
    counts = env.forward_mask(trajectories.states[valid]).sum(dim=-1).double().log()
    rows = valid.nonzero()[:, 0]
    out = torch.zeros(len(trajectories), dtype=torch.float64, device=counts.device)
    return out.index_add_(0, rows, counts).cpu()
