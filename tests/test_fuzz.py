"""Fuzzing the command line as a user meets it: whatever option values, config file or offline
CSV file a user hands to `gflownets train`, the command either trains (exit 0) or says what is
wrong in one `error: ...` line with a non-zero exit; it never raises or prints a traceback.

Every case is a tiny in-process run (`main([...])`, at most 3 iterations into a fresh folder)
and the examples are derandomized, so a failure reproduces on every machine. Sizes that only
decide how much memory or time a run takes (iterations, network width, environment size,
samples) are drawn small or invalid, never huge: huge sizes are the out-of-memory error that
tests/test_robustness.py checks on its own. 750 cases in all (400 command lines, 150 config
files, 150 offline files, 50 dag data files), about 20 s on one core.

Nothing is excluded: the fuzzer's first finds (seeds past int64, temperatures of 1e-183, mdb on
environments whose states are not all terminal, dag data collinear at 1e10) are refused now."""

from __future__ import annotations

import itertools
import shutil
import string
from typing import Any

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gflownets.cli import main

#: derandomized: the same examples on every run, so the suite is reproducible
FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

#: the environments fuzzed, and the options that keep them tiny unless a case overrides them
SMALL_ENV = {
    "hypergrid": {"ndim": 2, "height": 3},
    "sets": {"n_items": 4, "set_size": 2},
    "bitseq": {"length": 4, "token_bits": 2, "num_modes": 2},
}
#: training options that keep a run tiny unless a case overrides them
SMALL_RUN = {"iters": 2, "batch_size": 4, "hidden": 8, "layers": 1}

# ---------------------------------------------------------------------- values a user may type
SPECIAL = ["", " ", "nan", "-nan", "NaN", "inf", "-inf", "Infinity", "1e309", "-1e309", "-0", "0", "-1",
           "0x10", "1_000", "1e-320", "2.5", "true", "none", "null", "~", "[1, 2]", "{a: 1}", "-", "--quiet",
           "é", "\t1", "1 2", "9" * 30, "-" + "9" * 30]


def wild() -> st.SearchStrategy[str]:
    """Any value: integers and floats of every size and sign, nan and infinities, and text."""
    return st.one_of(
        st.sampled_from(SPECIAL),
        st.integers(min_value=-2**70, max_value=2**70).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.text(max_size=10),
    )


def mostly(plausible: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A plausible value three times in four, else a wild one: a case that fuzzes a few options
    still reaches training often, instead of stopping at the first bad value."""
    return st.integers(min_value=0, max_value=3).flatmap(lambda pick: wild() if pick == 0 else plausible)


def size(low: int, high: int) -> st.SearchStrategy[str]:
    """A size option: valid and small, or invalid (too small, fractional, not a number), never
    huge (that is a question of memory, not of validation)."""
    invalid = st.one_of(st.integers(min_value=-2**70, max_value=low - 1).map(str),
                        st.sampled_from(["2.5", "nan", "inf", "-inf", "", "x", "1e1", "0x2", "-0", "1_0"]),
                        st.text(max_size=4))
    valid = st.integers(min_value=low, max_value=high).map(str)
    return st.integers(min_value=0, max_value=3).flatmap(lambda pick: invalid if pick == 0 else valid)


def number(low: float, high: float) -> st.SearchStrategy[str]:
    """A float option: in [low, high] (the plausible range, edges included), or wild."""
    return mostly(st.one_of(st.floats(min_value=low, max_value=high).map(repr),
                            st.sampled_from([repr(low), repr(high)])))


def integer(low: int, high: int) -> st.SearchStrategy[str]:
    return mostly(st.integers(min_value=low, max_value=high).map(str))


def choice(*valid: str) -> st.SearchStrategy[str]:
    return mostly(st.sampled_from(valid))


def seed() -> st.SearchStrategy[str]:
    """A seed: in [0, 2^32) mostly, else negative, huge or not an integer at all."""
    wild_seeds = st.one_of(st.sampled_from(["2.5", "x", "", "nan", "inf", "1e3", "0x10", "-", "1 2"]),
                           st.integers(min_value=-2**70, max_value=2**70).map(str))
    return st.integers(min_value=0, max_value=3).flatmap(
        lambda pick: wild_seeds if pick == 0 else st.integers(min_value=0, max_value=2**32 - 1).map(str))


#: safe reward specs: none imports anything that acts (a failed import, a function whose
#: result is of the wrong kind, a user's function that works)
REWARDS = ["", ":", "nomodule:f", "math:pi", "math:sqrt", "builtins:len", "builtins:list", "json:dumps",
           "plugins.user_code:squares", "plugins.user_code:missing", "plugins.user_code", "a:b:c"]

RUN_OPTIONS: dict[str, st.SearchStrategy[str]] = {
    "objective": choice("tb", "db", "subtb", "fm", "mdb", "fldb", "vargrad"),
    "iters": size(0, 3),
    "batch_size": size(1, 8),
    "lr": number(1e-6, 1e3), "lr_logz": number(1e-6, 1e3),
    "exploration": number(0.0, 1.0), "temperature": number(1e-200, 1e3),
    "subtb_lambda": number(1e-3, 10.0),
    "target_decay": number(0.0, 0.999), "ema_decay": number(0.0, 0.999), "reward_floor": number(0.0, 1.0),
    "hidden": size(1, 16),
    "layers": size(1, 3),
    "policy": choice("mlp", "tabular"),
    "backward_policy": choice("learned", "uniform"),
    "replay_keep": choice("recent", "best"),
    "replay_size": size(0, 16),
    "replay_batch": size(0, 8),
    "local_search": size(0, 3),
    "mutations": size(0, 4),
    "epochs": size(0, 2),
    "seed": seed(),
    "eval_every": integer(0, 3), "log_every": integer(0, 3), "checkpoint_every": integer(0, 3),
    "eval_samples": size(0, 16),
    "final_samples": size(0, 16),
    "threads": size(0, 1),
    "device": mostly(st.sampled_from(["cpu", "cuda", "cuda:1", "mps", "meta", "xla", "cpu:0", "cpu:-1", "CPU",
                                      "cuda:" + "9" * 25, "gpu"])),
    "reward": st.sampled_from(REWARDS),
    "log_reward": st.sampled_from(REWARDS),
    # not fuzzed: --compile (a torch.compile takes seconds to minutes per case), --offline
    # (its files are fuzzed below), --reward-workers/--reward-timeout/--reward-cache (a pool of
    # processes per case is too slow for a fuzz case)
}
RUN_FLAGS = ["--exact", "--no-exact"]

ENV_OPTIONS: dict[str, dict[str, st.SearchStrategy[str]]] = {
    "hypergrid": {"ndim": size(1, 3), "height": size(2, 5), "r0": number(1e-6, 10.0), "r1": number(0.0, 10.0),
                  "r2": number(0.0, 10.0), "preset": choice("tutorial", "standard", "huge")},
    "sets": {"n_items": size(1, 6), "set_size": size(0, 6), "reward_seed": seed(),
             "beta": number(-10.0, 10.0), "preset": wild()},
    "bitseq": {"length": size(1, 8), "token_bits": size(1, 4), "num_modes": size(1, 6),
               "mode_seed": seed(), "beta": number(0.0, 300.0), "mode_threshold": integer(0, 8),
               "preset": choice("small", "paper")},
}
ENV_FLAGS = {"hypergrid": ["--r2-upper-inclusive", "--no-r2-upper-inclusive"], "sets": [],
             "bitseq": ["--prepend", "--no-prepend"]}


def option_args(options: dict[str, Any]) -> list[str]:
    return [arg for name, value in options.items() for arg in (f"--{name.replace('_', '-')}", str(value))]


@st.composite
def train_commands(draw: st.DrawFn) -> list[str]:
    """`train ENV` with a handful of fuzzed options over the tiny defaults (later options win)."""
    env = draw(st.sampled_from(sorted(SMALL_ENV)))
    pool = {**ENV_OPTIONS[env], **RUN_OPTIONS}
    names = draw(st.lists(st.sampled_from(sorted(pool)), min_size=1, max_size=5, unique=True))
    options = {name: draw(pool[name]) for name in names}
    flags = draw(st.lists(st.sampled_from(RUN_FLAGS + ENV_FLAGS[env]), max_size=2))
    return ["train", env, *option_args({**SMALL_ENV[env], **SMALL_RUN}), *option_args(options), *flags]


# ---------------------------------------------------------------------- running one case
@pytest.fixture
def runner(tmp_path, capsys, monkeypatch):
    """Run one command line in a fresh run folder and check the property; plots are skipped (a
    second per run, and not user input: tests/test_cli.py checks them)."""
    monkeypatch.setattr("gflownets.plotting.write_plots", lambda run, folder: [])
    monkeypatch.chdir(tmp_path)
    counter = itertools.count()

    def run(args: list[str]) -> int:
        out = tmp_path / f"run{next(counter)}"
        capsys.readouterr()
        threads = torch.get_num_threads()
        try:
            code = main([*args, "--quiet", "--out", str(out)])
        finally:
            torch.set_num_threads(threads)  # --threads must not slow the rest of the suite
            shutil.rmtree(out, ignore_errors=True)
        stdout, stderr = capsys.readouterr()
        assert "Traceback" not in stdout + stderr
        if code != 0:
            lines = stderr.strip().splitlines()
            errors = [line for line in lines if line.startswith("error: ")]
            assert len(errors) == 1 and lines[-1] == errors[0], (args, stderr)  # one line, and the last
        return code

    return run


@settings(FUZZ, max_examples=400)
@given(args=train_commands())
def test_fuzzed_train_options_train_or_give_one_error_line(runner, args):
    runner(args)


# ---------------------------------------------------------------------- config files
def yaml_value() -> st.SearchStrategy[Any]:
    """A Python value for a YAML dump: None, booleans, numbers of any size, text, lists, mappings."""
    scalar = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70), st.floats(),
                       st.text(max_size=8), st.sampled_from(SPECIAL))
    return st.one_of(scalar, st.lists(scalar, max_size=2), st.dictionaries(st.text(max_size=2), scalar, max_size=2))


@st.composite
def config_texts(draw: st.DrawFn, env: str) -> bytes:
    """A config file: `key: value` lines as a user types them (values as on the command line,
    typed by YAML's rules), a dump of keys and any values, or any text or bytes."""
    kind = draw(st.sampled_from(["lines", "lines", "lines", "dump", "text", "bytes", "yaml"]))
    if kind == "lines":
        options = {**RUN_OPTIONS, "env_args": st.just("x")}
        keys = draw(st.lists(st.sampled_from(sorted(options)), min_size=1, max_size=5, unique=True))
        values = {key: draw(options[key]) for key in keys if key != "env_args"}
        lines = [f"{key}: {value}" for key, value in values.items()]
        if "env_args" in keys:
            env_options = ENV_OPTIONS[env]
            args = draw(st.lists(st.sampled_from(sorted(env_options)), min_size=1, max_size=3, unique=True))
            lines += ["env_args:"] + [f"  {key}: {draw(env_options[key])}" for key in args]
        return "\n".join(lines).encode()
    if kind == "dump":
        keys = draw(st.lists(st.sampled_from(sorted({*RUN_OPTIONS, "env", "preset", "env_args", "offline",
                                                     "learning_rate"} - NOT_DUMPED)), max_size=4,
                                  unique=True))
        return yaml.safe_dump({key: draw(yaml_value()) for key in keys}, allow_unicode=draw(st.booleans())).encode()
    if kind == "text":
        return draw(st.text(max_size=60)).encode(draw(st.sampled_from(["utf-8", "utf-16", "latin-1"])),
                                                errors="replace")
    if kind == "bytes":
        return draw(st.binary(max_size=60))
    return draw(st.sampled_from([
        b"", b"---", b"~", b"[]", b"- 1", b"0", b"iters: [", b"{a: *b}", b"!!python/name:os.system",
        b"lr: !!binary aGk=", b"seed: 2020-01-01", b"? [1, 2]\n: 3", b"1: 2", b"\xef\xbb\xbfiters: 1",
        b"&a [*a]", b"[" * 2000 + b"]" * 2000, b"lr: .nan", b"seed: .inf", b"env_args: {ndim: 1e400}",
        b"env: sets", b"env_args: [1]", b"env_args:\n  heigth: 3", b"iters: 1\niters: 2", b"\tlr: 1"]))


#: options that a dump of any values must not set: the sizes (the command line keeps them tiny)
NOT_DUMPED = {"iters", "batch_size", "hidden", "layers", "replay_size", "replay_batch", "local_search", "mutations",
              "epochs", "eval_samples", "final_samples", "threads"}


@settings(FUZZ, max_examples=150)
@given(data=st.data(), env=st.sampled_from(sorted(SMALL_ENV)))
def test_fuzzed_config_files_train_or_give_one_error_line(runner, tmp_path, data, env):
    config = tmp_path / "config.yaml"
    content = data.draw(config_texts(env))
    config.write_bytes(content)
    # the tiny sizes on the command line (which wins over the file), except those the file
    # sets: its own values are fuzzed small
    small = {k: v for k, v in {**SMALL_ENV[env], **SMALL_RUN}.items() if f"{k}:".encode() not in content}
    runner(["train", env, "--config", str(config), *option_args(small)])


# ---------------------------------------------------------------------- offline data files
#: any CSV cell: huge, fractional, infinite, text, empty
ANY_CELL = st.one_of(st.sampled_from(SPECIAL), st.integers(min_value=-2**80, max_value=2**80).map(str),
                     st.floats().map(repr), st.text(alphabet=string.printable, max_size=4))
def cells(valid: st.SearchStrategy[str], anything: st.SearchStrategy[str] = ANY_CELL) -> st.SearchStrategy[str]:
    """A CSV cell: valid three times in four, else anything."""
    return st.integers(min_value=0, max_value=3).flatmap(lambda pick: anything if pick == 0 else valid)


@st.composite
def csv_texts(draw: st.DrawFn, columns: list[str], valid: st.SearchStrategy[str],
              anything: st.SearchStrategy[str] = ANY_CELL) -> bytes:
    """A data file for `columns`: half the time a well-formed table (the right header or none,
    log_reward or not), else a table with wrong headers, cells and row lengths, or any text or
    bytes."""
    kind = draw(st.integers(min_value=0, max_value=7))
    if kind == 0:
        return draw(st.text(max_size=80)).encode("utf-8", errors="replace")
    if kind == 1:
        return draw(st.binary(max_size=80))
    width = len(columns)
    log_reward = st.floats(-10, 0).map(repr)
    if kind >= 4:
        header = draw(st.sampled_from([columns, [*columns, "log_reward"], None]))
        with_log_reward = header is None and draw(st.booleans()) or header is not None and len(header) > width
        n_rows = draw(st.integers(min_value=1, max_value=5))
        rows = [[draw(valid) for _ in range(width)] + ([draw(log_reward)] if with_log_reward else [])
                for _ in range(n_rows)]
    else:
        header = draw(st.sampled_from([columns, [*columns, "log_reward"], None, columns[:-1], [*columns, "x9"],
                                       list(reversed(columns)), ["a", "b"], [""]]))
        lengths = st.integers(min_value=0, max_value=3).flatmap(
            lambda pick: st.integers(min_value=0, max_value=width + 2) if pick == 0 else st.just(width))
        rows = [[draw(cells(valid, anything)) for _ in range(draw(lengths))] + [draw(cells(log_reward, anything))]
                for _ in range(draw(st.integers(min_value=0, max_value=5)))]
    lines = ([",".join(header)] if header is not None else []) + [",".join(row) for row in rows]
    separator = draw(st.sampled_from(["\n", "\r\n"]))
    return (separator.join(lines) + separator).encode()


#: each environment's object columns and a valid cell (the sets' rows are checked too:
#: repeated items are refused)
OFFLINE_ENVS = {"hypergrid": (["x0", "x1"], st.integers(0, 2)), "sets": (["item0", "item1"], st.integers(0, 3)),
                "bitseq": (["b0", "b1", "b2", "b3"], st.integers(0, 1))}


@settings(FUZZ, max_examples=150)
@given(data=st.data(), env=st.sampled_from(sorted(OFFLINE_ENVS)))
def test_fuzzed_offline_files_train_or_give_one_error_line(runner, tmp_path, data, env):
    columns, valid = OFFLINE_ENVS[env]
    path = tmp_path / "data.csv"
    path.write_bytes(data.draw(csv_texts(columns, valid.map(str))))
    epochs = data.draw(st.sampled_from(["0", "1"]))
    runner(["train", env, *option_args({**SMALL_ENV[env], **SMALL_RUN}), "--offline", str(path),
            "--epochs", epochs])


@settings(FUZZ, max_examples=50)
@given(data=st.data(), score=st.sampled_from(["bge", "bde"]))
def test_fuzzed_dag_data_files_train_or_give_one_error_line(runner, tmp_path, data, score):
    path = tmp_path / "data.csv"
    valid = st.floats(-5, 5).map(repr) if score == "bge" else st.sampled_from(["a", "b", "0", "1"])
    path.write_bytes(data.draw(csv_texts(["A", "B", "C"], valid)))
    runner(["train", "dag", "--data", str(path), "--score", score, *option_args(SMALL_RUN)])
