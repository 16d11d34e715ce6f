"""Size limits, checked before anything is allocated: a size that no run can hold is a one-line
ConfigError naming the limit and why, instead of a crash minutes and gigabytes later.

Two kinds of check: fixed caps on what no GFlowNet run needs (`require_at_most`, with the caps
below, each with its reason), and `require_memory`, which compares an estimate of the bytes a
structure needs with the total memory of the device it goes to (a size beyond that can never
work; the total, not what is free now, so that the check does not depend on other programs).
`check_run_memory` applies the second to a whole run before its policy is built. The limits
environments check themselves (`require_at_most`, MAX_POLICY_INPUTS) are in `gflownets.envs.limits`,
where the layering of the package lets them import it."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from gflownets.envs.limits import check_policy_inputs, require_at_most
from gflownets.errors import ConfigError

#: trajectories per iteration (batch_size, replay_batch, mutations): every rollout step holds that
#: many rows of states, masks, logits and features
MAX_BATCH = 1_000_000
#: width of the MLP: a hidden layer holds hidden^2 float32 weights (16384^2: 1 GiB, 4 GiB with the
#: gradients and Adam's two moments)
MAX_HIDDEN = 16_384
#: hidden layers of the MLP: a GFlowNet policy has a handful, and each adds a matrix product to
#: every step of every rollout
MAX_LAYERS = 1_000
#: samples measured at once (eval_samples, final_samples, `evaluate --samples`): the metrics hold
#: them all with their rewards (distinct objects and top-k need the whole set); `gflownets sample`
#: streams any number of objects to a file instead
MAX_SAMPLES = 10_000_000
#: capacity of the replay buffer (it grows as it fills, but a full one holds this many objects)
MAX_REPLAY = 100_000_000
#: torch threads: each is an OS thread, and torch's pool crashes far below 100000 of them
MAX_THREADS = 1024
#: why a sample count is capped (RunConfig's fields and `evaluate --samples`)
SAMPLES_WHY = ("the metrics hold every sample at once; `gflownets sample` streams any number of objects "
               "to a file")

#: RunConfig field -> (cap, why), checked by `check_run_sizes`
RUN_CAPS: dict[str, tuple[int, str]] = {
    "batch_size": (MAX_BATCH, "every rollout step holds a row per trajectory"),
    "replay_batch": (MAX_BATCH, "every replayed object is walked back to s0 in each iteration"),
    "mutations": (MAX_BATCH, "each chain keeps an object and proposes a move in each iteration"),
    "mutation_steps": (10_000, "each chain takes this many Metropolis steps, one reward call each, per iteration"),
    "hidden": (MAX_HIDDEN, "a hidden layer holds hidden^2 weights (1 GiB at the limit)"),
    "layers": (MAX_LAYERS, "each layer adds a matrix product to every step of every rollout"),
    "eval_samples": (MAX_SAMPLES, SAMPLES_WHY),
    "final_samples": (MAX_SAMPLES, SAMPLES_WHY),
    "replay_size": (MAX_REPLAY, "a full buffer holds every object and its reward"),
    "threads": (MAX_THREADS, "each is an OS thread; torch's pool crashes with far more"),
}


def check_run_sizes(config: Any) -> None:
    """The fixed caps of RUN_CAPS on a RunConfig's fields (before anything is built)."""
    for name, (limit, why) in RUN_CAPS.items():
        require_at_most(name, getattr(config, name), limit, why)


def device_memory(device: str | torch.device) -> int | None:
    """Total memory of `device` in bytes (the machine's RAM for the CPU); None where unknown."""
    device = torch.device(device)
    try:
        if device.type == "cuda":
            return int(torch.cuda.get_device_properties(device).total_memory)
        if device.type == "cpu":
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError, RuntimeError, AssertionError):
        return None
    return None


def format_bytes(n: float) -> str:
    """`n` bytes in binary units, to three significant digits ("40 GiB")."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    power = min(int(math.log(max(n, 1), 1024)), len(units) - 1)
    value = n / 1024 ** power
    return f"{value:.3g} {units[power]}" if value < 1000 else f"{value:.0f} {units[power]}"


def require_memory(what: str, n_bytes: float, device: str | torch.device, hint: str = "") -> None:
    """ConfigError when `what` would need more than the total memory of `device`."""
    total = device_memory(device)
    if total is not None and n_bytes > total:
        raise ConfigError(f"{what} would need {format_bytes(n_bytes)}, more than the {format_bytes(total)} of "
                          f"memory of {torch.device(device)}{'; ' + hint if hint else ''}")


def check_run_memory(config: Any, env: Any) -> None:
    """Refuse a run whose policy, training batch, replay buffer or sample metrics could not fit in
    the memory of its device, from the config's sizes and the environment's (state size, longest
    trajectory, features), before any of them is allocated. `config`: a RunConfig."""
    device = config.device
    state_bytes = _state_bytes(env)
    mlp = config.policy == "mlp"
    if mlp:
        check_policy_inputs(env.name, env.feature_dim)
        weights = mlp_weights(env.feature_dim, config.hidden, config.layers, 2 * env.n_actions)
        copies = 4 + (config.ema_decay > 0) + (config.target_decay > 0)  # weights, gradients, Adam's moments
        require_memory(f"an MLP of {weights} weights ({env.feature_dim} inputs, {config.layers} x {config.hidden} "
                       "hidden) with its gradients, Adam's moments and averages", 4 * weights * copies, device,
                       "lower hidden or layers")
    # a batch's states (padded to the longest trajectory), their features and the MLP's activations
    per_state = state_bytes + (4 * env.feature_dim + 8 * config.hidden * config.layers if mlp else 0)
    trajectories = config.batch_size + config.replay_batch + config.mutations
    require_memory(f"a training batch of {trajectories} trajectories of up to {env.max_steps} states",
                   trajectories * env.max_steps * per_state, device, "lower batch_size (or the environment's size)")
    require_memory(f"a full replay buffer of {config.replay_size} objects", config.replay_size * (state_bytes + 8),
                   device, "lower replay_size")
    check_samples(max(config.eval_samples, config.final_samples), env, device)


def mlp_weights(inputs: int, hidden: int, layers: int, outputs: int) -> int:
    """Weights and biases of an MLP of `layers` hidden layers of width `hidden` (MLPPolicy's shape)."""
    return (inputs + 1) * hidden + (layers - 1) * (hidden + 1) * hidden + (hidden + 1) * outputs


def check_samples(n: int, env: Any, device: str | torch.device) -> None:
    """The cap (MAX_SAMPLES) and the memory of `n` samples that the metrics measure at once."""
    require_at_most("samples", n, MAX_SAMPLES, SAMPLES_WHY)
    require_memory(f"{n} samples for the metrics", n * (_state_bytes(env) + 8), device, "measure fewer samples")


def _state_bytes(env: Any) -> int:
    """Bytes of one state of `env` (int64 entries)."""
    return 8 * math.prod(env.state_shape)


def require_disk_space(what: str, n_bytes: float, path: str | Path, hint: str = "") -> None:
    """ConfigError when writing `what` (at least `n_bytes`) at `path` would fill its disk."""
    folder = next((p for p in Path(path).absolute().parents if p.is_dir()), None)
    if folder is None:
        return
    free = shutil.disk_usage(folder).free
    if n_bytes > free:
        raise ConfigError(f"{what} would need at least {format_bytes(n_bytes)} of disk, more than the "
                          f"{format_bytes(free)} free in {folder}{'; ' + hint if hint else ''}")
