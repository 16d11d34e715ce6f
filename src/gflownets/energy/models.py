"""Energy models over binary vectors x in {0, 1}^D (float tensors of shape (B, D)): E(x) is the
negative unnormalised log-probability, p(x) = exp(-E(x)) / Z. Both are plain `nn.Module`s
returning (B,) energies, so any other module with that signature trains the same way."""

from __future__ import annotations

import torch
from torch import nn

from gflownets.errors import ConfigError

#: data-mean probabilities of the base distribution are kept this far from 0 and 1
BASE_PROB_MARGIN = 1e-3


class MLPEnergy(nn.Module):
    """E(x) = -f(2x - 1) - log B(x), f an MLP with SiLU activations (`layers` hidden layers of
    width `hidden`) and B an optional factorised Bernoulli base distribution, usually the data
    mean per bit (the reference EB-GFN model's "mean" term): the network then only learns the
    correlations the independent-bits model misses, which speeds up training a lot."""

    def __init__(self, dim: int, hidden: int = 256, layers: int = 3, base_probs: torch.Tensor | None = None):
        super().__init__()
        if dim < 1 or hidden < 1 or layers < 1:
            raise ConfigError(f"dim, hidden and layers must be >= 1, got {dim}, {hidden} and {layers}")
        widths = [dim] + [hidden] * layers
        blocks: list[nn.Module] = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            blocks += [nn.Linear(fan_in, fan_out), nn.SiLU()]
        self.net = nn.Sequential(*blocks, nn.Linear(hidden, 1))
        self.dim = dim
        if base_probs is None:
            base_logits = torch.zeros(dim)
        else:
            base_probs = torch.as_tensor(base_probs, dtype=torch.float32).clamp(BASE_PROB_MARGIN, 1 - BASE_PROB_MARGIN)
            if base_probs.shape != (dim,):
                raise ConfigError(f"base_probs must have shape ({dim},), got {tuple(base_probs.shape)}")
            base_logits = base_probs.logit()
        self.register_buffer("base_logits", base_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        # log B(x) up to a constant: sum_i x_i * logit(p_i) (constants cancel in every use)
        base = x @ self.base_logits
        return -(self.net(2 * x - 1).squeeze(-1) + base)


class IsingEnergy(nn.Module):
    """E(x) = -(s^T J s + h^T s), s = 2x - 1, with a learned symmetric J of zero diagonal (and a
    learned field h if `field`): the model family of the Ising data (`datasets.ising`), so the
    learned couplings can be compared with the true ones (`coupling_rmse`)."""

    def __init__(self, dim: int, field: bool = False):
        super().__init__()
        if dim < 2:
            raise ConfigError(f"an Ising model needs dim >= 2, got {dim}")
        self.dim = dim
        self.weight = nn.Parameter(torch.zeros(dim, dim))
        self.field = nn.Parameter(torch.zeros(dim)) if field else None

    @property
    def couplings(self) -> torch.Tensor:
        """(D, D) the symmetric J the energy uses."""
        upper = torch.triu(self.weight, diagonal=1)
        return upper + upper.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = 2 * x.float() - 1
        energy = -((s @ self.couplings) * s).sum(-1)
        if self.field is not None:
            energy = energy - s @ self.field
        return energy
