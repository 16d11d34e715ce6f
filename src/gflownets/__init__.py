"""gflownets: train Generative Flow Networks that sample objects with probability proportional to a reward.

    from gflownets import RunConfig, Trainer, load_run
    Trainer(RunConfig(env="hypergrid", iters=2000), "runs/grid").run()
    objects, log_rewards = load_run("runs/grid").sample(1000)
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["RunConfig", "Trainer", "load_run"]


def __getattr__(name: str) -> Any:
    # imported on first use, so that `import gflownets.envs` does not load the training stack
    if name in __all__:
        from gflownets import training

        return getattr(training, name)
    raise AttributeError(f"module 'gflownets' has no attribute {name!r}")
