"""Launched by torchrun in tests/test_distributed.py: train through the Python API inside the
process group, then write this rank's parameters (plain tensors) for the test to compare."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from gflownets.training import RunConfig, Trainer, distributed


def main(out: str, options: str, resume: bool) -> None:
    distributed.start("cpu")
    rank = distributed.current_ranks().rank
    options = json.loads(options)
    if options.pop("draw_on_rank1", False) and rank == 1:
        _draw_while_building_the_environment()
    config = RunConfig(**options)
    try:
        trainer = Trainer(config, out, progress=False, resume=resume)
        trainer.run()
        torch.save(trainer.policy.state_dict(), f"{out}/rank{rank}.pt")
        Path(f"{out}/step{rank}.json").write_text(json.dumps(
            {"closed_form": trainer.gradient_step != trainer.autograd_step, "compiled": trainer.config.compile}))
    except BaseException:
        distributed.stop()  # no barrier: the other rank may never arrive
        raise
    # as the CLI ends a run: every rank done before any tears down its transport (a rank that
    # leaves while the other still talks to it gets gloo's SIGABRT)
    distributed.stop(wait_for_all=True)
    # the group is really gone once stopped: gloo threads still running would be torn down
    # during interpreter exit, where a rank was seen to abort
    Path(f"{out}/threads{rank}.json").write_text(json.dumps(_thread_names()))


def _draw_while_building_the_environment() -> None:
    """As a user's environment that draws random numbers on one rank only: the global torch
    stream moves on between the trainer's seeding and the policy's initialisation."""
    build_env = RunConfig.build_env

    def drawing(self, *args, **kwargs):
        torch.rand(7)
        return build_env(self, *args, **kwargs)
    RunConfig.build_env = drawing


def _thread_names() -> list[str]:
    tasks = Path("/proc/self/task")
    return [(task / "comm").read_text().strip() for task in tasks.iterdir()] if tasks.is_dir() else []


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], resume=sys.argv[3:] == ["--resume"])
