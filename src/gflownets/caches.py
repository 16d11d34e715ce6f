"""Where the library keeps what it computes once and reuses across runs: one folder of the
user's own ($GFLOWNETS_CACHE, else $XDG_CACHE_HOME/gflownets, else ~/.cache/gflownets), for the
fragment-chain tables (plain arrays) and torch.compile's compiled rollouts."""

from __future__ import annotations

import os
from pathlib import Path


def cache_directory() -> Path:
    """The cache folder: $GFLOWNETS_CACHE, else $XDG_CACHE_HOME/gflownets, else ~/.cache/gflownets."""
    if os.environ.get("GFLOWNETS_CACHE"):
        return Path(os.environ["GFLOWNETS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gflownets"


def use_compile_cache() -> str:
    """Point torch.compile's on-disk cache (inductor's, read and written by torch itself) at
    `cache_directory() / "torch-compile"` unless $TORCHINDUCTOR_CACHE_DIR names one already;
    returns the folder in use. Torch's own default is /tmp/torchinductor_$USER: cleared at many
    reboots (then every compilation is cold again, 15-75 s here instead of 3-6) and in a folder
    any local user can create first. Takes effect for compilations after the first call."""
    return os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_directory() / "torch-compile"))
