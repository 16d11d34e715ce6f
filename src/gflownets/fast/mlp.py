"""The MLP's forward pass that keeps what its backward pass needs, and that backward pass as
plain matmuls: what lets the fast path differentiate trajectory balance without autograd."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from gflownets.policies.base import Policy, PolicyOutput
from gflownets.policies.mlp import MLPPolicy


def supports(policy: Policy) -> bool:
    """Policies whose gradients `parameter_gradients` computes: our MLP with its LeakyReLU trunk."""
    return type(policy) is MLPPolicy


def forward_keeping(policy: MLPPolicy, states: torch.Tensor) -> tuple[PolicyOutput, tuple[torch.Tensor, ...]]:
    """The policy's outputs, and each linear layer's input plus the heads' output: all that the
    backward pass needs (the sign of a LeakyReLU's output is the sign of its input)."""
    x = policy.layer_input(states)
    kept = [x]
    x = F.leaky_relu(policy.first_linear(x), policy.negative_slope)
    for layer in policy.linear_layers[1:-1]:
        kept.append(x)
        x = F.leaky_relu(F.linear(x, layer.weight, layer.bias), policy.negative_slope)
    kept.append(x)
    out = F.linear(x, policy.head.weight, policy.head.bias)
    return policy.split(out), (*kept, out)


def parameter_gradients(policy: MLPPolicy, kept: tuple[torch.Tensor, ...], rows: torch.Tensor,
                        d_forward_logits: torch.Tensor,
                        d_backward_logits: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
    """Gradients, with respect to every weight and bias, of sum over the kept `rows` of
    <d_forward_logits, forward logits> + <d_backward_logits, backward logits>."""
    heads = [d_forward_logits]  # in the head's column order, as `MLPPolicy.split` reads them
    if policy.n_backward:
        heads.append(d_backward_logits)
    if policy.n_flow:
        heads.append(d_forward_logits.new_zeros(len(rows), 1))
    layers = policy.linear_layers
    inputs = [t.index_select(0, rows) for t in kept[:len(layers)]]
    grad_weights, grad_biases = _backward(inputs, [layer.weight for layer in layers], torch.cat(heads, dim=1),
                                          policy.negative_slope)
    # a one-hot first layer's parameter is its weight's transpose (`OneHotLinear.rows`)
    return {parameter: grad for layer, grad_weight, grad_bias in zip(layers, grad_weights, grad_biases)
            for parameter, grad in ((getattr(layer, "rows", layer.weight), grad_weight), (layer.bias, grad_bias))}


def _backward(inputs: Sequence[torch.Tensor], weights: Sequence[torch.Tensor], grad: torch.Tensor,
              negative_slope: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The MLP's backward pass from each linear layer's input and the gradient of its output:
    (weight gradients, bias gradients), layer by layer; the matmuls autograd would run (two per
    layer but the first), in the same order."""
    n = len(weights)
    grad_weights: list[torch.Tensor] = [None] * n
    grad_biases: list[torch.Tensor] = [None] * n
    for i in reversed(range(n)):
        grad_weights[i] = _weight_gradient(grad, inputs[i], weights[i])
        grad_biases[i] = grad.sum(0)
        if i:  # through layer i's weights, then the LeakyReLU whose output was its input
            grad = torch.ops.aten.leaky_relu_backward(grad.mm(weights[i]), inputs[i], negative_slope, True)
    return grad_weights, grad_biases


def _weight_gradient(grad: torch.Tensor, inputs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """grad^T inputs; for the indices of one-hot inputs (`OneHotLinear`), the gradient of its
    transposed weight: each row's output gradient added to the weight rows of its ones."""
    if inputs.is_floating_point():
        return grad.t().mm(inputs)
    n, ones = inputs.shape
    rows = grad.new_zeros(weight.shape[1], weight.shape[0])
    return rows.index_add_(0, inputs.reshape(-1), grad[:, None, :].expand(n, ones, -1).reshape(n * ones, -1))
