"""The fixed-shape rollout behind `--compile`: it samples the policy exactly, the compiled graph
makes the same trajectories as the same code run eagerly, and training with it learns the target."""

import copy
import dataclasses

import pytest
import torch

from gflownets.envs import BitSeq, Hypergrid, Sets
from gflownets.errors import ConfigError
from gflownets.evaluation import StateGraph
from gflownets.objectives import CLOSED_FORM, get_objective, trajectory_balance, trajectory_balance_gradients
from gflownets.policies import MLPPolicy
from gflownets.sampling import PAD, Trajectories, sample_forward
from gflownets.sampling.compiled import CompiledSampler, rollout_fixed_steps
from gflownets.training import RunConfig, Trainer
from test_sampling import assert_matches


def peaked_policy(env, seed=3):
    torch.manual_seed(seed)
    policy = MLPPolicy(env, hidden=32)
    with torch.no_grad():  # far from uniform, so that a wrong sampler shows
        for p in policy.parameters():
            p.mul_(4)
    return policy


def fixed_step_batch(env, policy, n, generator, **kwargs):
    uniforms = torch.rand(env.max_steps, n, env.n_actions, generator=generator)
    with torch.no_grad():
        return rollout_fixed_steps(env, policy, uniforms, **kwargs)


@pytest.mark.parametrize("env", [Hypergrid(ndim=2, height=6), Hypergrid(ndim=3, height=3),
                                 Sets(n_items=6, set_size=3)], ids=["hypergrid-2d", "hypergrid-3d", "sets"])
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


@pytest.mark.parametrize("env", [Hypergrid(ndim=2, height=4), Sets(n_items=6, set_size=3)],
                         ids=["hypergrid", "sets"])
def test_compiled_rollout_makes_the_same_trajectories_as_eager(env, generator):
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


def test_training_with_compile_learns_the_target():
    """2-D H8 TB at the peer settings, as the eager quality test: exact L1 <= 0.04."""
    config = RunConfig(env="hypergrid", env_args=dict(ndim=2, height=8), iters=2000, batch_size=16,
                       eval_every=0, compile=True)
    summary = Trainer(config, progress=False).run()
    assert summary["l1"] <= 0.04, summary
    assert summary["modes_found"] == summary["n_modes"] == 4
    assert summary["compile_seconds"] > 0 and summary["seconds"] > 0


def test_compile_refuses_what_it_cannot_do(tmp_path):
    with pytest.raises(ConfigError, match="compile"):
        Trainer(RunConfig(env="bitseq", compile=True), progress=False)
    data = tmp_path / "objects.csv"
    data.write_text("x0,x1\n1,2\n")
    with pytest.raises(ConfigError, match="offline"):
        RunConfig(offline=str(data), compile=True).validate()
    assert not BitSeq.compilable and Hypergrid.compilable and Sets.compilable


class _BranchingGrid(Hypergrid):
    """Claims `compilable` but branches in Python on the states' values, which cannot trace."""

    compilable = True

    def _step(self, states, actions):
        if bool((actions == 0).any()):
            return states + self._unit.index_select(0, actions)
        return states + self._unit.index_select(0, actions)


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


# ---------------------------------------------------------------- kept activations
# A compiled batch carries the policy's activations and each step's log-probabilities with
# their derivatives (`policies/kept.py`); the objectives reuse them instead of a second forward
# pass. They must give the same losses and gradients, and never be used with other weights.

@pytest.fixture(scope="module", params=["learned", "uniform"])
def compiled_grid(request):
    env = Hypergrid(ndim=2, height=5)
    torch.manual_seed(4)
    policy = MLPPolicy(env, hidden=32, backward=request.param)
    sampler = CompiledSampler(env, policy, gamma=0.2)
    sampler.warm_up(32)
    return env, policy, sampler


def _loss_and_gradients(objective, policy, batch):
    policy.zero_grad(set_to_none=True)
    loss = objective(policy, batch)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in policy.parameters()]


@pytest.mark.parametrize("name", ["tb", "db", "subtb"])
def test_kept_activations_give_the_loss_and_gradients_of_a_second_pass(compiled_grid, name):
    env, policy, sampler = compiled_grid
    batch = sampler(32, torch.Generator().manual_seed(1))
    assert batch.activations is not None
    flat = batch.valid.view(-1).nonzero().squeeze(1)
    assert batch.activations.replay(policy, flat) is not None  # the reuse paths are the ones taken
    assert batch.activations.log_ratio_sum(policy) is not None
    objective = get_objective(name, subtb_lambda=0.8)
    kept_loss, kept_grads = _loss_and_gradients(objective, policy, batch)
    loss, grads = _loss_and_gradients(objective, policy, dataclasses.replace(batch, activations=None))
    assert kept_loss > 0 and torch.allclose(kept_loss, loss, rtol=1e-5)
    for kept_grad, grad in zip(kept_grads, grads):
        assert torch.allclose(kept_grad, grad, rtol=1e-4, atol=1e-6), float((kept_grad - grad).abs().max())


def test_the_closed_form_of_trajectory_balance_is_autograds_bit_for_bit(compiled_grid):
    """`trajectory_balance_gradients` runs the operations autograd would run, without autograd:
    the same loss and the same gradient of every parameter, to the last bit."""
    env, policy, sampler = compiled_grid
    batch = sampler(32, torch.Generator().manual_seed(3))
    loss, grads = _loss_and_gradients(trajectory_balance, policy, batch)
    closed_loss, closed = trajectory_balance_gradients(policy, batch)
    assert set(closed) == set(policy.parameters())
    assert loss > 0 and torch.equal(closed_loss, loss)
    for p, grad in zip(policy.parameters(), grads):
        assert torch.equal(closed[p], grad), p.shape
    assert CLOSED_FORM["tb"] is trajectory_balance_gradients


def test_the_replayed_network_has_the_networks_outputs_and_gradient(generator):
    for env in (Hypergrid(ndim=3, height=4), Sets(n_items=6, set_size=3)):
        policy = peaked_policy(env)
        states = sample_forward(env, policy, 40, generator).states.flatten(0, 1)
        states = states[(states != PAD).all(dim=-1)]  # the padding rows are no states
        with torch.no_grad():
            _, kept = policy.rollout_outputs(states)
        rows = torch.randint(len(states), (50,), generator=generator)  # repeats included
        weights = [torch.randn(50, k, generator=generator) for k in (env.n_actions, env.n_actions - 1)]

        def scalar(out):
            return ((out.forward_logits * weights[0]).sum() + (out.backward_logits * weights[1]).sum()
                    + out.log_flow.sum())

        policy.zero_grad(set_to_none=True)
        replayed = policy.replay(kept, rows)
        scalar(replayed).backward()
        network = policy.network_parameters()
        kept_grads = [p.grad.clone() for p in network]
        policy.zero_grad(set_to_none=True)
        direct = policy(states[rows])
        scalar(direct).backward()
        assert torch.allclose(replayed.forward_logits, direct.forward_logits, atol=1e-6)
        assert torch.allclose(replayed.backward_logits, direct.backward_logits, atol=1e-6)
        assert torch.allclose(replayed.log_flow, direct.log_flow, atol=1e-6)
        for kept_grad, p in zip(kept_grads, network):
            assert torch.allclose(kept_grad, p.grad, rtol=1e-5, atol=1e-6), p.shape


def test_kept_activations_are_ignored_once_the_weights_change(compiled_grid):
    env, policy, sampler = compiled_grid
    batch = sampler(32, torch.Generator().manual_seed(2))
    flat = batch.valid.view(-1).nonzero().squeeze(1)
    # another policy (an average, a copy) never takes them
    other = copy.deepcopy(policy)
    assert batch.activations.replay(other, flat) is None
    # a step of any optimizer makes them stale
    optimizer = torch.optim.SGD(policy.parameters(), lr=1e-3)
    _loss_and_gradients(trajectory_balance, policy, batch)
    optimizer.step()
    assert batch.activations.replay(policy, flat) is None and batch.activations.log_ratio_sum(policy) is None
    assert trajectory_balance_gradients(policy, batch) is None
    assert trajectory_balance_gradients(policy, dataclasses.replace(batch, activations=None)) is None
    assert torch.equal(trajectory_balance(policy, batch),
                       trajectory_balance(policy, dataclasses.replace(batch, activations=None)))
    # concatenated batches drop them (their rows would no longer line up)
    assert Trajectories.cat([sampler(32), sampler(32)]).activations is None


def test_the_trainer_makes_kept_activations_stale_after_its_fused_adam_step():
    """torch.optim.Adam(fused=True) does not bump autograd's version counters; the Trainer does."""
    config = RunConfig(env="hypergrid", env_args=dict(ndim=2, height=5), iters=3, batch_size=8, hidden=16,
                       eval_every=0, compile=True)
    trainer = Trainer(config, progress=False)
    trainer.compiled_sampler.warm_up(8)
    batch = trainer.make_batch()
    flat = batch.valid.view(-1).nonzero().squeeze(1)
    assert batch.activations.replay(trainer.policy, flat) is not None
    trainer.train_step()
    assert batch.activations.replay(trainer.policy, flat) is None


def test_the_trainer_takes_the_closed_form_and_trains_exactly_as_with_autograd():
    config = RunConfig(env="hypergrid", env_args=dict(ndim=2, height=5), iters=3, batch_size=8, hidden=16,
                       eval_every=0, compile=True)
    closed, autograd = Trainer(config, progress=False), Trainer(config, progress=False)
    autograd.closed_form = None
    solved = []
    closed.closed_form = lambda policy, batch: solved.append(trajectory_balance_gradients(policy, batch)) or solved[-1]
    for _ in range(6):
        assert closed.train_step() == autograd.train_step()
    assert len(solved) == 6 and all(s is not None for s in solved)
    for p, q in zip(closed.policy.parameters(), autograd.policy.parameters()):
        assert torch.equal(p, q)


def test_a_users_reward_function_is_called_outside_the_graph(generator):
    """The environment's own reward is computed inside the compiled graph; a user's function is
    arbitrary Python and is called on the final states, validated as always."""
    env = Hypergrid(ndim=2, height=4, reward_fn=lambda objects: 1.0 + objects.sum(dim=1).double())
    sampler = CompiledSampler(env, peaked_policy(env))
    batch = sampler(64, generator)
    assert torch.allclose(batch.log_rewards, (1.0 + batch.terminal_states.sum(dim=1).double()).log())
