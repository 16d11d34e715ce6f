"""gflownets: train Generative Flow Networks that sample objects with probability proportional to a reward."""

__version__ = "0.1.0"
