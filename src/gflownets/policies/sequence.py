"""A convolutional policy for sequence environments (`sequence`, `bitseq`, `ehrlich`): what it
learns about a pattern at one place of a sequence it recognises at every other.

The one-hot MLP reads position i's token through weights of its own, so a motif it has learnt to
complete at positions 3-6 is new to it at 17-20. Here each token is embedded (with an "empty"
token for the unfilled places) plus a learned position code, `layers` residual blocks of 1-D
convolutions (kernel 3, dilation 1, 2, 4, ...: a receptive field of 2^(layers+1) - 1 places)
mix neighbours with weights shared across positions, and a readout sees the codes at the append
point (the last filled place) and at the first place (for prepending), and the max and mean over
the filled places; one MLP maps them to every head. The output layer starts at zero: the
untrained policy is uniform over the allowed actions.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from gflownets.envs.base import DiscreteEnv
from gflownets.envs.sequences import SequenceEnv
from gflownets.errors import ConfigError
from gflownets.policies.base import Policy, PolicyOutput, split_heads

#: the convolutions' kernel width: the code of place i sees places i - d, i, i + d
KERNEL, HALF = 3, 1


def check_sequence_env(env: DiscreteEnv) -> None:
    """A ConfigError unless `env` is an unconditional `SequenceEnv` (what the config checks by class)."""
    if not isinstance(env, SequenceEnv) or env.conditional:
        raise ConfigError(f"the conv policy reads unconditional sequence environments (sequence, bitseq, ehrlich); "
                          f"{env.name} is not one: use --policy mlp")


class ConvSequencePolicy(Policy):
    """Embeddings, residual dilated convolutions and a pooled readout (see the module)."""

    def __init__(self, env: DiscreteEnv, hidden: int = 64, layers: int = 3, backward: str = "learned",
                 state_flow: bool = True):
        super().__init__(env, backward)
        check_sequence_env(env)
        if hidden < 1 or layers < 1:
            raise ValueError(f"hidden and layers must be >= 1, got {hidden} and {layers}")
        self.n_forward = env.n_actions
        self.n_backward = env.n_actions - 1 if backward == "learned" else 0
        self.n_flow = 1 if state_flow else 0
        device = env.device
        self.embed = nn.Embedding(env.vocab_size + 1, hidden, device=device)  # row 0: an empty place
        self.position = nn.Parameter(0.02 * torch.randn(env.max_length, hidden, device=device))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden, device=device) for _ in range(layers))
        #: each block's dilation d (zeros beyond the ends)
        self.dilations = [min(2 ** i, env.max_length) for i in range(layers)]
        # a convolution as one matmul over the shifted copies side by side: at these sizes
        # faster than Conv1d (~1.5x on a batch's states, 2x on a rollout step's few)
        self.convs = nn.ModuleList(nn.Linear(KERNEL * hidden, hidden, device=device) for _ in range(layers))
        self.readout = nn.Sequential(nn.Linear(4 * hidden, hidden, device=device), nn.LeakyReLU(0.01),
                                     nn.Linear(hidden, self.n_forward + self.n_backward + self.n_flow, device=device))
        nn.init.zeros_(self.readout[-1].weight)
        nn.init.zeros_(self.readout[-1].bias)

    def codes(self, states: torch.Tensor) -> torch.Tensor:
        """(B, 4 hidden): the readout's input."""
        filled = states >= 0
        x = self.embed(states + 1) + self.position  # (B, L, hidden)
        length = x.shape[1]
        for norm, conv, d in zip(self.norms, self.convs, self.dilations):
            padded = F.pad(norm(x), (0, 0, HALF * d, HALF * d))
            shifted = torch.cat([padded[:, k * d:k * d + length] for k in range(KERNEL)], dim=2)
            x = x + F.leaky_relu(conv(shifted), 0.01)
        n = filled.sum(dim=1)
        rows = torch.arange(len(states), device=states.device)
        last = x[rows, (n - 1).clamp(min=0)]  # the append point (place 0 of an empty sequence)
        inside = filled[:, :, None]
        largest = torch.where(inside, x, torch.finfo(x.dtype).min).amax(dim=1)
        largest = torch.where((n > 0)[:, None], largest, 0.0)  # an empty sequence has no filled place
        mean = (x * inside).sum(dim=1) / n.clamp(min=1)[:, None]
        return torch.cat([last, x[:, 0], largest, mean], dim=1)

    def forward(self, states: torch.Tensor) -> PolicyOutput:
        return split_heads(self.readout(self.codes(states)), self.n_forward, self.n_backward, self.n_flow,
                           self.env.n_actions)
