"""Training: the run configuration, the training loop, and the files of a run folder."""

from gflownets.training.config import RunConfig
from gflownets.training.run_files import load_checkpoint_file
from gflownets.training.trainer import Trainer, build_policy, load_run

__all__ = ["RunConfig", "Trainer", "build_policy", "load_checkpoint_file", "load_run"]
