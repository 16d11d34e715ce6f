"""Saved runs mean one thing: the same name trains the same method from Python and the CLI, a
run records how its reward was defined and is never silently scored with another, a failing
reward stops the run naming the object, and environments of the user's own reach the CLI."""

import json

import pytest
import torch

from gflownets import load_run
from cli_helpers import run_cli
from gflownets.envs import Hypergrid
from gflownets.errors import ConfigError, RewardError
from gflownets.training import RunConfig, Trainer
from plugins.user_code import fails_on_far_corner, squares

FAST = ["--iters", "20", "--batch-size", "8", "--hidden", "16", "--eval-every", "10", "--quiet"]


@pytest.mark.parametrize("env", ["dag", "ehrlich", "hypergrid"])
def test_python_and_the_cli_resolve_the_same_config(env, tmp_path, monkeypatch):
    """RunConfig applies the environment's recipe itself: RunConfig(env=NAME) is what
    `gflownets train NAME` trains, and what a config file naming only the env trains."""
    seen = []
    monkeypatch.setattr(Trainer, "run", lambda self: seen.append(self.config) or {})
    assert run_cli("train", env, "--quiet", "--out", tmp_path / "cli") == 0
    from_file = tmp_path / "run.yaml"
    from_file.write_text(f"env: {env}\n")
    assert run_cli("train", env, "--quiet", "--config", from_file, "--out", tmp_path / "file") == 0
    python = RunConfig(env=env)
    # the trainer settles what the config leaves open (the compiled or eager path) alike
    assert seen[0].to_dict() == Trainer(python, progress=False).config.to_dict() == seen[1].to_dict()
    if env == "dag":  # the recipe is applied: not RunConfig's own defaults
        assert python.objective == "mdb" and python.replay_size > 0
    # explicit values win over the recipe, in Python as on the command line
    assert RunConfig(env=env, objective="db").objective == "db"
    assert run_cli("train", env, "--objective", "db", "--quiet", "--out", tmp_path / "db") == 0
    assert seen[2].objective == "db"
    assert seen[2].to_dict() == Trainer(RunConfig(env=env, objective="db"), progress=False).config.to_dict()


def test_a_run_with_a_python_reward_is_refused_without_it_and_evaluated_with_it(tmp_path, capsys):
    env = Hypergrid(ndim=2, height=4, reward_fn=squares)
    out = tmp_path / "run"
    summary = Trainer(RunConfig(iters=30, batch_size=8, hidden=16, eval_every=0), out, env=env, progress=False).run()
    assert summary["reward"] == "reward plugins.user_code:squares"
    # the CLI never falls back to the environment's default reward
    assert run_cli("evaluate", out) == 1
    assert "trained with the reward function plugins.user_code:squares" in capsys.readouterr().err
    assert run_cli("sample", out, "-n", 5, "--out", tmp_path / "s.csv") == 1
    with pytest.raises(ConfigError, match="name it again with --reward"):
        load_run(out)
    # named again, it is evaluated with that reward: the exact target is R = 1 + x0^2 + x1^2
    capsys.readouterr()
    assert run_cli("evaluate", out, "--reward", "plugins.user_code:squares") == 0
    result = json.loads(capsys.readouterr().out)
    cells = torch.cartesian_prod(torch.arange(4), torch.arange(4))
    assert result["log_z_true"] == pytest.approx(float(squares(cells).sum().log()), rel=1e-12)
    assert result["l1"] == pytest.approx(summary["l1"], abs=1e-12)
    run = load_run(out, reward=squares)
    objects, log_rewards = run.sample(100, seed=1)
    assert torch.equal(log_rewards, squares(objects).log())


def test_an_unnamed_python_reward_can_only_be_given_again(tmp_path, capsys):
    env = Hypergrid(ndim=2, height=3, reward_fn=lambda x: 1.0 + x.sum(dim=1).double())
    out = tmp_path / "run"
    Trainer(RunConfig(iters=5, batch_size=4, hidden=8, eval_every=0), out, env=env, progress=False).run()
    assert run_cli("evaluate", out) == 1
    assert "<lambda>" in capsys.readouterr().err
    run = load_run(out, env=Hypergrid(ndim=2, height=3, reward_fn=lambda x: 1.0 + x.sum(dim=1).double()))
    assert run.step == 5


def test_a_reward_trained_from_the_cli_is_recorded_and_needed_again(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("train", "hypergrid", "--ndim", 2, "--height", 4, "--reward", "plugins.user_code:squares",
                   *FAST, "--out", out) == 0
    assert "reward: plugins.user_code:squares" in (out / "config.yaml").read_text()
    assert run_cli("evaluate", out) == 1
    assert run_cli("train", "hypergrid", "--resume", "--iters", "30", "--quiet", "--out", out) == 1
    assert "--reward plugins.user_code:squares" in capsys.readouterr().err
    assert run_cli("train", "hypergrid", "--resume", "--iters", "30", "--reward", "plugins.user_code:squares",
                   "--quiet", "--out", out) == 0
    assert json.loads((out / "summary.json").read_text())["iterations"] == 30


def test_a_reward_that_raises_on_one_rare_object_stops_the_run_naming_it(tmp_path):
    env = Hypergrid(ndim=2, height=6, reward_fn=fails_on_far_corner)
    with pytest.raises(RewardError, match=r"\[5, 5\].*no price"):
        Trainer(RunConfig(iters=5, batch_size=4, hidden=8), env=env, progress=False)
    assert run_cli("train", "hypergrid", "--ndim", 2, "--height", 6, "--reward",
                   "plugins.user_code:fails_on_far_corner", *FAST, "--out", tmp_path / "cli") == 1
    # where the user skips exact evaluation, training goes on until a sample hits the object
    summary = Trainer(RunConfig(iters=5, batch_size=4, hidden=8, exact=False, eval_every=0), env=env,
                      progress=False).run()
    assert "l1" not in summary


def test_a_custom_environment_trains_samples_and_evaluates_through_the_cli(tmp_path, capsys):
    out = tmp_path / "counter"
    spec = "plugins.user_code:Counter"
    assert run_cli("train", spec, "--length", 5, "--iters", 300, "--batch-size", 16, "--hidden", 32,
                   "--eval-every", 100, "--quiet", "--out", out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env"] == "counter" and summary["l1"] < 0.1, summary
    assert (out / "plots" / "distribution.png").is_file()
    assert f"env: {spec}" in (out / "config.yaml").read_text()
    # a run folder does not import the environment's module by itself: the user names it
    capsys.readouterr()
    assert run_cli("evaluate", out) == 1
    assert f"--env {spec}" in capsys.readouterr().err
    assert run_cli("evaluate", out, "--env", spec) == 0
    assert json.loads(capsys.readouterr().out)["l1"] == pytest.approx(summary["l1"], abs=1e-12)
    assert run_cli("sample", out, "-n", 20, "--env", spec, "--out", tmp_path / "c.csv") == 0
    rows = (tmp_path / "c.csv").read_text().splitlines()
    assert rows[0] == "x0,log_reward" and len(rows) == 21
    assert run_cli("train", spec, "--help") == 0 and "--length" in capsys.readouterr().out
    assert run_cli("train", "plugins.user_code:NoSuchEnv", "--out", tmp_path / "x") == 1
    assert "has no 'NoSuchEnv'" in capsys.readouterr().err
    assert run_cli("train", "plugins.user_code:squares", "--out", tmp_path / "x") == 1
    assert "not a gflownets.envs.DiscreteEnv subclass" in capsys.readouterr().err


def test_checkpoints_are_plain_data_and_a_pickle_payload_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    Trainer(RunConfig(iters=3, batch_size=4, hidden=8, eval_every=0), out, progress=False).run()
    torch.load(out / "checkpoint.pt", weights_only=True)  # plain tensors and data only

    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):  # unpickling would create the marker file
            return (open, (str(marker), "w"))

    state = torch.load(out / "checkpoint.pt", weights_only=True)
    torch.save({**state, "payload": Payload()}, out / "checkpoint.pt")
    assert run_cli("evaluate", out) == 1
    assert "holds more than tensors and plain data (io.open)" in capsys.readouterr().err
    assert run_cli("sample", out, "-n", 5, "--out", tmp_path / "s.csv") == 1
    assert run_cli("train", "hypergrid", "--iters", 5, "--quiet", "--out", out, "--resume") == 1
    assert not marker.exists() and not (tmp_path / "s.csv").exists()


def test_an_entry_point_registers_an_environment_by_name(tmp_path, monkeypatch, capsys):
    """Installed packages register environments under the entry-point group
    `gflownets.environments`; the CLI then lists and trains them by their short name."""
    from importlib.metadata import EntryPoint

    import gflownets.registry as registry

    point = EntryPoint(name="counter", value="plugins.user_code:Counter", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [point] if group == point.group else [])
    assert run_cli("train", "--help") == 0 and "counter" in capsys.readouterr().out
    out = tmp_path / "counter"
    assert run_cli("train", "counter", "--length", 3, *FAST, "--out", out) == 0
    assert "env: counter" in (out / "config.yaml").read_text()
    assert run_cli("evaluate", out) == 0


def test_a_run_loaded_with_an_unnamed_reward_keeps_saying_so(tmp_path):
    """Resuming with a lambda records the lambda (unnamed), never the default reward."""
    out = tmp_path / "run"
    Trainer(RunConfig(iters=4, batch_size=4, hidden=8, eval_every=0), out, progress=False).run()
    run = load_run(out, reward=lambda x: 1.0 + x.sum(dim=1).double())
    assert run.config.reward.startswith("python:") and "<lambda>" in run.config.reward


def test_a_run_folder_does_not_import_the_environment_module_it_names(tmp_path, monkeypatch, capsys):
    """A checkpoint edited to name a module next to the user's shell: `evaluate` refuses before
    importing anything (the module would announce itself by writing a file)."""
    out = tmp_path / "run"
    Trainer(RunConfig(iters=3, batch_size=4, hidden=8, eval_every=0), out, progress=False).run()
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["config"]["env"] = state["env"]["env"] = "planted_module:Env"
    torch.save(state, out / "checkpoint.pt")
    (tmp_path / "planted_module.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    assert run_cli("evaluate", out) == 1 and run_cli("sample", out, "--out", tmp_path / "x.csv") == 1
    assert "--env planted_module:Env" in capsys.readouterr().err
    assert not (tmp_path / "imported").exists()


def test_an_environment_class_that_cannot_be_imported_needs_its_instance(tmp_path):
    """A subclass defined in __main__ (a script, a notebook) is recorded as such, not as the
    built-in it derives from, and loading the run needs the instance again."""
    peaked = type("Peaked", (Hypergrid,), {"__module__": "__main__",
                                           "default_log_reward": lambda self, s: s.sum(dim=1).double() * 0.5})
    out = tmp_path / "run"
    summary = Trainer(RunConfig(iters=20, batch_size=8, hidden=16, eval_every=0), out, env=peaked(ndim=2, height=4),
                      progress=False).run()
    assert "python:__main__.Peaked" in (out / "config.yaml").read_text()
    with pytest.raises(ConfigError, match="Peaked.*pass the environment instance"):
        load_run(out)
    assert load_run(out, env=peaked(ndim=2, height=4)).evaluate()["log_z_true"] == summary["log_z_true"]


def test_the_reward_floor_is_recorded(tmp_path):
    def sparse(x):
        return (x.sum(dim=1) == 6).double()

    out = tmp_path / "run"
    env = Hypergrid(ndim=2, height=4, reward_fn=sparse, reward_floor=1e-3)
    summary = Trainer(RunConfig(iters=5, batch_size=4, hidden=8, eval_every=0), out, env=env, progress=False).run()
    assert "reward_floor: 0.001" in (out / "config.yaml").read_text()
    assert load_run(out, reward=sparse).evaluate()["log_z_true"] == pytest.approx(summary["log_z_true"], abs=1e-12)


def test_resume_may_switch_batch_sources_and_the_reward_kind(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("train", "hypergrid", "--ndim", 2, "--height", 4, "--replay-size", 30, "--replay-batch", 4,
                   *FAST, "--out", out) == 0
    for iters, extra in ((30, ["--replay-size", 8]), (40, ["--mutations", 3]),
                         (50, ["--replay-size", 0, "--replay-batch", 0])):
        assert run_cli("train", "hypergrid", "--resume", *map(str, extra), "--iters", iters, "--quiet",
                       "--out", out) == 0, (extra, capsys.readouterr().err)
        assert json.loads((out / "summary.json").read_text())["iterations"] == iters
    reward_run = tmp_path / "reward"
    assert run_cli("train", "hypergrid", "--ndim", 2, "--height", 4, "--reward", "plugins.user_code:squares",
                   *FAST, "--out", reward_run) == 0
    (tmp_path / "log_squares.py").write_text("def log_squares(x):\n    return (1.0 + x.double().pow(2).sum(dim=1)).log()\n")
    import sys
    sys.path.insert(0, str(tmp_path))
    try:
        assert run_cli("train", "hypergrid", "--resume", "--log-reward", "log_squares:log_squares", "--iters", 30,
                       "--quiet", "--out", reward_run) == 0, capsys.readouterr().err
    finally:
        sys.path.remove(str(tmp_path))
    assert "log_reward: log_squares:log_squares" in (reward_run / "config.yaml").read_text()


@pytest.mark.parametrize("text, match", [("seed: null\n", "seed must be of type int, got None"),
                                         ("iters: null\n", "iters must be of type int"),
                                         ("env_args: [1, 2]\n", "env_args must be a mapping")])
def test_config_file_values_of_the_wrong_kind_are_one_line_errors(tmp_path, capsys, text, match):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    assert run_cli("train", "hypergrid", "--config", path, "--quiet", "--out", tmp_path / "run") == 1
    assert match in capsys.readouterr().err


def test_config_refuses_what_it_could_not_record_or_would_ignore(tmp_path):
    with pytest.raises(ConfigError, match="reward is recorded in the run's files"):
        RunConfig(reward=squares).validate()
    data = tmp_path / "objects.csv"
    data.write_text("x0,x1\n1,2\n")
    with pytest.raises(ConfigError, match="replay does not apply to offline training"):
        RunConfig(offline=str(data), replay_size=10).validate()


def test_an_objective_registered_outside_the_package_is_accepted():
    from gflownets.objectives import OBJECTIVES, Objective, register, trajectory_balance

    @register
    class HalfTB(Objective):
        name = "half-tb"

        def loss(self, policy, batch):
            return 0.5 * trajectory_balance(policy, batch)

    try:
        summary = Trainer(RunConfig(objective="half-tb", iters=5, batch_size=4, hidden=8, eval_every=0),
                          progress=False).run()
        assert summary["objective"] == "half-tb"
    finally:
        del OBJECTIVES["half-tb"]


def test_compile_with_a_wrapped_source_still_compiles_before_the_clock():
    """The compiled sampler is found inside the replay wrapper: compiled before training, and its
    time reported as compile_seconds, not training time."""
    summary = Trainer(RunConfig(env_args=dict(ndim=2, height=3), iters=3, batch_size=4, hidden=8, eval_every=0,
                                compile=True, replay_size=8, replay_batch=2), progress=False).run()
    assert summary["compile_seconds"] > 0


def test_divergence_is_a_one_line_error_naming_the_step(tmp_path, capsys):
    """A learning rate far too high: the run stops with a TrainingError that names the step (no
    IndexError from sampling non-finite logits), and the CLI prints one line."""
    from gflownets.errors import TrainingError

    trainer = Trainer(RunConfig(lr=1e3, iters=50, eval_every=0), progress=False)
    with pytest.raises(TrainingError, match=r"(loss became|outputs stopped being finite).*step \d+"):
        trainer.run()
    assert run_cli("train", "hypergrid", "--lr", 1000, "--iters", 50, "--quiet", "--out", tmp_path / "x") == 1
    assert "training diverged" in capsys.readouterr().err
    assert run_cli("train", "hypergrid", "--r0", "inf", "--quiet", "--out", tmp_path / "y") == 1
    assert "r0 must be > 0 and finite" in capsys.readouterr().err
