"""Size limits: sizes no run can hold are refused before anything is allocated, with one clear
error; plots too large to draw are skipped with a message while the run completes; the replay
buffer grows with its content; `sample` streams to its file in chunks."""

import csv
import json
import time
import tracemalloc

import numpy as np
import pytest
import torch

from gflownets import figures, limits
from cli_helpers import one_error_line, run_cli
from gflownets.envs import DAG, BitSeq, Ehrlich, Hypergrid, Sequence, Sets
from gflownets.envs.dag_data import sample_discrete
from gflownets.errors import ConfigError, TooManyStates
from gflownets.evaluation import try_state_graph
from gflownets.evaluation.evaluator import SAMPLE_CHUNK, evaluate, sample_objects
from gflownets.evaluation.exact import MAX_GRAPH_WORK, StateGraph
from gflownets.policies import MLPPolicy, TabularPolicy
from gflownets.sources.replay import ReplayBuffer
from gflownets.training import RunConfig, Trainer, load_run
from gflownets.training.io import write_objects_csv, write_objects_csv_chunks

TINY = ["--hidden", "8", "--batch-size", "4", "--quiet"]


# ------------------------------------------------------------------------------- plots
def test_the_1414_grid_probe_completes_quickly_with_its_plots_skipped(tmp_path, capsys):
    """The probe that crashed after 228 s and 9.4 GB in the policy plot: exact evaluation (2e6
    states x 2827 levels) is refused, so no O(states) pass runs, and the grid plots say why they
    are missing; the summary, checkpoint and training curve are written."""
    out = tmp_path / "run"
    started = time.perf_counter()
    assert run_cli("train", "hypergrid", "--ndim", 2, "--height", 1414, "--iters", 1, "--quiet", "--out", out) == 0
    assert time.perf_counter() - started < 60
    err = capsys.readouterr().err
    skipped = [line for line in err.splitlines() if line.startswith("skipped plots/")]
    assert [line.split(":")[0] for line in skipped] == ["skipped plots/distribution.png", "skipped plots/policy.png"]
    assert all("exact state graph" in line for line in skipped)
    assert json.loads((out / "summary.json").read_text())["iterations"] == 1
    assert (out / "checkpoint.pt").is_file() and (out / "plots" / "training.png").is_file()
    assert not (out / "plots" / "policy.png").exists()


def test_exact_evaluation_is_bounded_by_states_times_levels():
    started = time.perf_counter()
    env = Hypergrid(ndim=2, height=1414)
    with pytest.raises(TooManyStates, match="1999396 states x up to 2827 levels = 5.65e"):
        StateGraph(env)
    assert try_state_graph(env) is None
    assert time.perf_counter() - started < 10
    assert 32 ** 4 * Hypergrid(ndim=4, height=32).max_steps <= MAX_GRAPH_WORK  # the 4-D benchmark grid stays exact


def test_plots_too_large_are_skipped_one_by_one(tmp_path, capsys, monkeypatch):
    """With the limits lowered below a 4 x 4 grid: the heatmaps and arrows are skipped with a
    line each, the generic scatter takes distribution.png's place, the run completes."""
    monkeypatch.setattr(figures, "MAX_CELLS", 10)
    monkeypatch.setattr(figures, "MAX_ARROWS", 10)
    config = RunConfig(env="hypergrid", env_args={"ndim": 2, "height": 4}, iters=2, hidden=8, batch_size=4,
                       eval_every=0)
    Trainer(config, tmp_path / "run", progress=False).run()
    err = capsys.readouterr().err
    assert "skipped plots/distribution.png: 16 cells in a heatmap, more than the 10 it draws" in err
    assert "skipped plots/policy.png: 16 cells of arrows, more than the 10 it draws" in err
    plots = tmp_path / "run" / "plots"
    assert sorted(p.name for p in plots.iterdir()) == ["distribution.png", "training.png"]  # the scatter
    assert (tmp_path / "run" / "summary.json").is_file() and (tmp_path / "run" / "checkpoint.pt").is_file()


def test_plot_primitives_refuse_before_allocating(tmp_path):
    """A 1e5-sided heatmap would be a 1e10-cell image: refused before it exists."""
    started = time.perf_counter()
    coords = torch.tensor([[0, 0]])
    with pytest.raises(figures.PlotSkipped, match="10000000000 cells in a heatmap"):
        figures.plot_grid_distributions(coords, [1.0], [1.0], tmp_path / "d.png", height=100_000)
    xy = torch.zeros(figures.MAX_ARROWS + 1, 2, dtype=torch.long)
    with pytest.raises(figures.PlotSkipped, match="arrows"):
        figures.plot_grid_policy(xy, torch.zeros(len(xy), 3), torch.zeros(len(xy), 2), tmp_path / "p.png")
    with pytest.raises(figures.PlotSkipped, match="points"):
        figures.plot_distribution_scatter(torch.ones(figures.MAX_POINTS + 1), torch.ones(figures.MAX_POINTS + 1),
                                          tmp_path / "s.png")
    assert time.perf_counter() - started < 5 and not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------- hypergrid
@pytest.mark.parametrize("ndim,height", [(1, 5), (2, 8), (3, 4), (4, 33)])
def test_hypergrid_features_are_the_rows_of_the_identity_bit_for_bit(ndim, height):
    env = Hypergrid(ndim=ndim, height=height)
    states = torch.randint(height, (64, ndim), generator=torch.Generator().manual_seed(ndim))
    expected = torch.eye(height).index_select(0, states.reshape(-1)).view(64, ndim * height)
    features = env.features(states)
    assert features.dtype == expected.dtype and torch.equal(features, expected)


def test_hypergrid_allocates_no_identity(monkeypatch):
    real_eye = torch.eye

    def eye(n, *args, **kwargs):
        assert n < 100_000, "a height x height identity was built (40 GB at height 1e5)"
        return real_eye(n, *args, **kwargs)

    monkeypatch.setattr(torch, "eye", eye)
    env = Hypergrid(ndim=1, height=100_000)
    assert env.features(torch.tensor([[99_999]]))[0].nonzero().tolist() == [[99_999]]


def test_too_many_policy_inputs_are_refused_before_allocation(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "zeros", None)  # nothing may be allocated before the refusal
    with pytest.raises(ConfigError, match=r"hypergrid: 2000000 policy inputs \(ndim \* height = 2 \* 1000000.*"
                                          r"more than the limit of 1000000"):
        Hypergrid(ndim=2, height=1_000_000)
    with pytest.raises(ConfigError, match="ndim must be <= 4096, got 5000: the table of moves holds ndim"):
        Hypergrid(ndim=5000, height=2)
    monkeypatch.undo()
    err = one_error_line(capsys, "train", "hypergrid", "--height", 10 ** 9, "--out", tmp_path / "x")
    assert "policy inputs" in err and not (tmp_path / "x").exists()


def test_a_run_whose_batch_cannot_fit_is_refused_before_the_policy_exists(monkeypatch):
    """1-D grid of side 5e5: within the input limit, but a batch of 16 trajectories of up to 5e5
    states with 5e5 features each would be ~15 TiB."""
    built = []
    monkeypatch.setattr(MLPPolicy, "__init__", lambda *a, **k: built.append(1))
    config = RunConfig(env="hypergrid", env_args={"ndim": 1, "height": 500_000}, exact=False)
    with pytest.raises(ConfigError, match="a training batch of 16 trajectories of up to 500000 states would "
                                          "need .* TiB, more than the .* of memory of cpu; lower batch_size"):
        Trainer(config, progress=False)
    assert not built


def test_the_memory_estimate_names_what_does_not_fit(monkeypatch):
    monkeypatch.setattr(limits, "device_memory", lambda device: 1 << 20)  # a 1 MiB machine
    env = Hypergrid(ndim=2, height=4)
    with pytest.raises(ConfigError, match="an MLP of .* weights"):
        limits.check_run_memory(RunConfig(hidden=1024), env)
    with pytest.raises(ConfigError, match="a full replay buffer of 100000 objects would need 2.29 MiB"):
        limits.check_run_memory(RunConfig(hidden=8, replay_size=100_000), env)
    with pytest.raises(ConfigError, match="200000 samples for the metrics"):
        limits.check_run_memory(RunConfig(hidden=8, final_samples=200_000), env)
    limits.check_run_memory(RunConfig(hidden=8), env)  # the small run fits
    monkeypatch.setattr(limits, "device_memory", lambda device: 1000)
    with pytest.raises(ConfigError, match="a tabular policy over 16 states would need 1.5 KiB, more than the 1000 B"):
        TabularPolicy(env)


def test_a_policy_refuses_weights_that_cannot_fit():
    env = Hypergrid(ndim=2, height=4)
    with pytest.raises(ConfigError, match="an MLP of 100000.* weights would need .* TiB, more than the"):
        MLPPolicy(env, hidden=10 ** 7)  # two hidden layers: 1e14 weights


@pytest.mark.parametrize("option,value,match", [
    ("--batch-size", 10_000_000_000, "batch_size must be <= 1000000, got 10000000000"),
    ("--hidden", 100_000_000, "hidden must be <= 16384, got 100000000: a hidden layer holds hidden^2"),
    ("--layers", 10_000, "layers must be <= 1000, got 10000"),
    ("--eval-samples", 10 ** 12, "eval_samples must be <= 10000000, got 1000000000000"),
    ("--final-samples", 10 ** 12, "final_samples must be <= 10000000"),
    ("--replay-size", 10 ** 12, "replay_size must be <= 100000000"),
    ("--threads", 100_000, "threads must be <= 1024"),
])
def test_absurd_run_options_are_one_line_errors(capsys, tmp_path, option, value, match):
    err = one_error_line(capsys, "train", "hypergrid", option, value, "--out", tmp_path / "x")
    assert match in err


def test_evaluate_refuses_more_samples_than_metrics_hold():
    env = Hypergrid(ndim=2, height=3)
    with pytest.raises(ConfigError, match="samples must be <= 10000000, got 1000000000000: the metrics hold"):
        evaluate(env, MLPPolicy(env, hidden=4), 0.0, None, None, n_samples=10 ** 12)


# ------------------------------------------------------------------------------- other environments
@pytest.mark.parametrize("make,match", [
    (lambda: Sets(n_items=2_000_000, set_size=2), "sets: 2000000 policy inputs"),
    (lambda: Sequence(max_length=1_000_000), r"sequence: 5000000 policy inputs \(max_length \* \(vocabulary"),
    (lambda: BitSeq(length=1_000_000, token_bits=4), "bitseq: 4250000 policy inputs"),
    (lambda: BitSeq(num_modes=10 ** 9), "num_modes must be <= 100000"),
    (lambda: Ehrlich(num_states=100_000), "num_states must be <= 2048"),
    (lambda: Ehrlich(num_states=2048, dim=10_000), "ehrlich: 20490000 policy inputs"),
    (lambda: DAG(samples=10 ** 12), "samples must be <= 10000000"),
    (lambda: DAG(score="bde", arity=10 ** 6), "arity must be <= 1000"),
])
def test_environments_refuse_absurd_sizes_before_building(make, match):
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=match):
        make()
    assert time.perf_counter() - started < 2


def test_sets_too_large_to_count_are_refused_quickly():
    """The count of states was a sum of bignums computed at construction (minutes for 1e5 items)."""
    started = time.perf_counter()
    env = Sets(n_items=100_000, set_size=50_000)
    with pytest.raises(TooManyStates, match="more than 2000000 states"):
        env.enumerate_states()
    assert time.perf_counter() - started < 2


def test_synthetic_discrete_tables_are_bounded():
    complete = np.triu(np.ones((12, 12), dtype=np.int64), k=1)  # node j has the j nodes before it as parents
    with pytest.raises(ConfigError, match=r"node 7 has 7 parents, so its probability table would hold arity\^8"):
        sample_discrete(complete, 10, np.random.default_rng(0), arity=10)


def test_a_tabular_policy_needs_an_enumerable_environment():
    with pytest.raises(ConfigError, match="a tabular policy has a row per state.*too many to enumerate"):
        TabularPolicy(Hypergrid(ndim=12, height=8))


# ------------------------------------------------------------------------------- replay
def test_the_replay_buffer_grows_with_its_content():
    buffer = ReplayBuffer(10 ** 8, (4,))
    assert buffer.objects.numel() == 0 and buffer.log_rewards.numel() == 0
    for _ in range(10):
        buffer.add(torch.ones(3, 4, dtype=torch.long), torch.zeros(3, dtype=torch.float64))
    assert len(buffer) == 30 and 30 <= len(buffer.objects) <= 60 and len(buffer.log_rewards) == len(buffer.objects)
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        ReplayBuffer(0, (4,))


@pytest.mark.parametrize("keep", ["recent", "best"])
def test_growing_storage_keeps_every_result_of_a_full_allocation(keep):
    """The same adds, samples, saved state and resume with lazily grown storage as with the whole
    capacity allocated up front (the old buffer)."""
    def run(buffer, generator):
        picks = []
        for step in range(12):
            objects = torch.randint(5, (7, 3), generator=generator)
            buffer.add(objects, -objects.sum(dim=1).double())
            picks.append(buffer.sample(4, generator))
        return picks

    lazy, eager = ReplayBuffer(40, (3,), keep), ReplayBuffer(40, (3,), keep)
    eager._reserve(40)
    a, b = run(lazy, torch.Generator().manual_seed(0)), run(eager, torch.Generator().manual_seed(0))
    assert all(torch.equal(x, y) for pa, pb in zip(a, b) for x, y in zip(pa, pb))
    state = lazy.state_dict()
    assert {k: v.shape if torch.is_tensor(v) else v for k, v in state.items()} == \
        {k: v.shape if torch.is_tensor(v) else v for k, v in eager.state_dict().items()}
    resumed = ReplayBuffer(40, (3,), keep)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.objects[:len(resumed)], lazy.objects[:len(lazy)]) and resumed.cursor == lazy.cursor
    assert torch.equal(run(resumed, torch.Generator().manual_seed(1))[-1][0],
                       run(lazy, torch.Generator().manual_seed(1))[-1][0])


# ------------------------------------------------------------------------------- sample
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("limits") / "run"
    assert run_cli("train", "hypergrid", "--ndim", 2, "--height", 3, "--iters", 2, *TINY, "--out", out) == 0
    return out


def test_chunks_continue_one_generator(tiny_run):
    """Pieces of any size draw from one generator as `sample_objects` does with pieces of that
    size; with the default (a multiple of SAMPLE_CHUNK) they are `sample(n)` bit for bit."""
    trainer = load_run(tiny_run)
    pieces = list(trainer.sample_chunks(50, seed=3, chunk=8))
    assert [len(objects) for objects, _ in pieces] == [8] * 6 + [2]
    reference = sample_objects(trainer.env, trainer.eval_policy, 50, torch.Generator().manual_seed(3), chunk=8)
    assert torch.equal(torch.cat([objects for objects, _ in pieces]), reference)
    n = 2 * SAMPLE_CHUNK + 7
    objects, log_rewards = trainer.sample(n, seed=5)
    for chunk in (SAMPLE_CHUNK, 2 * SAMPLE_CHUNK):
        pieces = list(trainer.sample_chunks(n, seed=5, chunk=chunk))
        assert torch.equal(torch.cat([o for o, _ in pieces]), objects)
        assert torch.equal(torch.cat([r for _, r in pieces]), log_rewards)
    assert len(trainer.sample(0)[0]) == 0


def test_sample_streams_the_rows_of_the_unchunked_sampler(tiny_run, tmp_path):
    n = SAMPLE_CHUNK + 10  # two chunks
    out = tmp_path / "samples.csv"
    assert run_cli("sample", tiny_run, "-n", n, "--seed", 4, "--out", out) == 0
    reference = tmp_path / "reference.csv"
    trainer = load_run(tiny_run)
    write_objects_csv(reference, trainer.env, *trainer.sample(n, seed=4))
    assert out.read_bytes() == reference.read_bytes()
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["x0", "x1", "log_reward"] and len(rows) == n + 1


def test_chunks_are_written_as_they_arrive_with_bounded_memory(tiny_run, tmp_path):
    trainer = load_run(tiny_run)
    out = tmp_path / "stream.csv"
    seen_on_disk, progress = [], []

    def chunks():
        for objects, log_rewards in trainer.sample_chunks(20 * 1000, seed=0, chunk=1000):
            temporary = list(tmp_path.glob(".stream.csv.*.tmp"))
            seen_on_disk.append(sum(1 for _ in temporary[0].open()) if temporary else 0)
            yield objects, log_rewards

    tracemalloc.start()
    written = write_objects_csv_chunks(out, trainer.env, chunks(), progress=progress.append)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert written == 20_000 and progress == [1000] * 20
    assert len(out.read_text().splitlines()) == 20_001
    # when each chunk is drawn, the ones before it (and the header) are in the temporary file already
    assert seen_on_disk == [0] + [1 + 1000 * k for k in range(1, 20)]
    assert peak < 1 << 20  # the rows of one chunk, not of 20000 objects
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("error", [KeyboardInterrupt, ConfigError])
def test_an_interrupted_sample_leaves_no_half_written_file(tiny_run, tmp_path, error):
    trainer = load_run(tiny_run)
    out = tmp_path / "samples.csv"
    out.write_text("the previous file\n")

    def chunks():
        yield from trainer.sample_chunks(10, chunk=5)
        raise error("stopped")

    with pytest.raises(error):
        write_objects_csv_chunks(out, trainer.env, chunks())
    assert out.read_text() == "the previous file\n"
    assert [p.name for p in tmp_path.iterdir()] == ["samples.csv"]


def test_sample_refuses_a_file_larger_than_the_disk(tiny_run, tmp_path, capsys):
    started = time.perf_counter()
    err = one_error_line(capsys, "sample", tiny_run, "-n", 100_000_000_000_000, "--out", tmp_path / "f.csv")
    assert "-n 100000000000000 rows would need at least" in err and "of disk" in err
    assert time.perf_counter() - started < 30 and not (tmp_path / "f.csv").exists()
