"""Objects of the user's own code named as "module:name", imported with the working directory on
the path (as `python -m` would find a file next to the command line); a leaf module, so that
every layer that takes such names (registry, chemistry) shares one loader."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from gflownets.errors import ConfigError


def load_object(spec: str, what: str) -> Any:
    """The object named by "module:attribute" (dots allowed in both parts)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"{what} {spec!r}: expected module:name, e.g. my_rewards:score")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"{what} {spec!r}: cannot import module {module_name!r} ({err})") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"{what} {spec!r}: module {module_name!r} has no {attribute!r}")
        target = getattr(target, part)
    return target
