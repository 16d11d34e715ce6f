"""The fixed-shape rollout behind `--compile`: it samples the policy exactly, the compiled graph
makes the same trajectories as the same code run eagerly, and training with it learns the target."""

import dataclasses
import math
import os

import pytest
import torch

from gflownets.envs import DAG, Atoms, Bits, BitSeq, Ehrlich, Fragments, Hypergrid, Sequence, Sets
from gflownets.errors import ConfigError
from gflownets.evaluation import StateGraph
from gflownets.fast import (ClosedFormStep, CompiledSampler, KeptRollout, modified_detailed_balance_gradients,
                            rollout_fixed_steps, trajectory_balance_gradients)
from gflownets.fast import mlp
from gflownets.objectives import modified_detailed_balance, trajectory_balance
from gflownets.policies import ConvSequencePolicy, MLPPolicy
from gflownets.sampling import PAD, Trajectories, sample_forward
from gflownets.sources import OnPolicy, Replay
from gflownets.training import RunConfig, Trainer
from test_sampling import assert_matches


def peaked_policy(env, seed=3, backward="learned"):
    torch.manual_seed(seed)
    policy = MLPPolicy(env, hidden=32, backward=backward)
    with torch.no_grad():  # far from uniform, so that a wrong sampler shows
        for p in policy.parameters():
            p.mul_(4)
    return policy


def fixed_step_batch(env, policy, n, generator, **kwargs):
    uniforms = torch.rand(env.max_steps, n, env.n_actions, generator=generator)
    with torch.no_grad():
        return rollout_fixed_steps(env, policy, uniforms, **kwargs)


def small_bitseq():
    """Prepend and append over 4 tokens: states hold PAD (-1) between real entries' ends."""
    return BitSeq(length=6, token_bits=2, num_modes=4, mode_threshold=1, prepend=True)


@pytest.mark.parametrize("env", [Hypergrid(ndim=2, height=6), Hypergrid(ndim=3, height=3),
                                 Sets(n_items=6, set_size=3), small_bitseq(),
                                 Sequence(alphabet="abc", max_length=3, min_length=1), DAG(nodes=3, samples=20),
                                 Bits(dim=4), Atoms(elements="C,O", max_atoms=3, score="mw(0,1000)"),
                                 Fragments(vocabulary="4", max_fragments=3, score="mw(0,1000)")],
                         ids=["hypergrid-2d", "hypergrid-3d", "sets", "bitseq", "sequence", "dag", "bits", "atoms",
                              "fragments"])
def test_fixed_step_rollout_samples_the_policy_exactly(env):
    policy = peaked_policy(env)
    graph = StateGraph(env)
    exact = graph.terminal_distribution(policy)
    _, _, lengths, objects, *_ = fixed_step_batch(env, policy, 100_000, torch.Generator().manual_seed(0))
    assert (lengths > 0).all()
    counts = torch.bincount(graph.terminal_positions(objects), minlength=len(exact))
    assert_matches(exact, counts)


def test_fixed_step_trajectories_are_the_padded_batches_of_sample_forward(generator):
    env = Hypergrid(ndim=3, height=4)
    policy = peaked_policy(env)
    states, actions, lengths, last, *_ = fixed_step_batch(env, policy, 300, generator, gamma=0.4)
    assert states.shape == (300, env.max_steps, 3) and actions.shape == (300, env.max_steps)
    assert (states[:, 0] == 0).all()
    for i in range(300):
        n = int(lengths[i])
        assert actions[i, n - 1] == env.exit_action and torch.equal(states[i, n - 1], last[i])
        assert (actions[i, n:] == PAD).all() and (states[i, n:] == PAD).all()
        if n > 1:
            assert torch.equal(env.step(states[i, :n - 1], actions[i, :n - 1]), states[i, 1:n])
    # a trajectory that has not exited within the steps given is reported with length 0
    with torch.no_grad():
        uniforms = torch.rand(2, 300, env.n_actions, generator=generator)
        _, cut_actions, cut, *_ = rollout_fixed_steps(env, policy, uniforms)
    exited = (cut_actions == env.exit_action).any(dim=1)
    assert torch.equal(cut > 0, exited) and (~exited).any()


@pytest.mark.parametrize("env", [Hypergrid(ndim=2, height=4), Sets(n_items=6, set_size=3), small_bitseq(),
                                 DAG(nodes=3, samples=20), Bits(dim=4),
                                 Atoms(elements="C,O", max_atoms=3, score="mw(0,1000)"),
                                 Fragments(vocabulary="4", max_fragments=3, score="mw(0,1000)")],
                         ids=["hypergrid", "sets", "bitseq", "dag", "bits", "atoms", "fragments"])
def test_compiled_rollout_makes_the_same_trajectories_as_eager(env, generator):
    """(The DAG's reward, a gather of its local-score table, is traced into the graph too; the
    molecules' RDKit reward is computed after it.)"""
    policy = peaked_policy(env)
    sampler = CompiledSampler(env, policy, gamma=0.3, temperature=0.7)
    assert sampler.warm_up(64) > 0 and sampler.compile_seconds > 0
    state = generator.get_state()
    compiled = sampler(64, generator)
    generator.set_state(state)
    eager = fixed_step_batch(env, policy, 64, generator, gamma=0.3, temperature=0.7)
    assert torch.equal(compiled.states, eager[0]) and torch.equal(compiled.actions, eager[1])
    assert torch.equal(compiled.lengths, eager[2])
    assert torch.equal(compiled.log_rewards, env.log_reward(eager[3]))
    # and the batch is an ordinary Trajectories: the objectives take it as they take sample_forward's
    loss = trajectory_balance(policy, compiled)
    assert torch.isfinite(loss) and loss > 0


def test_a_conditional_rollout_compiles_with_each_trajectorys_context(generator):
    """The contexts are drawn outside the graph (first, from the run's generator) and carried
    through it; the trajectories are those of the same code run eagerly from the same s0."""
    config = RunConfig(env="hypergrid", env_args={"ndim": 2, "height": 4}, condition="beta", beta_range="1,8",
                       hidden=16, compile=True)
    config.validate()
    env = config.build_env()
    assert env.conditional and env.compilable and not env.reward_compiles
    policy = peaked_policy(env)
    sampler = CompiledSampler(env, policy, gamma=0.2)
    sampler.warm_up(64)
    state = generator.get_state()
    compiled = sampler(64, generator)
    generator.set_state(state)
    initial = env.initial_states(64, generator)
    eager = fixed_step_batch(env, policy, 64, generator, gamma=0.2, initial=initial)
    assert len(env.contexts(initial).unique()) > 1  # a context per trajectory, not one for all
    assert torch.equal(compiled.states, eager[0]) and torch.equal(compiled.lengths, eager[2])
    assert torch.equal(compiled.log_rewards, env.log_reward(eager[3]))
    # and training takes it (autograd: log Z depends on the context, so no closed form)
    trainer = Trainer(dataclasses.replace(config, iters=3), progress=False)
    assert isinstance(trainer.source, CompiledSampler) and trainer.gradient_step == trainer.autograd_step
    assert math.isfinite(trainer.train_step())


def test_the_conv_policy_compiles_into_the_rollout(generator):
    """The convolutional sequence policy traces into the compiled rollout like the MLP (a run
    of the Ehrlich recipe compiles from 5000 iterations): the same trajectories as eager."""
    env = Ehrlich(num_states=4, dim=6, num_motifs=1, motif_length=3)
    torch.manual_seed(0)
    policy = ConvSequencePolicy(env, hidden=16, layers=2)
    with torch.no_grad():  # away from the uniform start (its output layer is zero)
        for p in policy.parameters():
            p.add_(torch.randn_like(p))
    sampler = CompiledSampler(env, policy, gamma=0.2)
    sampler.warm_up(32)
    state = generator.get_state()
    compiled = sampler(32, generator)
    generator.set_state(state)
    eager = fixed_step_batch(env, policy, 32, generator, gamma=0.2)
    assert torch.equal(compiled.states, eager[0]) and torch.equal(compiled.actions, eager[1])
    assert len(torch.unique(compiled.terminal_states, dim=0)) > 1


def test_training_with_compile_learns_the_target():
    """2-D H8 TB at the peer settings, as the eager quality test: exact L1 <= 0.04."""
    config = RunConfig(env="hypergrid", env_args=dict(ndim=2, height=8), iters=2000, batch_size=16,
                       eval_every=0, compile=True)
    summary = Trainer(config, progress=False).run()
    assert summary["l1"] <= 0.04, summary
    assert summary["modes_found"] == summary["n_modes"] == 4
    assert summary["compile_seconds"] > 0 and summary["seconds"] > 0


class _EagerGrid(Hypergrid):
    """An environment that does not declare a compilable rollout."""

    compilable = False


def test_compile_refuses_what_it_cannot_do(tmp_path):
    with pytest.raises(ConfigError, match="compile"):
        Trainer(RunConfig(env="hypergrid", compile=True), env=_EagerGrid(ndim=2, height=3), progress=False)
    data = tmp_path / "objects.csv"
    data.write_text("x0,x1\n1,2\n")
    with pytest.raises(ConfigError, match="offline"):
        RunConfig(offline=str(data), compile=True).validate()
    assert all(cls.compilable for cls in (Hypergrid, Sets, BitSeq, DAG, Bits, Atoms, Fragments))


class _BranchingGrid(Hypergrid):
    """Claims `compilable` but branches in Python on the states' values, which cannot trace."""

    compilable = True

    def _step(self, states, actions):
        if bool((actions == 0).any()):
            return states + self._unit.index_select(0, actions)
        return states + self._unit.index_select(0, actions)


def test_compilations_are_cached_in_the_users_cache_folder(tmp_path, monkeypatch):
    """Not in torch's default /tmp/torchinductor_$USER (cleared at reboots, creatable by anyone);
    a folder the user names in $TORCHINDUCTOR_CACHE_DIR is kept."""
    from gflownets.caches import use_compile_cache

    monkeypatch.setenv("GFLOWNETS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert use_compile_cache() == str(tmp_path / "mine")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    env = Hypergrid(ndim=2, height=2)
    CompiledSampler(env, MLPPolicy(env, hidden=4))  # (compiles at its first call, not here)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache" / "torch-compile")


def test_a_process_can_make_more_samplers_than_dynamos_recompile_limit():
    """Every sampler compiles the same function with other constants (here the exploration
    rate); without isolation they would all count against dynamo's limit of compilations per
    function (8 by default, 1 here to keep the test short)."""
    env = Hypergrid(ndim=2, height=2)
    with torch._dynamo.config.patch(recompile_limit=1):
        for gamma in (0.1, 0.2, 0.3):
            sampler = CompiledSampler(env, MLPPolicy(env, hidden=4), gamma=gamma)
            sampler.warm_up(2)
            assert len(sampler(2)) == 2


def test_a_rollout_that_does_not_trace_is_a_clear_error():
    env = _BranchingGrid(ndim=2, height=3)
    sampler = CompiledSampler(env, MLPPolicy(env, hidden=8))
    with pytest.raises(ConfigError, match="could not build the hypergrid rollout.*without --compile"):
        sampler.warm_up(4)


# ---------------------------------------------------------------- closed-form trajectory balance
# With TB on our MLP and nothing but on-policy batches, the compiled rollout keeps the MLP's
# activations and each step's log-probability derivatives (`fast/`), and the gradient step
# computes TB's gradients from them without autograd. They must be autograd's, bit for bit.

@pytest.fixture(scope="module", params=["learned", "uniform"])
def compiled_grid(request):
    env = Hypergrid(ndim=2, height=5)
    torch.manual_seed(4)
    policy = MLPPolicy(env, hidden=32, backward=request.param)
    sampler = CompiledSampler(env, policy, 32, gamma=0.2, keep=True)
    sampler.warm_up()
    return env, policy, sampler


def _loss_and_gradients(objective, policy, batch):
    policy.zero_grad(set_to_none=True)
    loss = objective(policy, batch)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in policy.parameters()]


def test_the_closed_form_of_trajectory_balance_is_autograds_bit_for_bit(compiled_grid):
    """`trajectory_balance_gradients`, from what the rollout kept and without autograd, gives the
    loss of a second, eager pass and autograd's gradient of every parameter (up to rounding:
    the rows are summed in another order)."""
    env, policy, sampler = compiled_grid
    batch = sampler.sample(torch.Generator().manual_seed(3))
    loss, grads = _loss_and_gradients(trajectory_balance, policy, batch)
    closed_loss, closed = trajectory_balance_gradients(policy, batch, sampler.last_kept)
    assert set(closed) == set(policy.parameters())
    assert loss > 0 and torch.allclose(closed_loss, loss, rtol=1e-6)
    for p, grad in zip(policy.parameters(), grads):
        assert closed[p].grad_fn is None and not closed[p].requires_grad
        assert torch.allclose(closed[p], grad, rtol=1e-5, atol=1e-7), (p.shape, float((closed[p] - grad).abs().max()))


def test_the_kept_backward_pass_is_the_networks_gradient(generator):
    """`fast.mlp`: the forward pass that keeps the layer inputs gives the network's outputs, and
    the backward pass from them its gradients, on any rows (repeats included)."""
    for env in (Hypergrid(ndim=3, height=4), Sets(n_items=6, set_size=3)):
        for backward in ("learned", "uniform"):
            policy = peaked_policy(env, backward=backward)
            states = sample_forward(env, policy, 40, generator).states.flatten(0, 1)
            states = states[(states != PAD).all(dim=-1)]  # the padding rows are no states
            with torch.no_grad():
                out, kept = mlp.forward_keeping(policy, states)
            rows = torch.randint(len(states), (50,), generator=generator)
            weights = [torch.randn(50, k, generator=generator) for k in (env.n_actions, env.n_actions - 1)]
            kept_grads = mlp.parameter_gradients(policy, kept, rows, weights[0], weights[1])
            policy.zero_grad(set_to_none=True)
            direct = policy(states[rows])
            ((direct.forward_logits * weights[0]).sum() + (direct.backward_logits * weights[1]).sum()).backward()
            assert torch.allclose(out.forward_logits[rows], direct.forward_logits, atol=1e-6)
            for p in policy.network_parameters():
                assert torch.allclose(kept_grads[p], p.grad, rtol=1e-5, atol=1e-6), p.shape


def test_the_fast_path_applies_only_where_it_is_used():
    """The closed form runs for on-policy TB on our MLP; with replay, local search, mutations,
    another objective or another policy, the compiled rollout keeps nothing and autograd runs."""
    def trainer(**overrides):
        options = dict(env="hypergrid", env_args=dict(ndim=2, height=5), iters=3, batch_size=8, hidden=16,
                       eval_every=0, compile=True)
        config = RunConfig(**{**options, **overrides})
        return Trainer(config, progress=False)

    fast = trainer()
    assert isinstance(fast.gradient_step, ClosedFormStep) and fast.source.keep
    for overrides in (dict(replay_size=16, replay_batch=4), dict(local_search=2), dict(objective="db"),
                      dict(policy="tabular")):
        slow = trainer(**overrides)
        assert slow.gradient_step == slow.autograd_step, overrides
        compiled = slow.find_source(CompiledSampler)
        assert compiled is not None and not compiled.keep, overrides
    with_replay = trainer(replay_size=16, replay_batch=4)
    assert isinstance(with_replay.source, Replay) and isinstance(with_replay.source.inner, CompiledSampler)
    assert isinstance(trainer(compile=False).source, OnPolicy)
    # kept activations serve the batch they came with, once
    fast.train_step()
    with pytest.raises(RuntimeError, match="the batch its compiled sampler has just made"):
        fast.gradient_step(fast.last_batch)


def test_the_trainer_takes_the_closed_form_and_trains_as_with_autograd():
    config = RunConfig(env="hypergrid", env_args=dict(ndim=2, height=5), iters=3, batch_size=8, hidden=16,
                       eval_every=0, compile=True)
    closed, autograd = Trainer(config, progress=False), Trainer(config, progress=False)
    assert isinstance(closed.gradient_step, ClosedFormStep)
    autograd.gradient_step = autograd.autograd_step
    for _ in range(6):
        assert closed.train_step() == pytest.approx(autograd.train_step(), rel=1e-5)
    for p, q in zip(closed.policy.parameters(), autograd.policy.parameters()):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-6)


def test_a_users_reward_function_is_called_outside_the_graph(generator):
    """The environment's own reward is computed inside the compiled graph; a user's function is
    arbitrary Python and is called on the final states, validated as always."""
    env = Hypergrid(ndim=2, height=4, reward_fn=lambda objects: 1.0 + objects.sum(dim=1).double())
    sampler = CompiledSampler(env, peaked_policy(env))
    batch = sampler(64, generator)
    assert torch.allclose(batch.log_rewards, (1.0 + batch.terminal_states.sum(dim=1).double()).log())


def test_closed_form_tb_on_sequences_is_autograds():
    """Sequences: one-hot inputs read as indices (`MLPPolicy.one_hot_input`, whose weight
    gradient is an index_add) and states whose empty slots are PAD (-1), which the closed form
    must not mistake for padding rows."""
    env = small_bitseq()
    policy = peaked_policy(env)
    assert policy.one_hot_input
    with torch.no_grad():
        rollout = fixed_step_batch(env, policy, 64, torch.Generator().manual_seed(1), gamma=0.1, keep=True)
    batch = Trajectories(rollout.states, rollout.actions, rollout.lengths, env.log_reward(rollout.last))
    loss, closed = trajectory_balance_gradients(policy, batch, KeptRollout(rollout.kept, *rollout.log_probs))
    expected, grads = _loss_and_gradients(trajectory_balance, policy, batch)
    assert loss == pytest.approx(float(expected), rel=1e-6)
    for p, grad in zip(policy.parameters(), grads):
        assert closed[p].stride() == p.stride()
        # float32 sums in another order, of gradients up to ~100 (the peaked policy)
        scale = float(grad.abs().max())
        assert torch.allclose(closed[p], grad, rtol=1e-5, atol=1e-5 * scale), (p.shape, float((closed[p] - grad).abs().max()))


@pytest.mark.parametrize("backward", ["learned", "uniform"])
def test_closed_form_modified_db_is_autograds(backward):
    """Modified DB from the rollout's kept exit terms (DAGs: every state may stop) gives the
    eager loss and autograd's gradient of every parameter, with a learned or a uniform P_B."""
    env = DAG(nodes=4, samples=30)
    policy = peaked_policy(env, backward=backward)
    with torch.no_grad():
        rollout = fixed_step_batch(env, policy, 64, torch.Generator().manual_seed(2), gamma=0.2, keep=True,
                                   exits=True)
    batch = Trajectories(rollout.states, rollout.actions, rollout.lengths, env.log_reward(rollout.last))
    assert (batch.lengths > 1).sum() > 30  # most trajectories add edges before they stop
    loss, closed = modified_detailed_balance_gradients(policy, batch, KeptRollout(rollout.kept, *rollout.log_probs))
    policy.zero_grad(set_to_none=True)
    expected = modified_detailed_balance(policy, batch)
    expected.backward()
    assert loss == pytest.approx(float(expected), rel=1e-5) and loss > 0
    assert policy.log_z.grad is None and policy.log_z not in closed  # modified DB has no log Z
    for p in policy.parameters():
        if p is policy.log_z:
            continue
        grad = p.grad
        scale = float(grad.abs().max())
        assert torch.allclose(closed[p], grad, rtol=1e-5, atol=1e-5 * scale), (p.shape, float((closed[p] - grad).abs().max()))


def test_the_trainer_takes_closed_form_modified_db_only_without_a_target_network():
    settings = dict(env="dag", env_args={"nodes": 3, "samples": 20}, objective="mdb", backward_policy="uniform",
                    iters=3, batch_size=8, eval_every=0, compile=True, replay_size=0, replay_batch=0, target_decay=0.0)
    assert isinstance(Trainer(RunConfig(**settings), progress=False).gradient_step, ClosedFormStep)
    with_target = Trainer(RunConfig(**{**settings, "target_decay": 0.9}), progress=False)
    assert with_target.gradient_step == with_target.autograd_step


# ---------------------------------------------------------------- one-hot inputs
def test_one_hot_inputs_are_the_dense_layer_with_the_same_parameters(generator):
    """Sequences' first layer sums weight columns (`embedding_bag`) instead of multiplying the
    one-hot features: the same function and gradients, the same state_dict (shape and values)."""
    env = Sequence(alphabet="abcd", max_length=5, min_length=1, prepend=True)
    policy = peaked_policy(env)
    first = policy.linear_layers[0]
    assert policy.one_hot_input and first.weight.shape == (32, env.feature_dim)
    states = sample_forward(env, policy, 30, generator).states.flatten(0, 1)[:100].clamp(min=-1)
    indices = env.feature_indices(states)
    assert torch.equal(torch.zeros(len(states), env.feature_dim).scatter_(1, indices, 1.0), env.features(states))
    dense = torch.nn.functional.linear(env.features(states), first.weight, first.bias)
    assert torch.allclose(policy.first_linear(policy.layer_input(states)), dense, atol=1e-5)
    # a state_dict from a policy with the ordinary layout loads, and gives the same outputs
    plain = MLPPolicy(env, hidden=32)
    plain.one_hot_input = False
    plain.load_state_dict(policy.state_dict())
    assert torch.allclose(plain(states).forward_logits, policy(states).forward_logits, atol=1e-5)
    saved = policy.state_dict()
    assert "trunk.0.weight" in saved and saved["trunk.0.weight"].shape == (32, env.feature_dim)
    assert not any("rows" in key for key in saved)  # nn.Linear's form, as every other policy's
    policy.load_state_dict({k: v.contiguous() for k, v in plain.state_dict().items()})
    assert first.rows.is_contiguous()  # loading keeps the fast layout


# ---------------------------------------------------------------- which path runs by default
def test_the_default_path_is_compiled_where_it_pays_and_says_so(monkeypatch, tmp_path):
    from gflownets.fast.auto import AUTO_COMPILE_ITERS, choose_path

    def choose(**options):
        config = RunConfig(**{"env": "hypergrid", "iters": AUTO_COMPILE_ITERS, **options})
        return choose_path(config, config.build_env())

    assert RunConfig().compile is None
    use, note = choose()
    assert use and note.startswith("fast path") and "--no-compile" in note
    use, note = choose(iters=AUTO_COMPILE_ITERS - 1)
    assert not use and "would not repay" in note and "--compile" in note
    use, note = choose_path(RunConfig(env="hypergrid", iters=AUTO_COMPILE_ITERS), _EagerGrid(ndim=2, height=3))
    assert not use and "hypergrid has no compilable rollout" in note
    use, note = choose(condition="beta")
    assert not use and "conditional run's loss goes through autograd" in note and "--compile" in note
    use, note = choose(env="atoms", policy="graph")
    assert not use and "graph policy runs slower compiled" in note
    monkeypatch.setattr("shutil.which", lambda name: None)
    use, note = choose()
    assert not use and "no C++ compiler" in note
    monkeypatch.undo()
    # the trainer records the choice in the run's config (a resumed run keeps its path)
    trainer = Trainer(RunConfig(env="sets", iters=AUTO_COMPILE_ITERS, hidden=8), progress=False)
    assert trainer.config.compile is True and isinstance(trainer.source, CompiledSampler)
    assert trainer.path_note.startswith("fast path")
    short = Trainer(RunConfig(env="sets", iters=10, hidden=8), progress=False)
    assert short.config.compile is False and isinstance(short.source, OnPolicy)
    assert Trainer(RunConfig(env="sets", iters=10, hidden=8, compile=False), progress=False).path_note is None


def test_the_cli_says_which_path_runs_on_stderr(tmp_path, capsys):
    from cli_helpers import run_cli

    assert run_cli("train", "sets", "--iters", 5, "--hidden", 8, "--out", tmp_path / "run") == 0
    captured = capsys.readouterr()
    assert "eager path: 5 iterations (< 5000) would not repay a compilation" in captured.err
    assert "eager path" not in captured.out  # stdout is the summary's JSON
