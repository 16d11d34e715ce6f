"""gfnx 0.0.1 (JAX, CPU) on DAG structure learning (d = 5), modified detailed balance, run by the
peer venv's python for bench/dag_speed.py. The environment is gfnx's own DAGEnvironment and the
trajectories come from gfnx's forward_rollout; only two things are swapped in, through gfnx's own
extension points: the reward module (`TableRewardModule`, a BaseRewardModule whose log R is the
harness's table, `--task`, looked up by the adjacency's bit pattern, instead of gfnx's BGe
module, so every system optimises the same numbers; checked against the table on every DAG, else
the run stops) and the observation (`get_obs` returns the flattened adjacency and transitive
closure, the network's input in every system; gfnx's own is the adjacency alone).

gfnx's action numbering is ours (action i * d + j adds the edge i -> j, d * d stops), and its
`closure_T[i, j]` (j reaches i, diagonal set) is the transpose of our closure, so the closure fed
to the network is closure_T^T without its diagonal. Logits are masked by gfnx's own invalid mask
(an edge already there, or one closing a cycle; stop always allowed).

The objective is DAG-GFlowNet's modified detailed balance, as gfnx's own baseline
(baselines/mdb_dag.py) computes it: roll out with the current policy (no replay; on-policy unless
`--exploration EPS`, which makes each step uniform over the allowed actions with probability EPS,
the way that baseline explores and the same mixture as our trainer's `--exploration`), then
recompute the policy on the trajectory's states inside the loss (one network call over the whole
batch of trajectories) and average the squared residual

    log R(s') + log P_B(s | s') + log P_F(stop | s) - log R(s) - log P_F(s' | s) - log P_F(stop | s')

over every edge-adding transition (stop steps and padding carry none); uniform P_B (-log #edges
of s'), no target network, no log Z; the
squared residual, not gfnx's Huber. The network is ours: an MLP 2 x 256 with LeakyReLU(0.01), one
head of d * d + 1 logits, initialised as bench/peers/gfnx_hypergrid.py does; Adam lr 1e-3, no
clipping, batch 32. Two drivers, as there: `--driver loop` (a Python loop over a jitted train step;
the first step, compilation, timed apart) and `--driver scan` (the iterations between two
evaluations in one jitted `lax.scan`, compiled apart with `.lower().compile()`, outside the clock).

At iterations E, 2E, ... and N (`--eval-every E`), outside the clock, it writes log P_F(a | s) of
every DAG of the task (its order, our action numbering, -inf where gfnx forbids the action) to
`--evals-out` (.npz: iterations, seconds, log_probs), from which the harness computes the exact
distribution over DAGs and its distance to the posterior. Prints one JSON line (iterations,
training seconds, it/s, trajectories/s, compile seconds, peak RSS before any evaluation work)."""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from gfnx.base import BaseRewardModule
from gfnx.environment.dag import DAGEnvironment, EnvState
from gfnx.utils import mask_logits
from gfnx.utils.rollout import forward_rollout
from gfnx_bitseq import trunk  # (LeakyReLU(0.01) after each hidden layer)
from gfnx_hypergrid import head, init_mlp
from gfnx_table import train_and_evaluate


def adjacency_keys(adjacency):
    """(B,) int32 bit pattern of (B, d, d) adjacencies: bit i * d + j is A[i, j] (the harness's key)."""
    flat = adjacency.reshape(adjacency.shape[0], -1).astype(jnp.int32)
    return jnp.sum(flat << jnp.arange(flat.shape[1], dtype=jnp.int32), axis=1)


class TableRewardModule(BaseRewardModule):
    """log R(G) read from the harness's table (keys sorted), whatever the state's stage."""

    def __init__(self, keys_sorted: np.ndarray, log_r_sorted: np.ndarray):
        self.keys = jnp.asarray(keys_sorted, dtype=jnp.int32)  # d * d = 25 bits: fits
        self.log_r = jnp.asarray(log_r_sorted, dtype=jnp.float32)

    def init(self, rng_key, dummy_state):
        return {"keys": self.keys, "log_r": self.log_r}

    def log_reward(self, state, env_params):
        table = env_params.reward_params
        return table["log_r"][jnp.searchsorted(table["keys"], adjacency_keys(state.adjacency_matrix))]

    def reward(self, state, env_params):
        return jnp.exp(self.log_reward(state, env_params))


class DAGClosureObs(DAGEnvironment):
    """gfnx's DAG environment observed as concat(flat A, flat C), C[i, j] = 1 iff a path i -> j
    of length >= 1 (gfnx's closure_T transposed, without its diagonal), float 0/1."""

    def get_obs(self, state, env_params):
        d = self.num_variables
        closure = jnp.swapaxes(state.closure_T, -1, -2) & ~jnp.eye(d, dtype=jnp.bool_)
        batch = state.adjacency_matrix.shape[0]
        return jnp.concatenate([state.adjacency_matrix.reshape(batch, d * d), closure.reshape(batch, d * d)],
                               axis=1).astype(jnp.float32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", required=True, help=".npz from bench/dag_speed.py --write-task")
    parser.add_argument("--evals-out", required=True, help=".npz of log P_F on every state at each evaluation")
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-every", type=int, default=0, help="evaluate every E iterations (0: only at the end)")
    parser.add_argument("--driver", choices=["loop", "scan"], default="loop")
    parser.add_argument("--exploration", type=float, default=0.0,
                        help="probability of a uniform action (over the allowed ones) per step; 0: on-policy")
    args = parser.parse_args()

    task = np.load(args.task)
    d = int(task["nodes"])
    n_act = d * d + 1
    env = DAGClosureObs(TableRewardModule(task["keys_sorted"], task["log_r_sorted"]), num_variables=d)
    stop = env.stop_action
    assert stop == d * d
    key = jax.random.PRNGKey(args.seed)
    key, k_env, k_t, k_f = jax.random.split(key, 4)
    env_params = env.init(k_env)

    # every DAG of the task as a gfnx state, closure_T by gfnx's own routine (on A^T, as its
    # backward step computes it)
    adjacency = jnp.asarray(task["states"], dtype=jnp.bool_)
    all_states = EnvState(
        adjacency_matrix=adjacency,
        closure_T=jax.jit(jax.vmap(lambda a: env._single_compute_closure(a.T)))(adjacency),
        is_terminal=jnp.zeros(len(adjacency), dtype=jnp.bool_),
        is_initial=~jnp.any(adjacency, axis=(1, 2)),
        is_pad=jnp.zeros(len(adjacency), dtype=jnp.bool_))
    log_r_diff = float(np.abs(np.asarray(env.reward_module.log_reward(all_states, env_params), dtype=np.float64)
                              - task["log_r"]).max())
    if log_r_diff > 1e-3:
        raise SystemExit(f"the reward table's lookup differs from the task's log R by up to {log_r_diff}")

    params = {"trunk": init_mlp(k_t, [2 * d * d, 256, 256]), "pf": init_mlp(k_f, [256, n_act])[0]}
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(params)

    def policy_fn(rng_key, obs, p):
        fwd = head(p["pf"], trunk(p["trunk"], obs))
        return fwd, {"forward_logits": fwd}

    def sampling_policy_fn(rng_key, obs, p):
        """The rollout's policy: with probability `--exploration` per state, uniform over the allowed
        actions (zero logits, masked by gfnx), as gfnx's own baselines/mdb_dag.py explores."""
        fwd, info = policy_fn(rng_key, obs, p)
        if args.exploration:
            explore = jax.random.bernoulli(rng_key, args.exploration, (fwd.shape[0],))
            fwd = jnp.where(explore[:, None], 0.0, fwd)
        return fwd, info

    def flat(tree):
        return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)

    def loss_fn(p, traj):
        batch, length = traj.action.shape
        states = flat(traj.state)
        logits = policy_fn(None, flat(traj.obs), p)[0]
        log_pf = jax.nn.log_softmax(mask_logits(logits, env.get_invalid_mask(states, env_params)), axis=-1)
        log_pf = log_pf.reshape(batch, length, n_act)
        log_r = env.reward_module.log_reward(states, env_params).reshape(batch, length)
        n_edges = jnp.sum(traj.state.adjacency_matrix, axis=(2, 3))
        action = traj.action[:, :-1]
        # an edge added from a non-terminal state (pad: the state was already terminal)
        edge = ~traj.pad[:, :-1] & (action != stop)
        log_pf_action = jnp.take_along_axis(log_pf[:, :-1], action[..., None], axis=-1)[..., 0]
        log_pb = -jnp.log(jnp.maximum(n_edges[:, 1:], 1))
        residual = (log_r[:, 1:] + log_pb + log_pf[:, :-1, stop]
                    - log_r[:, :-1] - log_pf_action - log_pf[:, 1:, stop])
        return jnp.sum(jnp.where(edge, residual ** 2, 0.0)) / jnp.maximum(jnp.sum(edge), 1)

    @jax.jit
    def train_step(p, o, rng_key):
        traj, _ = forward_rollout(rng_key, args.batch_size, sampling_policy_fn, p, env, env_params)
        loss, grads = jax.value_and_grad(loss_fn)(p, traj)
        updates, o = optimizer.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    @jax.jit
    def all_log_probs(p):
        obs = env.get_obs(all_states, env_params)
        invalid = env.get_invalid_mask(all_states, env_params)
        log_probs = jax.nn.log_softmax(mask_logits(policy_fn(None, obs, p)[0], invalid), axis=-1)
        return jnp.where(invalid, -jnp.inf, log_probs)

    train_and_evaluate(args, train_step, params, opt_state, key, all_log_probs, log_r_max_abs_diff=log_r_diff)


if __name__ == "__main__":
    main()
