"""The fixed-shape rollout behind `--compile`: it samples the policy exactly, the compiled graph
makes the same trajectories as the same code run eagerly, and training with it learns the target."""

import pytest
import torch

from gflownets.envs import BitSeq, Hypergrid, Sets
from gflownets.errors import ConfigError
from gflownets.evaluation import StateGraph
from gflownets.objectives import trajectory_balance
from gflownets.policies import MLPPolicy
from gflownets.sampling import PAD
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
    _, _, lengths, objects = fixed_step_batch(env, policy, 100_000, torch.Generator().manual_seed(0))
    assert (lengths > 0).all()
    counts = torch.bincount(graph.terminal_positions(objects), minlength=len(exact))
    assert_matches(exact, counts)


def test_fixed_step_trajectories_are_the_padded_batches_of_sample_forward(generator):
    env = Hypergrid(ndim=3, height=4)
    policy = peaked_policy(env)
    states, actions, lengths, last = fixed_step_batch(env, policy, 300, generator, gamma=0.4)
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
        _, cut_actions, cut, _ = rollout_fixed_steps(env, policy, torch.rand(2, 300, env.n_actions, generator=generator))
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


def test_a_rollout_that_does_not_trace_is_a_clear_error():
    env = _BranchingGrid(ndim=2, height=3)
    sampler = CompiledSampler(env, MLPPolicy(env, hidden=8))
    with pytest.raises(ConfigError, match="could not build the hypergrid rollout.*without --compile"):
        sampler.warm_up(4)

