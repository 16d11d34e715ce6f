"""Training: run configuration, the trainer loop, replay, checkpoints and run files."""

from gflownets.training.config import RunConfig
from gflownets.training.trainer import Trainer, build_policy, load_checkpoint_file

__all__ = ["RunConfig", "Trainer", "build_policy", "load_checkpoint_file"]
