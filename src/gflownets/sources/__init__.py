"""Batch sources: where each training batch of trajectories comes from. A source is a small
object with `sample(generator) -> Trajectories` and a checkpointable state; wrappers refine or
extend the batch of the source they wrap (local search, mutation chains, replay), so a new way
of producing trajectories is one more piece composed by `build_source`, not an edit of the loop."""

from gflownets.sources.base import BatchSource, OnPolicy, Observer
from gflownets.sources.build import build_source
from gflownets.sources.local_search import LocalSearch
from gflownets.sources.mutations import MutationChains
from gflownets.sources.offline import Offline
from gflownets.sources.replay import Replay

__all__ = ["BatchSource", "LocalSearch", "MutationChains", "Observer", "Offline", "OnPolicy", "Replay",
           "build_source"]
