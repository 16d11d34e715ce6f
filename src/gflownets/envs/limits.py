"""Size limits that environments check in their config's `validate` (or before building their
tables), so that a size no run can hold is a ConfigError naming the limit and why, before
anything is allocated. The run-level limits (batch, network, samples, memory) are in
`gflownets.limits`."""

from __future__ import annotations

from gflownets.errors import ConfigError

#: inputs of the policy (an environment's feature_dim): each state's features and the policy's first
#: layer (inputs x hidden weights) grow with it
MAX_POLICY_INPUTS = 1_000_000


#: seeds: what every random generator used here accepts (numpy's and torch's)
MAX_SEED = 2**32 - 1


def check_seed(name: str, value: int) -> None:
    if not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{name} must be in [0, {MAX_SEED}], got {value}")


def require_at_most(name: str, value: int, limit: int, why: str) -> None:
    """ConfigError unless value <= limit; the message names the limit and `why` it exists."""
    if value > limit:
        raise ConfigError(f"{name} must be <= {limit}, got {value}: {why}")


def check_policy_inputs(owner: str, inputs: int, detail: str = "") -> None:
    """ConfigError when a policy would take more than MAX_POLICY_INPUTS inputs (`detail`: how the
    count arises, e.g. "ndim * height one-hot features")."""
    if inputs > MAX_POLICY_INPUTS:
        detail = f" ({detail})" if detail else ""
        raise ConfigError(f"{owner}: {inputs} policy inputs{detail}, more than the limit of {MAX_POLICY_INPUTS}: "
                          "every state's features and the policy's first layer (inputs x hidden weights) "
                          "grow with it")
