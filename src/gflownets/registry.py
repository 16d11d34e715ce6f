"""Names of things a run can be built from: environments (built-in, registered by installed
packages under the entry-point group `gflownets.environments`, or any class as "module:Class")
and reward functions ("module:function"). Specs are imported with the working directory on the
path, so a file next to the user's command line is found as it would be by `python -m`."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from gflownets.envs import ENVIRONMENTS, DiscreteEnv
from gflownets.errors import ConfigError
from gflownets.user_code import load_object

#: the entry-point group under which other packages register environment classes
ENTRY_POINT_GROUP = "gflownets.environments"
#: the prefix of a record of a class or function that no "module:name" reaches again (defined in
#: __main__, a notebook, a lambda): using the run again needs the object itself
UNNAMED = "python:"


def spec_of(obj: Any) -> str | None:
    """"module:qualname" when that names `obj` again from another process, else None (a lambda,
    a closure, something defined in __main__ or a notebook)."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    try:
        found = load_object(f"{module}:{qualname}", "object")
    except ConfigError:
        return None
    return f"{module}:{qualname}" if found is obj else None


def registered_environments() -> dict[str, type[DiscreteEnv]]:
    """Built-in environments, then those of installed packages' entry points (by their names)."""
    found = dict(ENVIRONMENTS)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in found:
            found[entry.name] = entry
    return found


def environment_class(name: str) -> type[DiscreteEnv]:
    """The environment class for a registered name or a "module:Class" spec."""
    if name.startswith(UNNAMED):
        raise ConfigError(f"the environment {name[len(UNNAMED):]} was a class that cannot be imported by name "
                          "(defined in __main__ or a notebook); pass the environment instance (env=...)")
    if ":" in name:
        cls = load_object(name, "environment")
    else:
        known = registered_environments()
        if name not in known:
            raise ConfigError(f"unknown environment {name!r}; choose from {sorted(known)} "
                              "or name a class as module:Class")
        cls = known[name]
        if not isinstance(cls, type):  # an entry point, loaded only when used
            try:
                cls = cls.load()
            except Exception as err:  # noqa: BLE001 - a broken plug-in gets one clear line
                raise ConfigError(f"environment {name!r} (entry point {cls.value}) failed to load: {err}") from None
    if not (isinstance(cls, type) and issubclass(cls, DiscreteEnv)):
        raise ConfigError(f"environment {name!r} is not a gflownets.envs.DiscreteEnv subclass")
    return cls


def environment_name(env: DiscreteEnv) -> str:
    """What a config records for an environment instance: its registered name where that names
    its class, else "module:Class", else (a class defined in __main__) an UNNAMED marker."""
    cls = type(env)
    registered = registered_environments().get(env.name)
    if registered is cls or (registered is not None and not isinstance(registered, type)):
        return env.name  # (an entry point: the installed package's class)
    return spec_of(cls) or f"{UNNAMED}{cls.__module__}.{cls.__qualname__}"


def is_named_by_user_code(name: str) -> bool:
    """Whether an environment name points at code outside the installed packages ("module:Class"
    or an unnamed class): a run folder that records one does not import it by itself."""
    return ":" in name
