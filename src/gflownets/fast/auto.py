"""Which path a run takes when it does not say (`RunConfig.compile` None): the compiled rollout
where it can run and repay its compilation, else the eager one. The choice depends on the
configuration and the machine's toolchain only, never on what is cached, so that a run with the
same config samples the same random stream everywhere (the paths draw their numbers differently);
the trainer records the choice in the run's config, so a resumed run keeps it."""

from __future__ import annotations

import os
import shutil

import torch

from gflownets.envs.base import DiscreteEnv

#: iterations from which `compile` None compiles. Measured on a 2-core CPU (bench/NOTES.md): a
#: compilation takes 15-60 s cold and 3-6 s once torch's cache holds it, and saves 2-6 ms per
#: iteration (hypergrid, bit sequences, DAGs); from 5000 iterations a cached compilation repays
#: itself several times over and a cold one costs at most ~20 s once
AUTO_COMPILE_ITERS = 5000


def choose_path(config, env: DiscreteEnv, iterations: int | None = None) -> tuple[bool, str]:
    """(compile?, a line that says which path runs and why) for `config.compile` None, for a run
    of `iterations` (default `config.iters`)."""
    iterations = config.iters if iterations is None else iterations
    force = "--compile to force it"
    if config.offline is not None:
        return False, "eager path: offline training has no rollout to compile"
    if env.conditional:
        return False, ("eager path: a conditional run's loss goes through autograd (log Z depends on the context), "
                       f"where the compiled rollout gained nothing measurable (bench/NOTES.md); {force}")
    if config.policy == "graph":
        return False, ("eager path: the graph policy runs slower compiled than eager (bench/NOTES.md); "
                       f"{force}")
    if not env.compilable:
        return False, f"eager path: {env.name} has no compilable rollout (DiscreteEnv.compilable)"
    if iterations < AUTO_COMPILE_ITERS:
        return False, (f"eager path: {iterations} iterations (< {AUTO_COMPILE_ITERS}) would not repay a "
                       f"compilation; {force}")
    missing = _missing_toolchain(env.device)
    if missing:
        return False, f"eager path: {missing}; {force}"
    return True, (f"fast path: the {env.name} rollout compiled with torch.compile (a minute at most the first "
                  "time, seconds once cached); --no-compile for the eager path")


def _missing_toolchain(device: torch.device) -> str | None:
    """What torch.compile would lack on this device, or None."""
    if torch.device(device).type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "torch.compile needs triton on CUDA, which is not installed"
    compilers = [os.environ.get("CXX", "g++"), "c++", "clang++"]
    if any(shutil.which(name) for name in compilers):
        return None
    return "no C++ compiler (g++, c++, clang++ or $CXX) for torch.compile"
