"""Shared fixtures: small environments whose state spaces can be enumerated exactly."""

import pytest
import torch

from gflownets.envs import Hypergrid, Sets


def small_envs():
    return [
        Hypergrid(ndim=2, height=4),
        Hypergrid(ndim=3, height=3, r0=0.01),
        Hypergrid(ndim=1, height=5),
        Sets(n_items=5, set_size=3),
        Sets(n_items=4, set_size=1),
    ]


@pytest.fixture(params=small_envs(), ids=lambda e: f"{e.name}-{'-'.join(map(str, vars(e.config).values()))}")
def small_env(request):
    return request.param


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(1234)
