"""The default policy: an MLP over `env.features` with forward, backward and state-flow heads."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from gflownets.envs.base import DiscreteEnv
from gflownets.limits import mlp_weights, require_memory
from gflownets.policies.base import Policy, PolicyOutput, split_heads

#: the slope of the trunk's LeakyReLU for negative inputs
NEGATIVE_SLOPE = 0.01


class OneHotLinear(nn.Module):
    """A linear layer whose input is one-hot, given as the indices of its ones: the output is the
    sum of those columns of the weight (`embedding_bag`), far less work than a matmul with a
    mostly-zero vector. The weight is stored transposed, one contiguous row per input feature
    (gathers read whole rows; the optimiser sees a contiguous tensor); `weight` is the usual
    (out, in) view, and the state_dict holds it in nn.Linear's form, so checkpoints are alike."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        like = nn.Linear(in_features, out_features)  # nn.Linear's initialisation
        self.rows = nn.Parameter(like.weight.detach().t().contiguous())
        self.bias = nn.Parameter(like.bias.detach().clone())
        self.register_state_dict_post_hook(self._save_as_linear)
        self.register_load_state_dict_pre_hook(self._load_from_linear)

    @property
    def weight(self) -> torch.Tensor:
        return self.rows.t()

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return F.embedding_bag(indices, self.rows, mode="sum") + self.bias

    @staticmethod
    def _save_as_linear(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
        state_dict[prefix + "weight"] = state_dict.pop(prefix + "rows").t()

    @staticmethod
    def _load_from_linear(module: nn.Module, state_dict: dict, prefix: str, *_: object) -> None:
        if prefix + "weight" in state_dict:
            state_dict[prefix + "rows"] = state_dict.pop(prefix + "weight").t()


class MLPPolicy(Policy):
    """A shared trunk of `layers` hidden layers of width `hidden`, then one linear layer
    that emits every head at once (one matmul instead of three)."""

    #: the trunk's activation, F.leaky_relu with this slope (read by `fast.mlp`'s backward pass)
    negative_slope = NEGATIVE_SLOPE

    def __init__(self, env: DiscreteEnv, hidden: int = 256, layers: int = 2,
                 backward: str = "learned", state_flow: bool = True):
        super().__init__(env, backward)
        if hidden < 1 or layers < 1:
            raise ValueError(f"hidden and layers must be >= 1, got {hidden} and {layers}")
        self.n_forward = env.n_actions
        self.n_backward = env.n_actions - 1 if backward == "learned" else 0
        self.n_flow = 1 if state_flow else 0
        outputs = self.n_forward + self.n_backward + self.n_flow
        weights = mlp_weights(env.feature_dim, hidden, layers, outputs)
        require_memory(f"an MLP of {weights} weights", 4 * weights, env.device, "lower hidden or layers")
        widths = [env.feature_dim] + [hidden] * layers
        #: one-hot inputs (`env.features_one_hot`): the first layer reads the indices of the ones
        self.one_hot_input = env.features_one_hot
        trunk: list[nn.Module] = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            linear = OneHotLinear if self.one_hot_input and not trunk else nn.Linear
            trunk += [linear(fan_in, fan_out), nn.LeakyReLU(self.negative_slope)]
        self.trunk = nn.Sequential(*trunk)
        self.head = nn.Linear(hidden, outputs)
        #: every linear layer, trunk then head (the same modules, for functional forward passes)
        self.linear_layers: tuple[nn.Module, ...] = (*trunk[::2], self.head)

    def layer_input(self, states: torch.Tensor) -> torch.Tensor:
        """What the first linear layer reads: the features, or the indices of their ones."""
        return self.env.feature_indices(states) if self.one_hot_input else self.env.features(states)

    def first_linear(self, inputs: torch.Tensor) -> torch.Tensor:
        """The first linear layer (before its activation) of `layer_input`'s result."""
        first = self.linear_layers[0]
        if self.one_hot_input:
            return first(inputs)
        return F.linear(inputs, first.weight, first.bias)

    def heads(self, states: torch.Tensor) -> torch.Tensor:
        """Every head's outputs as one (B, n_forward + n_backward + n_flow) tensor."""
        # functional calls instead of nn.Sequential: the module-call overhead is comparable to the
        # matmuls themselves at the batch sizes of a rollout step
        x = F.leaky_relu(self.first_linear(self.layer_input(states)), self.negative_slope)
        for layer in self.linear_layers[1:-1]:
            x = F.leaky_relu(F.linear(x, layer.weight, layer.bias), self.negative_slope)
        return F.linear(x, self.head.weight, self.head.bias)

    def forward_logits(self, states: torch.Tensor) -> torch.Tensor:
        return self.heads(states)[:, :self.n_forward]

    def forward(self, states: torch.Tensor) -> PolicyOutput:
        return self.split(self.heads(states))

    def split(self, out: torch.Tensor) -> PolicyOutput:
        """The heads' joint output as a PolicyOutput (columns: forward, backward, flow)."""
        return split_heads(out, self.n_forward, self.n_backward, self.n_flow, self.env.n_actions)
