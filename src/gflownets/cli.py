"""The `gflownets` command: train, sample and evaluate. `train` has one sub-command per
environment, whose options are generated from the environment's config dataclass: built-in
environments, those that installed packages register under the entry-point group
`gflownets.environments`, and any class named as `gflownets train module:Class`."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any

import click
import torch
from tqdm import tqdm

from gflownets.datasets import DENSITIES
from gflownets.energy.run import SAMPLERS
from gflownets.errors import CheckpointError, ConfigError, GFlowNetError
from gflownets.registry import environment_class, registered_environments
from gflownets.textfiles import read_text
from gflownets.training import RunConfig, Trainer, distributed, load_checkpoint_file, load_run
from gflownets.training.config import CHOICES
from gflownets.evaluation.evaluator import SAMPLE_CHUNK
from gflownets.limits import require_disk_space
from gflownets.training.io import json_safe, write_objects_csv_chunks

#: `estimate` shows a progress bar (on stderr) for more forward trajectories than this
ESTIMATE_BAR = 50_000
#: other spellings users know an option by
ALIASES = {"exploration": ["--epsilon", "--gamma"]}
#: RunConfig fields that are not options of `train` (set from the command's structure)
NOT_OPTIONS = {"env", "env_args"}
#: bool fields whose None default means "decided per run" (`--compile`, `--no-compile`, or neither)
TRI_STATE_FLAGS = {"compile"}


def _option_for(field: dataclasses.Field, prefix: str = "",
                shown_defaults: dict[str, Any] | None = None) -> click.Option:
    """A click option for a dataclass field, defaulting to None so that only values given on
    the command line override the config file or preset. `shown_defaults` overrides the
    default named in the help (an environment's `run_defaults`)."""
    name = field.name.replace("_", "-")
    help_text = field.metadata.get("help", "")
    default = field.default if field.default is not dataclasses.MISSING else None
    if shown_defaults and field.name in shown_defaults:
        default = shown_defaults[field.name]
    if default is not None:
        help_text += f"  [default: {default}]"
    if isinstance(field.default, bool) or field.name in TRI_STATE_FLAGS:
        return click.Option([f"--{name}/--no-{name}", field.name], default=None, help=help_text)
    kind: Any = {int: int, float: float}.get(type(default), str)
    if field.name in CHOICES:
        kind = click.Choice(CHOICES[field.name])
    names = [f"--{name}", *ALIASES.get(field.name, []), field.name]
    return click.Option(names, type=kind, default=None, help=help_text)


def _explicit(ctx: click.Context, names: list[str]) -> dict[str, Any]:
    return {name: ctx.params[name] for name in names
            if ctx.params.get(name) is not None
            and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}


def _make_train_command(env_name: str) -> click.Command:
    env_cls = environment_class(env_name)
    run_fields = [f for f in dataclasses.fields(RunConfig) if f.name not in NOT_OPTIONS]
    env_fields = list(dataclasses.fields(env_cls.Config))
    clash = {f.name for f in run_fields} & {f.name for f in env_fields}
    if clash:
        raise ConfigError(f"{env_name}: environment options clash with training options: {sorted(clash)}")
    params = [_option_for(f) for f in env_fields]
    params += [_option_for(f, shown_defaults=env_cls.run_defaults) for f in run_fields]
    params += [
        click.Option(["--out", "out"], type=click.Path(file_okay=False), required=True,
                     help="run folder: config.yaml, metrics.jsonl, summary.json, checkpoint.pt, plots/"),
        click.Option(["--config", "config_file"], type=click.Path(dir_okay=False),
                     help="YAML file of options (command-line options override it)"),
        click.Option(["--resume"], is_flag=True, help="continue the run in --out from its checkpoint"),
        click.Option(["--overwrite"], is_flag=True, help="replace the run that --out already holds"),
        _ACCEPT_CHANGED_DATA,
        click.Option(["--quiet"], is_flag=True, help="no progress bar and no summary on stdout"),
    ]

    @click.pass_context
    def command(ctx: click.Context, out: str, config_file: str | None, resume: bool, overwrite: bool,
                accept_changed_data: bool, quiet: bool, **_: Any) -> None:
        if not out.strip():
            raise click.BadParameter("must name a folder, not an empty string", param_hint="--out")
        out_dir = Path(out)
        checkpoint = None
        if resume:
            if not (out_dir / "checkpoint.pt").is_file():
                raise CheckpointError(f"--resume: no checkpoint.pt in {out_dir}")
            checkpoint = load_checkpoint_file(out_dir / "checkpoint.pt")["config"]
        config = RunConfig.resolve(env_name, file=config_file, checkpoint=checkpoint,
                                   options=_explicit(ctx, [f.name for f in run_fields]),
                                   env_options=_explicit(ctx, [f.name for f in env_fields]))
        config = dataclasses.replace(config, device=distributed.start(config.device))  # torchrun: join the group
        main_rank = distributed.current_ranks().is_main
        quiet = quiet or not main_rank
        try:
            trainer = Trainer(config, out_dir, progress=not quiet, resume=resume, overwrite=overwrite,
                              accept_changed_data=accept_changed_data)
            if checkpoint is not None and main_rank:  # the checkpoint fits: say what changes, even --quiet
                _echo_changes(checkpoint, config.to_dict())
            summary = trainer.run()
            distributed.stop(wait_for_all=True)
        finally:
            distributed.stop()
        if not quiet:
            summary.pop("env_args", None)
            click.echo(json.dumps(json_safe(summary), indent=2, allow_nan=False))

    return click.Command(env_name, params=params, callback=command,
                         help=(env_cls.__doc__ or "").strip().splitlines()[0] if env_cls.__doc__ else None,
                         short_help=f"train on {env_name}")


_ACCEPT_CHANGED_DATA = click.Option(
    ["--accept-changed-data"], is_flag=True,
    help="go on although a data file of the run (--offline, an environment's --data) changed since its checkpoint")


def _echo_changes(saved: dict[str, Any], now: dict[str, Any]) -> None:
    """Say which settings a resumed run changes (they apply from the next iteration)."""
    changed = [f"{key} {saved.get(key)!r} -> {value!r}" for key, value in now.items()
               if key != "env_args" and saved.get(key) != value]
    if changed:
        click.echo("resuming with changed settings, applied from the next iteration: " + ", ".join(changed), err=True)


class _TrainGroup(click.Group):
    """`train NAME`: a registered environment, or `train module:Class` for any environment class."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(registered_environments())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in registered_environments() or ":" in name:
            return _make_train_command(name)
        return None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gflownets")
def cli() -> None:
    """Train Generative Flow Networks, sample from them and measure them against the target."""


@cli.group(cls=_TrainGroup)
def train() -> None:
    """Train a GFlowNet on an environment (see each environment's --help); `train module:Class`
    trains your own DiscreteEnv subclass."""


_run_options = [
    click.option("--reward", "reward", help="module:function giving the rewards of the run's reward "
                 "function (required for runs trained with a Python reward function)"),
    click.option("--log-reward", "log_reward", help="module:function giving log-rewards, instead of --reward"),
    click.option("--env", "env", help="module:Class of the run's environment (required for runs on an "
                 "environment class of your own: a run folder does not import code by itself)"),
    click.option("--device", "device", help="load the run on this device (default: where it was trained)"),
    click.option("--accept-changed-data", is_flag=True, help=_ACCEPT_CHANGED_DATA.help),
]


def _with_run_options(command):
    for option in reversed(_run_options):
        command = option(command)
    return command


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("-n", "n", type=click.IntRange(min=1), default=1000, show_default=True, help="objects to draw")
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="CSV file to write")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--exploration", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="mix the policy with uniform actions (to make exploratory data sets)")
@click.option("--beta", type=float, help="a run trained with --condition beta: sample at this temperature "
              "(any value in its --beta-range)")
@click.option("--preference", help="a run trained with --condition preference: sample with these weights, "
              "W0,W1,... summing to 1")
@_with_run_options
def sample(run_dir: str, n: int, out: str, seed: int, exploration: float, beta: float | None,
           preference: str | None, reward: str | None, log_reward: str | None, env: str | None, device: str | None,
           accept_changed_data: bool) -> None:
    """Draw N finished objects from a trained run; one per row with its log_reward. They are
    drawn and written a chunk at a time (memory does not grow with N), into a temporary file that
    replaces --out once complete; the rows are those of Trainer.sample(N, seed). A conditional
    run samples at the context --beta or --preference names (its log_reward is that context's)."""
    trainer = load_run(run_dir, reward=reward, log_reward=log_reward, env=env, device=device,
                       accept_changed_data=accept_changed_data)
    context = _context_option(trainer.env, beta, preference)
    # a row is at least one digit and a separator per column, and a log_reward such as "0.0" and CRLF
    require_disk_space(f"-n {n} rows", n * (2 * len(trainer.env.object_columns) + 5), out, "draw fewer objects")
    chunks = trainer.sample_chunks(n, seed=seed, exploration=exploration, chunk=SAMPLE_CHUNK, context=context)
    with tqdm(total=n, unit="objects", unit_scale=True, desc="sampling", disable=n <= SAMPLE_CHUNK,
              dynamic_ncols=True) as bar:
        write_objects_csv_chunks(out, trainer.env, chunks, progress=bar.update)
    click.echo(f"wrote {n} objects to {out}")


def _context_option(env: Any, beta: float | None, preference: str | None) -> list[float] | None:
    """The context that --beta / --preference name, checked against the run's condition."""
    condition = getattr(env, "condition", None)
    given = "--beta" if beta is not None else "--preference" if preference is not None else None
    if given is None:
        if condition is not None:
            raise ConfigError(f"this run is conditioned on {condition.kind}: name the context to sample at with "
                              f"--{'beta' if condition.kind == 'beta' else 'preference'}")
        return None
    if beta is not None and preference is not None:
        raise ConfigError("give --beta or --preference, not both")
    wanted = "beta" if beta is not None else "preference"
    if condition is None or condition.kind != wanted:
        trained = "unconditional" if condition is None else f"conditioned on {condition.kind}"
        raise ConfigError(f"{given} samples a run trained with --condition {wanted}; this run is {trained}")
    if beta is not None:
        return [beta]
    try:
        return [float(v) for v in preference.split(",")]
    except ValueError:
        raise ConfigError(f"--preference must be comma-separated weights, got {preference!r}") from None


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--samples", type=click.IntRange(min=0), default=0, show_default=True,
              help="also measure the metrics on this many samples")
@_with_run_options
def evaluate(run_dir: str, samples: int, reward: str | None, log_reward: str | None, env: str | None,
             device: str | None, accept_changed_data: bool) -> None:
    """Recompute a run's metrics from its checkpoint and print them as JSON."""
    trainer = load_run(run_dir, reward=reward, log_reward=log_reward, env=env, device=device,
                       accept_changed_data=accept_changed_data)
    result = {"env": trainer.env.name, "objective": trainer.config.objective,
              "reward": trainer.config.reward_description(), "iterations": trainer.step,
              **trainer.evaluate(samples)}
    click.echo(json.dumps(json_safe(result), indent=2, allow_nan=False))


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("-n", "n", type=click.IntRange(min=2), default=10_000, show_default=True,
              help="forward trajectories (ELBO, IW-ELBO, entropy, --event) and target draws (EUBO)")
@click.option("--k", "k", type=click.IntRange(min=1), default=10, show_default=True,
              help="samples per importance-weighted ELBO (n // k groups)")
@click.option("--trajectories", type=click.IntRange(min=1), default=10, show_default=True,
              help="backward trajectories per object for each log p(x) (entropy, --objects)")
@click.option("--objects", "objects_file", type=click.Path(dir_okay=False, exists=True),
              help="CSV of objects (as `sample` writes them): their log p(x), and the EUBO where the "
              "environment is too large to draw from the target exactly")
@click.option("--event", "events", multiple=True,
              help="COLUMN=VALUE (COLUMN of the objects' CSV rows, or * for any column): estimate the "
              "probability of objects with it (repeatable)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
              show_default=True, help="level of the confidence intervals")
@click.option("--out", "out", type=click.Path(dir_okay=False), help="also write the JSON to this file")
@click.option("--beta", type=float, help="a run trained with --condition beta: estimate at this temperature")
@click.option("--preference", help="a run trained with --condition preference: estimate at these weights")
@_with_run_options
def estimate(run_dir: str, n: int, k: int, trajectories: int, objects_file: str | None, events: tuple[str, ...],
             seed: int, confidence: float, out: str | None, beta: float | None, preference: str | None,
             reward: str | None, log_reward: str | None, env: str | None, device: str | None,
             accept_changed_data: bool) -> None:
    """Estimate log Z (learned, ELBO, IW-ELBO, EUBO), the entropy of the learned distribution,
    marginals and log p(x), each with a confidence interval and the exact value where the
    environment is enumerable; print them as JSON. A conditional run is estimated at the context
    --beta or --preference names."""
    from gflownets.evaluation.estimators import estimate_all
    from gflownets.evaluation.exact import try_state_graph
    from gflownets.training.io import atomic_write_text, read_objects_csv

    if k > n:
        raise ConfigError(f"--k {k} is more than -n {n}: the IW-ELBO needs at least one group of k samples")
    trainer = load_run(run_dir, reward=reward, log_reward=log_reward, env=env, device=device,
                       accept_changed_data=accept_changed_data)
    context = _context_option(trainer.env, beta, preference)
    run_env = trainer.env_at(context)
    objects = read_objects_csv(objects_file, run_env) if objects_file else None
    graph = trainer.graph if trainer.graph is not None else try_state_graph(run_env)
    policy = trainer.eval_policy
    learned_log_z = (trainer.objective.log_z_at(policy, run_env.initial_states(1)) if run_env.conditional
                     else trainer.objective.log_z(policy))
    generator = torch.Generator(device=trainer.device).manual_seed(seed)
    with tqdm(total=n, unit="trajectories", unit_scale=True, desc="estimating", disable=n <= ESTIMATE_BAR,
              dynamic_ncols=True) as bar:
        estimates = estimate_all(run_env, policy, n, k, trajectories, generator, confidence, graph,
                                 learned_log_z, objects, events, progress=bar.update)
    result = {"env": trainer.env.name, "objective": trainer.config.objective, "iterations": trainer.step,
              **({"context": context} if context is not None else {}),
              "samples": n, "confidence": confidence, **estimates}
    text = json.dumps(json_safe(result), indent=2, allow_nan=False)
    if out:
        atomic_write_text(out, text + "\n")
    click.echo(text)


@cli.command()
@click.option("--density", type=click.Choice(sorted(DENSITIES)), help="a 2-D toy density as 32-bit Gray codes")
@click.option("--ising", "ising_side", type=click.IntRange(2, 4),
              help="exact samples of a periodic SIDE x SIDE Ising lattice (J = sigma * adjacency)")
@click.option("--data", "data_file", type=click.Path(dir_okay=False, exists=True),
              help="a CSV of bits (columns b0..b{D-1}, 0/1), as `sample` writes for the bits environment")
@click.option("--sigma", type=float, default=0.2, show_default=True, help="Ising coupling strength")
@click.option("--sampler", type=click.Choice(SAMPLERS), default="eb-gfn", show_default=True,
              help="the negative sampler: the GFlowNet with back-and-forth MH, or PCD Gibbs / GWG chains")
@click.option("--iters", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="energy learning rate [default: 0.01 "
              "for --ising, else 1e-3]")
@click.option("--hidden", type=click.IntRange(min=1), default=256, show_default=True, help="GFlowNet width")
@click.option("--layers", type=click.IntRange(min=1), default=2, show_default=True, help="GFlowNet hidden layers")
@click.option("--steps", type=click.IntRange(min=1), help="chain steps per iteration for gibbs/gwg [default: "
              "EB-GFN's energy cost]")
@click.option("--n-data", type=click.IntRange(min=4), default=None, help="training points drawn for --density "
              "(20000) or --ising (2000)")
@click.option("--samples", "n_samples", type=click.IntRange(min=2), default=4000, show_default=True,
              help="samples drawn at the end (MMD, samples.csv, the plot)")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--out", "out", help="run folder [default: runs/energy-DATA-SAMPLER]")
@click.option("--k-warmup", type=click.IntRange(min=1), help="eb-gfn: iterations over which the back-and-forth "
              "K grows from 1 to D [default: half of --iters]")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=500, show_default=True,
              help="iterations between checkpoints (the whole training state, written atomically)")
@click.option("--resume", is_flag=True, help="continue the run in --out from its checkpoint (same settings; "
              "--iters may grow)")
@click.option("--overwrite", is_flag=True, help="replace an energy run already in --out")
@click.option("--quiet", is_flag=True, help="no progress bar")
def energy(density: str | None, ising_side: int | None, data_file: str | None, sigma: float, sampler: str,
           iters: int, batch_size: int, lr: float | None, hidden: int, layers: int, steps: int | None,
           n_data: int | None, n_samples: int, seed: int, out: str | None, k_warmup: int | None, checkpoint_every: int, resume: bool,
           overwrite: bool, quiet: bool) -> None:
    """Learn an energy model of binary data with a GFlowNet as its sampler (EB-GFN, Zhang et al.
    2022), or with Gibbs / Gibbs-with-gradients chains; write the run folder and print the
    held-out NLL, the MMD of samples to held-out data (and for Ising the couplings' RMSE and the
    exact KL) as JSON."""
    from gflownets.energy.run import density_data, ising_data, read_bits_csv, split_data, train_and_write
    from gflownets.energy.training import EnergyTraining

    if sum(x is not None for x in (density, ising_side, data_file)) != 1:
        raise ConfigError("give exactly one of --density, --ising and --data")
    if out == "":
        raise ConfigError("--out must name a folder")
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite replaces it: give one")
    if density:
        data = density_data(density, n_data or 20_000, n_samples, seed=seed)
    elif ising_side:
        data = ising_data(ising_side, sigma, n_data or 2000, n_samples, seed=seed)
    else:
        data = split_data(Path(data_file).stem, read_bits_csv(data_file), seed=seed)
    config = EnergyTraining(iters=iters, batch_size=batch_size, lr=lr or (0.01 if ising_side else 1e-3), seed=seed,
                            progress=not quiet)
    folder = Path(out) if out else Path("runs") / f"energy-{data.name}-{sampler}"
    summary = train_and_write(data, sampler, config, folder, hidden=hidden, layers=layers, steps=steps,
                              n_samples=n_samples, overwrite=overwrite, resume=resume,
                              checkpoint_every=checkpoint_every, k_warmup=k_warmup)
    click.echo(json.dumps(json_safe({"out": str(folder), **summary}), indent=2, allow_nan=False))


@cli.command("compare")
@click.argument("env_name")
@click.option("--set", "env_options", multiple=True, metavar="KEY=VALUE",
              help="an option of the environment (repeatable): --set ndim=4 --set height=8")
@click.option("--methods", default="gfn,mcmc,random", show_default=True,
              help="comma-separated: gfn (the GFlowNet), mcmc (Metropolis chains), random (uniform rollouts), "
                   "ppo (reward-maximising RL), soft-q (maximum-entropy RL), mcts (tree search read by its visits)")
@click.option("--budget", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="reward calls each method may spend")
@click.option("--every", type=click.IntRange(min=1), help="reward calls between points [default: budget / 20]")
@click.option("--window", type=click.IntRange(min=1), default=200_000, show_default=True,
              help="the last N visited objects whose empirical distribution is compared with the target")
@click.option("--chains", type=click.IntRange(min=1), default=16, show_default=True, help="MCMC chains")
@click.option("--top-k", type=click.IntRange(min=1), default=100, show_default=True,
              help="report the mean reward and diversity of the k best distinct objects found")
@click.option("--objective", type=click.Choice(sorted(CHOICES["objective"])), default="tb", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="trajectories per GFlowNet iteration and rollouts per random step")
@click.option("--hidden", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--out", "out", required=True, help="folder for comparison.json, comparison.csv/.md and plots")
def compare_command(env_name: str, env_options: tuple[str, ...], methods: str, budget: int, every: int | None,
                    window: int, chains: int, top_k: int, objective: str, batch_size: int, hidden: int, seed: int,
                    out: str) -> None:
    """A GFlowNet and the baselines (MCMC, random search, PPO, soft Q-learning, MCTS) on the same
    reward, at equal reward calls: the L1 between each method's last visited objects and the
    exact target, the exact L1 of what each learning method samples, modes found and the top-k
    reward and diversity, against reward calls (enumerable environments)."""
    from gflownets.comparison import write_comparison

    config = RunConfig.resolve(env_name, options={"objective": objective, "batch_size": batch_size, "hidden": hidden,
                                                  "seed": seed, "eval_every": 0, "iters": 10**9},
                               env_options=_key_values(env_options, "--set"))
    config.validate()
    summary = write_comparison(config, [m.strip() for m in methods.split(",") if m.strip()], budget,
                               every or max(1, budget // 20), window, chains, Path(out), top_k)
    click.echo(summary)


def _key_values(items: tuple[str, ...], flag: str) -> dict[str, str]:
    """`KEY=VALUE` items as a mapping (dashes in keys read as underscores)."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} takes KEY=VALUE, got {item!r}")
        options[key.strip().replace("-", "_")] = value.strip()
    return options


@cli.command("active")
@click.argument("env_name")
@click.option("--set", "env_options", multiple=True, metavar="KEY=VALUE",
              help="an option of the environment (repeatable): --set num_states=8 --set dim=8")
@click.option("--proposers", default="gfn,mcmc,random", show_default=True,
              help="comma-separated: gfn (a GFlowNet) and baselines (mcmc, random, ...), each searching the "
                   "acquisition reward with the same number of proxy calls")
@click.option("--rounds", type=int, default=5, show_default=True, help="rounds of fit proxy, search, query oracle")
@click.option("--batch", type=int, default=16, show_default=True, help="new objects labelled by the oracle per round")
@click.option("--initial", type=int, default=0, show_default=True,
              help="uniform random objects labelled before the first round (0: --batch)")
@click.option("--iters", type=int, default=200, show_default=True, help="GFlowNet training iterations per round")
@click.option("--samples", type=int, default=256, show_default=True,
              help="objects the GFlowNet draws after each round's training")
@click.option("--kappa", type=float, default=1.0, show_default=True, help="UCB: mean + kappa * std of the ensemble")
@click.option("--beta", type=float, default=10.0, show_default=True,
              help="acquisition reward exp(beta * UCB), in the units of the oracle's score")
@click.option("--top-k", "top_k", type=int, default=10, show_default=True, help="k of the top-k metrics")
@click.option("--mode-threshold", type=float, default=None,
              help="a mode is a labelled object of oracle score >= this [default: the environment's own modes]")
@click.option("--gfn", "gfn_options", multiple=True, metavar="KEY=VALUE",
              help="a training option of the GFlowNet proposer (repeatable; its objective is vargrad unless "
                   "--gfn objective=tb ...): --gfn lr=0.01 --gfn exploration=0.1")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--out", "out", required=True,
              help="folder for active.json, active.csv, active.md, labelled.csv and plots/top_k.png")
@click.option("--quiet", is_flag=True, help="no line per round on stderr")
def active_command(env_name: str, env_options: tuple[str, ...], proposers: str, rounds: int, batch: int, initial: int,
                   iters: int, samples: int, kappa: float, beta: float, top_k: int, mode_threshold: float | None,
                   gfn_options: tuple[str, ...], seed: int, out: str, quiet: bool) -> None:
    """Active learning: rounds of fitting a proxy (an ensemble of MLPs) to the oracle's labelled
    objects, searching its UCB acquisition with each proposer, and labelling the best new batch;
    prints the top-k oracle score, diversity and modes found per proposer and round."""
    from gflownets.active import ActiveConfig, write_active

    if not out.strip():
        raise ConfigError("--out must name a folder")
    config = RunConfig.resolve(env_name, env_options=_key_values(env_options, "--set"))
    config.validate()
    settings = ActiveConfig(proposers=tuple(p.strip() for p in proposers.split(",") if p.strip()), rounds=rounds,
                            batch=batch, initial=initial, iters=iters, samples=samples, kappa=kappa, beta=beta,
                            top_k=top_k, mode_threshold=mode_threshold,
                            gfn_options=_key_values(gfn_options, "--gfn"), seed=seed)
    settings.validate()
    log = None if quiet else (lambda line: click.echo(line, err=True))
    click.echo(write_active(config.build_env(), settings, Path(out), log=log))


REPORT_COLUMNS = ("env", "objective", "iterations", "seconds", "l1", "l1_samples", "jsd", "log_z",
                  "log_z_true", "modes_found", "modes_found_samples", "n_modes")


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
def report(run_dirs: tuple[str, ...]) -> None:
    """Print the summary.json of several runs side by side."""
    rows = []
    for run_dir in run_dirs:
        path = Path(run_dir) / "summary.json"
        if not path.is_file():
            raise CheckpointError(f"no summary.json in {run_dir}")
        summary = _read_summary(path)
        rows.append([run_dir] + [_cell(summary.get(key)) for key in REPORT_COLUMNS])
    header = ["run", *REPORT_COLUMNS]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths))))


def _read_summary(path: Path) -> dict[str, Any]:
    """A run's summary.json as a mapping; a CheckpointError naming the file if it is not one
    (a run folder copied half-way, edited by hand, or written by another program)."""
    text = read_text(path, CheckpointError, "summary file")
    try:
        summary = json.loads(text)
    except ValueError as err:  # JSONDecodeError
        raise CheckpointError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(summary, dict):
        raise CheckpointError(f"{path} must hold a JSON object of metrics, not {type(summary).__name__}")
    return summary


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _one_line(text: str) -> str:
    """An error message as the one line the CLI promises (a YAML parser's or a user's message
    may span several)."""
    return " ".join(text.split())


def _os_error_text(err: OSError) -> str:
    """What failed on which file, as `mkdir` or `cp` would say it."""
    files = " -> ".join(str(f) for f in (err.filename, err.filename2) if f is not None)
    reason = err.strerror or _one_line(str(err)) or type(err).__name__
    return f"{files}: {reason}" if files else reason


def _out_of_memory_text(err: BaseException) -> str | None:
    """The message for an allocation that failed (Python's MemoryError, torch's CPU allocator's
    or CUDA's out-of-memory RuntimeError), naming the sizes to reduce; None for other errors."""
    if not (isinstance(err, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in str(err)):
        return None
    asked = re.search(r"allocate (\d+) bytes", str(err))
    size = f" (an allocation of {int(asked.group(1)) / 2**30:.3g} GiB)" if asked else ""
    return (f"out of memory{size}: reduce --batch-size, --hidden or --layers, the environment's size, or the "
            "samples drawn (--eval-samples, --final-samples, sample -n)")


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one `error: ...` line and a non-zero exit."""
    try:
        cli.main(args=argv, prog_name="gflownets", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as err:
        click.echo(err.ctx.get_help() if err.ctx else str(err))
        return 2
    except click.ClickException as err:
        click.echo(f"error: {_one_line(err.format_message())}", err=True)
        return err.exit_code
    except GFlowNetError as err:
        click.echo(f"error: {_one_line(str(err))}", err=True)
        return getattr(err, "exit_code", 1)
    except OSError as err:  # a file that cannot be written or read: a full disk, a read-only folder
        click.echo(f"error: {_os_error_text(err)}", err=True)
        return 1
    except (MemoryError, RuntimeError) as err:
        message = _out_of_memory_text(err)
        if message is None:
            raise
        click.echo(f"error: {message}", err=True)
        return 1
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.exceptions.Exit as err:
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
