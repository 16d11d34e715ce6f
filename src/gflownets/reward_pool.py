"""Costly user rewards: scored by a pool of worker processes (`RewardPool`) and/or remembered
per object (`CachedReward`). Both are callables with the signature of the user's function (a
CPU LongTensor of object rows in, one value per row out), so the environment's own checks and
error reports (`DiscreteEnv._call_user`, which names a failing object by bisection) apply to
them unchanged. `serve_reward` puts them in front of an environment's reward for a run.

Workers are started with `spawn` (not `fork`: a forked copy of a process that runs torch's
thread pools can deadlock) and import the user's function by its "module:function" name, or
unpickle it (a picklable callable object); they ignore SIGINT, so the main process alone decides
when a run stops. Their results travel as numpy arrays: a torch tensor would travel through
shared-memory file descriptors instead."""

from __future__ import annotations

import concurrent.futures as futures
import math
import multiprocessing
import os
import pickle
import signal
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
import torch

from gflownets.envs.base import DiscreteEnv
from gflownets.envs.indexing import _row_keys
from gflownets.errors import ConfigError, RewardError
from gflownets.registry import load_object, spec_of

#: how long a worker may take for one batch unless told otherwise (seconds)
DEFAULT_TIMEOUT = 600.0


def _as_array(result: Any) -> np.ndarray:
    """A reward function's result as a numpy array, its dtype kept (converted by torch.as_tensor,
    as the single-process path converts it)."""
    values = torch.as_tensor(result).detach()
    if values.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds it exactly
        values = values.float()
    return values.cpu().numpy()


def _values(result: Any, n_objects: int, name: str) -> np.ndarray:
    """`_as_array(result)`, refused unless it holds one value per object: values are put
    together by object, so a count that does not fit cannot be left to the env's check."""
    values = _as_array(result)
    if values.ndim == 0 or values.shape[0] != n_objects:
        got = 1 if values.ndim == 0 else values.shape[0]
        raise RewardError(f"reward function {name} returned {got} value(s) for {n_objects} objects "
                          "(it must return one value per object)")
    return values


class RewardPool:
    """`function` scored in `workers` processes: each batch is split into contiguous chunks, one
    per worker, and the values are put back in the batch's order. A batch that takes more than
    `timeout` seconds, or a worker that dies, is a RewardError and stops the workers; the next
    call starts new ones (as does a call after `close()`). An exception of the function is raised
    again as it is (its worker traceback as `__cause__`), so the caller handles it as it would
    in one process. Close it (`close()`, or use it as a context manager) to stop the workers;
    those of an unclosed pool stop when it is garbage-collected or the interpreter exits."""

    def __init__(self, function: Callable[[torch.Tensor], Any] | str, workers: int,
                 timeout: float = DEFAULT_TIMEOUT):
        if isinstance(function, str):
            function = load_object(function, "reward")
        if workers < 1:
            raise ConfigError(f"a reward pool needs workers >= 1, got {workers}")
        if not (math.isfinite(timeout) and timeout > 0):
            raise ConfigError(f"the reward timeout must be > 0 seconds, got {timeout}")
        spec = spec_of(function)
        self.__wrapped__ = function  # what a run records as its reward (inspect.unwrap)
        self.name = spec or getattr(function, "__qualname__", type(function).__name__)
        self.workers, self.timeout = workers, float(timeout)
        # what a worker loads: the name where one imports the function again, else its pickle
        self._payload: str | bytes = spec if spec is not None else self._pickled(function)
        self._threads = max(1, (os.cpu_count() or 1) // workers)  # N workers x all cores would oversubscribe
        self._executor: futures.ProcessPoolExecutor | None = None

    def _pickled(self, function: Any) -> bytes:
        try:
            return pickle.dumps(function)
        except Exception as err:  # noqa: BLE001 - pickling fails in many ways
            raise ConfigError(f"reward workers import the reward function by name (module:function) or unpickle "
                              f"it; {self.name} is neither (a lambda or a closure?): {err}") from None

    def __call__(self, objects: torch.Tensor | Sequence[str]) -> torch.Tensor:
        """The function's values of a batch: object rows (a tensor), or a list the function
        takes as it is (a molecule environment's SMILES)."""
        rows = objects.detach().cpu().numpy() if isinstance(objects, torch.Tensor) else list(objects)
        parts = np.array_split(np.arange(len(rows)), min(self.workers, len(rows))) if len(rows) else [[]]
        chunks = [rows[part[0]:part[-1] + 1] if len(part) else rows[:0] for part in parts]
        executor = self._started()
        processes: list[multiprocessing.process.BaseProcess] = []
        try:
            pending = [executor.submit(_score, chunk) for chunk in chunks]
            processes = _processes_of(executor)  # (kept: a broken pool may forget them)
            _, late = futures.wait(pending, timeout=self.timeout)
            values = [] if late else [_values(f.result(), len(c), self.name) for f, c in zip(pending, chunks)]
        except BrokenProcessPool:  # (also when a worker died between batches)
            processes = processes or _processes_of(executor)  # (before the shutdown forgets them)
            self._stop()  # the pool has stopped the other workers (SIGTERM); this waits for them all
            raise RewardError(f"a reward worker died ({_death_of(processes)}) while "
                              f"scoring a batch of {len(rows)} objects with {self.name} (first: {list(rows[:3]) if isinstance(rows, list) else rows[:3].tolist()}): "
                              "a crash in the reward function (a segfault, os._exit) or the process was killed "
                              "(out of memory?); new workers start with the next batch") from None
        except BaseException as error:
            if not isinstance(error, Exception):  # interrupted (Ctrl-C): nobody waits for this batch any more
                self._stop(kill=True)
            raise  # an error of the function: the caller reports it as in one process
        if late:
            self._stop(kill=True)
            raise RewardError(f"the reward workers took more than {self.timeout:g} s for a batch of {len(rows)} "
                              f"objects (reward function {self.name}): raise --reward-timeout (RunConfig."
                              "reward_timeout) if the reward is that slow")
        return torch.from_numpy(np.concatenate(values))

    def _started(self) -> futures.ProcessPoolExecutor:
        if self._executor is None:
            self._executor = futures.ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker, initargs=(self._payload, self._threads))
        return self._executor

    def _stop(self, kill: bool = False) -> None:
        """Shut the workers down; `kill`: at once, without waiting for the batch they score."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        if kill:
            for process in _processes_of(executor):
                process.kill()
        executor.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        """Stop the workers (a later call starts new ones)."""
        self._stop()

    def __enter__(self) -> RewardPool:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop(kill=exc_info[0] is not None)

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("a RewardPool is not sent to other processes; wrap the function there")


def _processes_of(executor: futures.ProcessPoolExecutor) -> list[multiprocessing.process.BaseProcess]:
    """The worker processes of `executor` (a private attribute, read where it exists: the public
    `kill_workers` came in Python 3.14)."""
    return list((getattr(executor, "_processes", None) or {}).values())


def _death_of(processes: list[multiprocessing.process.BaseProcess]) -> str:
    """How a worker died, from the exit codes of the pool's processes: the first that did not
    end by the SIGTERM with which the pool stops the others."""
    codes = [p.exitcode for p in processes if p.exitcode is not None]
    code = next((c for c in codes if c != -signal.SIGTERM), codes[0] if codes else None)
    if code is None:
        return "exit code unknown"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


#: a worker's state: what to load (`payload`) and, once loaded, the function
_worker: dict[str, Any] = {}


def _start_worker(payload: str | bytes, threads: int) -> None:
    """Initializer of a worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group
    torch.set_num_threads(threads)
    _worker["payload"] = payload


def _score(rows: np.ndarray | list[str]) -> np.ndarray:
    """A worker's task: the function on a chunk of object rows (or of a list), as the env would call it."""
    function = _worker.get("function")
    if function is None:
        payload = _worker["payload"]
        if isinstance(payload, str):
            function = load_object(payload, "reward")
        else:
            try:
                function = pickle.loads(payload)
            except Exception as err:  # noqa: BLE001
                raise RewardError(f"a reward worker cannot load the reward function: {type(err).__name__}: {err} "
                                  "(define it in a module that the workers can import)") from None
        _worker["function"] = function
    return _as_array(function(torch.from_numpy(rows) if isinstance(rows, np.ndarray) else rows))


class CachedReward:
    """`function` with an LRU memory of the values of the last `size` distinct objects (keyed by
    their rows' bytes): only objects it has not seen are scored, each once per batch. Sound for
    rewards that depend on the object alone (not on the rest of the batch, not random); the
    values are those the function gave, bit for bit. `hits` and `misses` count objects."""

    def __init__(self, function: Callable[[torch.Tensor], Any], size: int):
        if size < 1:
            raise ConfigError(f"a reward cache needs size >= 1, got {size}")
        self.__wrapped__ = function
        self.function, self.size = function, size
        self.name = getattr(function, "name", None) or spec_of(function) or getattr(function, "__qualname__", "?")
        self._values: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._values)

    def __call__(self, objects: torch.Tensor) -> torch.Tensor:
        rows = objects.detach().cpu().numpy()
        if len(rows) == 0:
            return self.function(objects)
        keys = [key.tobytes() for key in _row_keys(rows)]
        found: dict[bytes, np.ndarray] = {}
        missing: dict[bytes, int] = {}  # key -> its first row in the batch
        for i, key in enumerate(keys):
            if key in self._values:
                self._values.move_to_end(key)
                found[key] = self._values[key]
            elif key not in missing:
                missing[key] = i
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = _values(self.function(torch.from_numpy(rows[list(missing.values())])), len(missing), self.name)
            for key, value in zip(missing, fresh):
                found[key] = self._values[key] = value
            while len(self._values) > self.size:
                self._values.popitem(last=False)
        return torch.from_numpy(np.stack([found[key] for key in keys]))


def serve_reward(env: DiscreteEnv, workers: int, timeout: float = DEFAULT_TIMEOUT,
                 cache: int = 0) -> Callable[[], None]:
    """Score `env`'s user reward function in `workers` processes (0: in this one) and through a
    cache of `cache` objects (0: none), by putting them in front of it in place, so that every
    caller of `env.log_reward` gains. Returns the function that undoes it: it stops the workers
    and gives the environment its own function back. A function the user wrapped already (a
    RewardPool or CachedReward of their own) is left as it is. Without a user reward, the
    workers serve the environment's own costly scoring where it names one (`costly_reward`: a
    molecule environment's RDKit scores of SMILES, which it caches itself)."""
    user = env.log_reward_fn is not None or env.reward_fn is not None
    attribute = ("log_reward_fn" if env.log_reward_fn is not None else "reward_fn") if user else env.costly_reward
    original = getattr(env, attribute) if attribute is not None else None
    # (the environment's own scoring keeps its own cache)
    if original is None or not (workers or (cache and user)) or isinstance(original, (RewardPool, CachedReward)):
        return lambda: None
    pool = RewardPool(original, workers, timeout) if workers else None
    served = CachedReward(pool or original, cache) if cache and user else pool
    setattr(env, attribute, served)

    def release() -> None:
        if getattr(env, attribute) is served:
            setattr(env, attribute, original)
        if pool is not None:
            pool.close()

    return release
