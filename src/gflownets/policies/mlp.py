"""The default policy: an MLP over `env.features` with forward, backward and state-flow heads."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from gflownets.envs.base import DiscreteEnv
from gflownets.policies.base import Policy, PolicyOutput


#: the slope of the trunk's LeakyReLU for negative inputs
NEGATIVE_SLOPE = 0.01


class MLPPolicy(Policy):
    """A shared trunk of `layers` hidden layers of width `hidden`, then one linear layer
    that emits every head at once (one matmul instead of three)."""

    def __init__(self, env: DiscreteEnv, hidden: int = 256, layers: int = 2,
                 backward: str = "learned", state_flow: bool = True):
        super().__init__(env, backward)
        if hidden < 1 or layers < 1:
            raise ValueError(f"hidden and layers must be >= 1, got {hidden} and {layers}")
        widths = [env.feature_dim] + [hidden] * layers
        trunk: list[nn.Module] = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            trunk += [nn.Linear(fan_in, fan_out), nn.LeakyReLU(NEGATIVE_SLOPE)]
        self.trunk = nn.Sequential(*trunk)
        self._hidden_layers = tuple(trunk[::2])  # the same modules, for the functional forward
        self.n_forward = env.n_actions
        self.n_backward = env.n_actions - 1 if backward == "learned" else 0
        self.n_flow = 1 if state_flow else 0
        self.head = nn.Linear(hidden, self.n_forward + self.n_backward + self.n_flow)

    def _heads(self, states: torch.Tensor, inputs: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Every head's outputs; with `inputs`, the input of each linear layer is appended to it."""
        # functional calls instead of nn.Sequential: the module-call overhead is comparable to the
        # matmuls themselves at the batch sizes of a rollout step
        x = self.env.features(states)
        for layer in self._hidden_layers:
            if inputs is not None:
                inputs.append(x)
            x = F.leaky_relu(F.linear(x, layer.weight, layer.bias), NEGATIVE_SLOPE)
        if inputs is not None:
            inputs.append(x)
        return F.linear(x, self.head.weight, self.head.bias)

    def _linear_layers(self) -> tuple[nn.Linear, ...]:
        return (*self._hidden_layers, self.head)

    def forward_logits(self, states: torch.Tensor) -> torch.Tensor:
        return self._heads(states)[:, :self.n_forward]

    def rollout_outputs(self, states: torch.Tensor) -> tuple[PolicyOutput, tuple[torch.Tensor, ...]]:
        """Keeps each linear layer's input and the heads' output: all that the backward pass
        needs (the sign of a LeakyReLU's output is the sign of its input)."""
        inputs: list[torch.Tensor] = []
        out = self._heads(states, inputs)
        return self._split(out), (*inputs, out)

    def replay(self, kept: tuple[torch.Tensor, ...], rows: torch.Tensor) -> PolicyOutput:
        layers = self._linear_layers()
        out = _ReplayedMLP.apply(rows, *kept, *(layer.weight for layer in layers), *(layer.bias for layer in layers))
        return self._split(out)

    def replay_gradients(self, kept: tuple[torch.Tensor, ...], rows: torch.Tensor, d_forward_logits: torch.Tensor,
                         d_backward_logits: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
        heads = [d_forward_logits]  # in the head's column order, as `_split` reads them
        if self.n_backward:
            heads.append(d_backward_logits)
        if self.n_flow:
            heads.append(d_forward_logits.new_zeros(len(rows), 1))
        layers = self._linear_layers()
        inputs = [t.index_select(0, rows) for t in kept[:len(layers)]]
        grad_weights, grad_biases = _mlp_backward(inputs, [layer.weight for layer in layers], torch.cat(heads, dim=1))
        return {parameter: grad for layer, grad_weight, grad_bias in zip(layers, grad_weights, grad_biases)
                for parameter, grad in ((layer.weight, grad_weight), (layer.bias, grad_bias))}

    def forward(self, states: torch.Tensor) -> PolicyOutput:
        return self._split(self._heads(states))

    def _split(self, out: torch.Tensor) -> PolicyOutput:
        forward_logits = out[:, :self.n_forward]
        if self.n_backward:
            backward_logits = out[:, self.n_forward:self.n_forward + self.n_backward]
        else:
            backward_logits = out.new_zeros(out.shape[0], self.env.n_actions - 1)
        log_flow = out[:, -1] if self.n_flow else out.new_zeros(out.shape[0])
        return PolicyOutput(forward_logits, backward_logits, log_flow)


class _ReplayedMLP(torch.autograd.Function):
    """The MLP's output on rows whose forward pass has already run (in a rollout, without
    autograd), with the MLP's gradient: the forward pass only selects the kept rows, the
    backward pass is the usual one from the kept layer inputs. It runs the same matmuls
    autograd would (two per layer but the first), so `tests/test_compiled.py` checks it
    against autograd on the network itself.

    Arguments: the rows to select, then per linear layer its kept input, then the kept output,
    then the layers' weights and biases."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor, *tensors: torch.Tensor) -> torch.Tensor:
        n = (len(tensors) - 1) // 3
        kept, weights = tensors[:n + 1], tensors[n + 1:2 * n + 1]
        selected = [t.index_select(0, rows) for t in kept]
        ctx.save_for_backward(*selected[:n], *weights)
        return selected[n]

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        saved = ctx.saved_tensors
        n = len(saved) // 2
        grad_weights, grad_biases = _mlp_backward(saved[:n], saved[n:], grad)
        return (None, *[None] * (n + 1), *grad_weights, *grad_biases)


def _mlp_backward(inputs: Sequence[torch.Tensor], weights: Sequence[torch.Tensor],
                  grad: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The MLP's backward pass from each linear layer's input and the gradient of its output:
    (weight gradients, bias gradients), layer by layer; the matmuls autograd would run (two per
    layer but the first)."""
    n = len(weights)
    grad_weights: list[torch.Tensor] = [None] * n
    grad_biases: list[torch.Tensor] = [None] * n
    for i in reversed(range(n)):
        grad_weights[i] = grad.t().mm(inputs[i])
        grad_biases[i] = grad.sum(0)
        if i:  # through layer i's weights, then the LeakyReLU whose output was its input
            grad = torch.ops.aten.leaky_relu_backward(grad.mm(weights[i]), inputs[i], NEGATIVE_SLOPE, True)
    return grad_weights, grad_biases
