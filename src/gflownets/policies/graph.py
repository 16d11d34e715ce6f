"""A message-passing policy for graph-valued environments (`atoms`, or any environment that
describes its states and actions as a graph: `graph_layout()` and `graph_inputs(states)`).

The states arrive as padded tensors (node features (B, N, F), a node mask, a dense adjacency
per edge type (B, E, N, N)), so a batch of molecules of different sizes is a few batched matrix
products, with no Python loop over graphs:

    h_i <- LayerNorm(h_i + MLP([h_i, sum_e sum_j A^e_ij W_e h_j, mean_k h_k]))     (`layers` rounds)

then the heads the layout asks for: per-node logits (node actions, e.g. "add an atom of element
t on node i"), per-pair logits from the symmetric pair code [h_i + h_j, h_i * h_j] (pair actions,
e.g. "raise the bond i-j"), and from a pooled readout [mean_i h_i, sum_i h_i / N] the
whole-graph actions, exit and log F(s). Backward logits come from the same heads (backward
action a undoes forward action a, so the backward layout is the forward one without exit).
The output layers start at zero: the untrained policy is uniform over the allowed actions.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gflownets.envs.base import DiscreteEnv
from gflownets.errors import ConfigError
from gflownets.policies.base import Policy, PolicyOutput

#: elements of the largest intermediate (the pair codes, B x pairs x 2 hidden) evaluated at once
#: without gradients (exact evaluation over every state of a graph): bounds its memory to ~1 GB
NO_GRAD_CHUNK_ELEMENTS = 256_000_000


def graph_layout_of(env: DiscreteEnv) -> Any:
    """The environment's `GraphLayout`, checked against its action count; a ConfigError for an
    environment that does not describe its states as graphs."""
    if not (callable(getattr(env, "graph_layout", None)) and callable(getattr(env, "graph_inputs", None))):
        raise ConfigError(f"the graph policy needs an environment whose states are graphs (graph_layout() and "
                          f"graph_inputs(states), as atoms has); {env.name} has none: use --policy mlp")
    layout = env.graph_layout()
    if layout.n_actions != env.n_actions:
        raise ConfigError(f"{env.name}: its graph layout describes {layout.n_actions} actions, but it has "
                          f"{env.n_actions}")
    return layout


def _mlp(fan_in: int, hidden: int, fan_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(fan_in, hidden), nn.SiLU(), nn.Linear(hidden, fan_out))


class GraphPolicy(Policy):
    """Message passing over padded graphs with node, pair and graph heads (see the module)."""

    def __init__(self, env: DiscreteEnv, hidden: int = 128, layers: int = 3, backward: str = "learned",
                 state_flow: bool = True):
        super().__init__(env, backward)
        if hidden < 1 or layers < 1:
            raise ValueError(f"hidden and layers must be >= 1, got {hidden} and {layers}")
        self.layout = layout = graph_layout_of(env)
        self.hidden = hidden
        self.n_ways = 2 if backward == "learned" else 1  # forward (and backward) logits per head
        self.state_flow = state_flow
        N, E = layout.max_nodes, layout.edge_types
        self.embed = nn.Linear(layout.node_features, hidden)
        #: per round: one linear map per edge type (as one (hidden, E * hidden) matrix), the update MLP
        self.messages = nn.ModuleList(nn.Linear(hidden, E * hidden, bias=False) for _ in range(layers))
        self.updates = nn.ModuleList(_mlp(3 * hidden, hidden, hidden) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.node_head = _mlp(hidden, hidden, layout.node_actions * self.n_ways)
        # no pair head where the environment has no pair actions (fragments: only attachments)
        self.pair_head = _mlp(2 * hidden, hidden, layout.pair_actions * self.n_ways) if layout.pair_actions else None
        # whole-graph actions (forward and backward), exit, log F
        self.graph_head = _mlp(2 * hidden, hidden, layout.graph_actions * self.n_ways + 2)
        for head in (self.node_head, self.pair_head, self.graph_head):
            if head is None:
                continue
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)
        pairs = torch.triu_indices(N, N, 1, device=env.device)
        self.register_buffer("pair_i", pairs[0].clone(), persistent=False)
        self.register_buffer("pair_j", pairs[1].clone(), persistent=False)
        self.to(env.device)

    def node_states(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, hidden) node embeddings after message passing (zero on empty slots) and the
        (B, N) node mask."""
        inputs = self.env.graph_inputs(states)
        mask = inputs.mask[:, :, None].to(inputs.nodes.dtype)
        count = mask.sum(dim=1).clamp(min=1.0)                       # (B, 1)
        adjacency = inputs.adjacency                                 # (B, E, N, N)
        B, E, N, _ = adjacency.shape
        h = self.embed(inputs.nodes) * mask
        for message, update, norm in zip(self.messages, self.updates, self.norms):
            per_type = message(h).reshape(B, N, E, self.hidden).transpose(1, 2)   # (B, E, N, hidden)
            incoming = (adjacency @ per_type).sum(dim=1)                           # (B, N, hidden)
            pooled = (h.sum(dim=1) / count)[:, None, :].expand(B, N, self.hidden)
            h = norm(h + update(torch.cat([h, incoming, pooled], dim=2))) * mask
        return h, inputs.mask

    def forward(self, states: torch.Tensor) -> PolicyOutput:
        if not torch.is_grad_enabled():
            rows = max(1, NO_GRAD_CHUNK_ELEMENTS // (max(self.layout.n_pairs, self.layout.max_nodes, 1)
                                                     * 2 * self.hidden))
            if states.shape[0] > rows:
                parts = [self._forward(states[i:i + rows]) for i in range(0, states.shape[0], rows)]
                return PolicyOutput(*(torch.cat(p) for p in zip(*parts)))
        return self._forward(states)

    def _forward(self, states: torch.Tensor) -> PolicyOutput:
        layout, ways = self.layout, self.n_ways
        h, mask = self.node_states(states)
        B, N = h.shape[0], layout.max_nodes
        node = self.node_head(h).reshape(B, N, ways, layout.node_actions)
        if self.pair_head is None:
            pair = h.new_zeros(B, layout.n_pairs, ways, 0)
        else:
            hi, hj = h[:, self.pair_i], h[:, self.pair_j]
            pair = self.pair_head(torch.cat([hi + hj, hi * hj], dim=2)).reshape(
                B, layout.n_pairs, ways, layout.pair_actions)
        count = mask.sum(dim=1, keepdim=True).clamp(min=1).to(h.dtype)
        readout = torch.cat([h.sum(dim=1) / count, h.sum(dim=1) / N], dim=1)
        graph = self.graph_head(readout)
        n_graph = layout.graph_actions
        graph_logits = graph[:, :n_graph * ways].reshape(B, ways, n_graph)
        exit_logit, log_flow = graph[:, -2:-1], graph[:, -1]

        def logits(way: int) -> torch.Tensor:
            return torch.cat([node[:, :, way].reshape(B, -1), pair[:, :, way].reshape(B, -1),
                              graph_logits[:, way]], dim=1)

        forward_logits = torch.cat([logits(0), exit_logit], dim=1)
        backward_logits = logits(1) if ways == 2 else h.new_zeros(B, self.env.n_actions - 1)
        if not self.state_flow:
            log_flow = torch.zeros_like(log_flow)
        return PolicyOutput(forward_logits, backward_logits, log_flow)
