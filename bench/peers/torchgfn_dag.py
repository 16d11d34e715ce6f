"""torchgfn 2.4.1 on DAG structure learning (`gfn.gym.BayesianStructure`, d = 5 nodes), modified
detailed balance (`ModifiedDBGFlowNet`), run by the peer venv's python for bench/dag_speed.py.
Built as torchgfn's own example (tutorials/examples/train_bayesian_structure.py) builds it: the
BayesianStructure env, a `DiscreteGraphPolicyEstimator` for P_F, `GraphActionUniform` in a
backward `DiscreteGraphPolicyEstimator` for P_B (1 / number of edges of s': torchgfn's backward
mask allows removing any edge), `sample_trajectories(..., save_logprobs=True, epsilon=...)` with
the example's epsilon-noisy exploration at the bench's epsilon (`--exploration`, 0.1: the example's
floor; its dictionary gives the action type epsilon / d^2 and the edge index epsilon, each component
mixed with the uniform distribution over its allowed values), no replay buffer,
`to_training_samples`, `loss(..., recalculate_all_logprobs=True)`.
The example's own loss is TB in the stored versions (its docstring says modified DB); the bench
asks for modified DB, which torchgfn ships as `ModifiedDBGFlowNet` and which we use as is: its
residual is ours with the sign flipped (squared, the same), over the non-exit transitions only,
reduction mean over those transitions, no log Z and no target network.

The reward is the harness's (`--task`): log R of a graph is looked up in the task's table by its
adjacency's bit pattern (bit i * d + j: edge i -> j) and handed to BayesianStructure as its
`state_evaluator` (torchgfn calls it for log R, of the terminating states and, for modified DB, of
every s and s' of a transition). torchgfn keeps these log rewards in float32: at -870..-755 that
is a rounding of 6e-5, below the noise of training.

The network is ours: input the flattened adjacency A and transitive closure C (50 0/1 features,
a torchgfn Preprocessor, batched), torchgfn's `MLP` 2 x 256 with `activation_fn="leaky_relu"`
(nn.LeakyReLU, slope 0.01), one linear head of d * d edge logits + 1 exit logit. torchgfn ships
`GraphEdgeActionMLP` for this (its example's `--module mlp`), but it reads the adjacency alone
and has layer norms and separate exit / edge heads of its own, so it cannot be this network; the
head is mapped to torchgfn's GraphActions as that module maps it: action type logits
(ADD_NODE -inf, ADD_EDGE 0, EXIT = the exit logit) and the edge logits as the edge index
distribution. torchgfn's policy is hierarchical: P(stop) = sigmoid(exit logit) and, otherwise, a
softmax over the allowed edges, which is the function class of a flat softmax over the d * d + 1
masked logits (ours), parametrised differently. Masks are torchgfn's (BayesianStructure's
forward_masks: not an edge yet, not a self-loop, no path back). Adam lr 1e-3, one thread.

The clock covers sampling, the loss (with its reward look-ups), backward and the optimizer step.
Evaluations (outside the clock) at --eval-every and at the end write --evals-out (.npz):
iterations, training seconds, and log P_F(a | s) of every task state (task order) for actions in
the bench's numbering (i * d + j adds i -> j, d * d stops), from torchgfn's own distribution (the
estimator's output through `to_probability_distribution` and `GraphActionDistribution.log_prob`,
as its sampler uses them; -inf where masked). Prints one JSON line: iterations, seconds,
it/s, trajectories/s, peak RSS (before the first evaluation)."""


from collections import defaultdict

import numpy as np
import torch
from tensordict import TensorDict
from torch_geometric.data import Data as GeometricData

from gfn.actions import GraphActions, GraphActionType
from gfn.estimators import DiscreteGraphPolicyEstimator
from gfn.gflownet import ModifiedDBGFlowNet
from gfn.gym.bayesian_structure import BayesianStructure
from gfn.preprocessors import Preprocessor
from gfn.states import GraphStates
from gfn.utils.common import set_seed
from gfn.utils.modules import MLP, GraphActionUniform
from table_peer import parse_args, train_and_evaluate


def adjacency(states: GraphStates, d: int) -> torch.Tensor:
    """(B, d, d) bool adjacency of a flat batch of graph states, from their edge lists."""
    graphs = states.data.reshape(-1).tolist()
    counts = torch.tensor([g.edge_index.shape[1] for g in graphs])
    adj = torch.zeros(len(graphs), d, d, dtype=torch.bool)
    if int(counts.sum()) > 0:
        edges = torch.cat([g.edge_index for g in graphs], dim=1)
        batch = torch.repeat_interleave(torch.arange(len(graphs)), counts)
        adj[batch, edges[0], edges[1]] = True
    return adj


def transitive_closure(adj: torch.Tensor) -> torch.Tensor:
    """C[b, i, j]: a directed path of length >= 1 from i to j (Floyd-Warshall over k, batched)."""
    reach = adj.clone()
    for k in range(adj.shape[-1]):
        reach = reach | (reach[:, :, k : k + 1] & reach[:, k : k + 1, :])
    return reach


class TableReward:
    """log R(G) from the harness's table, by the bit pattern of G's adjacency."""

    def __init__(self, keys_sorted: np.ndarray, log_r_sorted: np.ndarray, d: int):
        self.keys = torch.as_tensor(keys_sorted, dtype=torch.long)
        self.log_r = torch.as_tensor(log_r_sorted, dtype=torch.float64)
        self.d = d
        self.bits = (torch.ones(d * d, dtype=torch.long) << torch.arange(d * d)).reshape(d, d)

    def __call__(self, states: GraphStates) -> torch.Tensor:
        key = (adjacency(states, self.d).long() * self.bits).sum(dim=(1, 2))
        index = torch.searchsorted(self.keys, key).clamp(max=len(self.keys) - 1)
        if not torch.equal(self.keys[index], key):
            raise ValueError("a state's graph is not in the task's table")
        return self.log_r[index].to(torch.get_default_dtype()).reshape(states.batch_shape)


class AdjacencyClosure(Preprocessor):
    """Flattened adjacency and transitive closure, 0/1 floats: 2 * d * d features (our DAG's)."""

    def __init__(self, d: int):
        super().__init__(output_dim=2 * d * d)
        self.d = d

    def preprocess(self, states: GraphStates) -> torch.Tensor:
        adj = adjacency(states, self.d)
        features = torch.cat([adj.flatten(1), transitive_closure(adj).flatten(1)], dim=1)
        return features.to(torch.get_default_dtype()).reshape(*states.batch_shape, -1)


class EdgeExitMLP(torch.nn.Module):
    """MLP 2 x 256 LeakyReLU -> d * d edge logits + exit logit, as torchgfn's GraphActions logits
    (the layout of its GraphEdgeActionMLP: ADD_EDGE 0, EXIT the exit logit, ADD_NODE unused)."""

    def __init__(self, d: int, num_node_classes: int, num_edge_classes: int):
        super().__init__()
        self.d, self.num_node_classes, self.num_edge_classes = d, num_node_classes, num_edge_classes
        self.mlp = MLP(2 * d * d, d * d + 1, hidden_dim=256, n_hidden_layers=2, activation_fn="leaky_relu")

    def forward(self, features: torch.Tensor) -> TensorDict:
        out = self.mlp(features)
        n = len(out)
        exit_logit = out[:, -1]
        action_type = torch.stack([torch.full_like(exit_logit, -float("inf")),
                                   torch.zeros_like(exit_logit), exit_logit], dim=1)
        assert (GraphActionType.ADD_NODE, GraphActionType.ADD_EDGE, GraphActionType.EXIT) == (0, 1, 2)
        return TensorDict({
            GraphActions.ACTION_TYPE_KEY: action_type,
            GraphActions.NODE_CLASS_KEY: torch.zeros(n, self.num_node_classes),
            GraphActions.NODE_INDEX_KEY: torch.zeros(n, self.d),
            GraphActions.EDGE_CLASS_KEY: torch.zeros(n, self.num_edge_classes),
            GraphActions.EDGE_INDEX_KEY: out[:, :-1],
        }, batch_size=n)


def task_states(env: BayesianStructure, adjacencies: np.ndarray) -> GraphStates:
    """GraphStates of the given (N, d, d) adjacencies, as env.step builds them."""
    data = np.empty(len(adjacencies), dtype=object)
    x = env.s0.x
    for i, adj in enumerate(adjacencies):
        edge_index = torch.as_tensor(np.stack(np.nonzero(adj)), dtype=torch.long)
        data[i] = GeometricData(x=x.clone(), edge_index=edge_index,
                                edge_attr=torch.zeros(edge_index.shape[1], 1, dtype=torch.long))
    return env.States(data)


def all_log_probs(env: BayesianStructure, pf: DiscreteGraphPolicyEstimator, adjacencies: np.ndarray,
                  chunk: int = 2048) -> np.ndarray:
    """(N, d * d + 1) float32 log P_F(a | s) in the bench's numbering, by torchgfn's distribution."""
    d = env.n_nodes
    out = np.empty((len(adjacencies), d * d + 1), dtype=np.float32)
    index = GraphActions.ACTION_INDICES
    for start in range(0, len(adjacencies), chunk):
        states = task_states(env, adjacencies[start:start + chunk])
        n = len(states)
        with torch.no_grad():
            dist = pf.to_probability_distribution(states, pf(states))
            columns = []
            for action in range(d * d + 1):
                sample = torch.zeros(n, len(index), dtype=torch.long)
                if action == d * d:
                    sample[:] = GraphActions.exit_action
                else:
                    sample[:, index[GraphActions.ACTION_TYPE_KEY]] = GraphActionType.ADD_EDGE
                    sample[:, index[GraphActions.EDGE_INDEX_KEY]] = action
                columns.append(dist.log_prob(sample))
        out[start:start + n] = torch.stack(columns, dim=1).numpy()
    return out


def main() -> None:
    args = parse_args("DAG", 32, 0.1, "epsilon, as torchgfn's example applies it")
    torch.set_num_threads(1)
    set_seed(args.seed)

    task = np.load(args.task)
    d = int(task["nodes"])
    states_all = task["states"].astype(bool)
    env = BayesianStructure(n_nodes=d, state_evaluator=TableReward(task["keys_sorted"], task["log_r_sorted"], d))

    pf_module = EdgeExitMLP(d, env.num_node_classes, env.num_edge_classes)
    pb_module = GraphActionUniform(d * d, env.num_edge_classes, env.num_node_classes)
    pf = DiscreteGraphPolicyEstimator(module=pf_module, preprocessor=AdjacencyClosure(d))
    pb = DiscreteGraphPolicyEstimator(module=pb_module, is_backward=True)
    gflownet = ModifiedDBGFlowNet(pf, pb)
    optimizer = torch.optim.Adam(gflownet.pf_pb_parameters(), lr=1e-3)

    epsilon = defaultdict(float)  # torchgfn's example: per action component
    epsilon[GraphActions.ACTION_TYPE_KEY] = args.exploration / d ** 2
    epsilon[GraphActions.EDGE_INDEX_KEY] = args.exploration

    def step() -> None:
        trajectories = gflownet.sample_trajectories(env, n=args.batch_size, save_logprobs=True, epsilon=epsilon)
        transitions = gflownet.to_training_samples(trajectories)
        optimizer.zero_grad()
        loss = gflownet.loss(env, transitions, recalculate_all_logprobs=True)
        loss.backward()
        optimizer.step()

    train_and_evaluate(args, step, lambda: all_log_probs(env, pf, states_all))


if __name__ == "__main__":
    main()
