"""gfnx 0.0.1 (JAX, CPU) on the Ising / discrete-EBM task (x in {0, 1}^D built one bit at a time in
any order, Zhang et al. 2022), trajectory balance, run by the peer venv's python. The environment
is gfnx's own IsingEnvironment and the trajectories come from gfnx's forward_rollout, their log P_F
and log P_B from gfnx's forward_trajectory_log_probs; only the reward is swapped in, through gfnx's
own extension point: `TableRewardModule`, a BaseRewardModule whose log R is the harness's table
(`--task`), looked up by key = sum_i x_i << i, instead of gfnx's Ising energy module, so every
system optimises the same numbers (checked against the task's log R on every complete state, else
the run stops).

gfnx's action numbering: action i (< D) sets position i to 0, action D + i sets it to 1 (ours:
2 i + v), and gfnx has no exit action: a trajectory ends when its D-th position is set. So there
is no exit step; P_F(exit | x) = 1 on a complete x in every system (the only allowed action), and
the evaluation writes log P_F(exit | x) = 0 there (-inf elsewhere). The network's exit logit is
computed (the head has 2 D + 1 outputs as in every system) but gfnx never uses it.

The network is ours: one-hot of each position over {unset, 0, 1} (3 D floats, position-major;
gfnx's observation is the raw {-1, 0, 1} vector, turned into features inside the policy), an MLP
2 x 256 with LeakyReLU(0.01), one head of 2 D + 1 logits whose first 2 D rows are read in gfnx's
action order (a fixed relabelling of the rows: the same function class and initialisation),
initialised as bench/peers/gfnx_hypergrid.py does; masked by gfnx's own invalid mask (a set
position). Uniform backward policy: zero backward logits under gfnx's backward mask (the set
positions), so log P_B = -log(number of set positions of the child). A learned log Z (init 0).
Adam lr 1e-3 for the network and 0.1 for log Z (optax.multi_transform), no clipping, batch 16,
on-policy unless `--exploration EPS` (each step uniform over the allowed actions with probability
EPS, as bench/peers/gfnx_dag.py explores; the loss keeps the policy's own logits).

Two drivers, as bench/peers/gfnx_dag.py: `--driver loop` (a Python loop over a jitted train step;
the first step, compilation, timed apart) and `--driver scan` (the iterations between two
evaluations in one jitted `lax.scan`, compiled apart with `.lower().compile()`, outside the clock).

At iterations E, 2E, ... and N (`--eval-every E`), outside the clock, it writes log P_F(a | s) of
every state of the task (its order, our action numbering, -inf where gfnx forbids the action) to
`--evals-out` (.npz: iterations, seconds, log_probs), from which the harness computes the exact
distribution over complete states. Prints one JSON line (iterations, training seconds, it/s,
trajectories/s, compile seconds, peak RSS before any evaluation work)."""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from gfnx.base import BaseRewardModule
from gfnx.environment.ising import EnvState, IsingEnvironment
from gfnx.utils import mask_logits
from gfnx.utils.rollout import forward_rollout, forward_trajectory_log_probs
from gfnx_bitseq import trunk  # (LeakyReLU(0.01) after each hidden layer)
from gfnx_hypergrid import head, init_mlp
from gfnx_table import train_and_evaluate


def bit_keys(x):
    """(B,) int32 key sum_i [x_i = 1] << i of (B, D) {-1, 0, 1} vectors (the harness's key)."""
    bits = (x == 1).astype(jnp.int32)
    return jnp.sum(bits << jnp.arange(x.shape[-1], dtype=jnp.int32), axis=-1)


class TableRewardModule(BaseRewardModule):
    """log R(x) read from the harness's table (keys sorted), whatever the state's stage."""

    def __init__(self, keys_sorted: np.ndarray, log_r_sorted: np.ndarray):
        self.keys = jnp.asarray(keys_sorted, dtype=jnp.int32)
        self.log_r = jnp.asarray(log_r_sorted, dtype=jnp.float32)

    def init(self, rng_key, dummy_state):
        return {"keys": self.keys, "log_r": self.log_r}

    def log_reward(self, state, env_params):
        table = env_params.reward_params
        index = jnp.clip(jnp.searchsorted(table["keys"], bit_keys(state.state)), 0, len(self.keys) - 1)
        return table["log_r"][index]

    def reward(self, state, env_params):
        return jnp.exp(self.log_reward(state, env_params))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", required=True, help=".npz of the Ising task (states, log R table)")
    parser.add_argument("--evals-out", required=True, help=".npz of log P_F on every state at each evaluation")
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-every", type=int, default=0, help="evaluate every E iterations (0: only at the end)")
    parser.add_argument("--driver", choices=["loop", "scan"], default="loop")
    parser.add_argument("--exploration", type=float, default=0.0,
                        help="probability of a uniform action (over the allowed ones) per step; 0: on-policy")
    args = parser.parse_args()

    task = np.load(args.task)
    d = int(task["dim"])
    n_act = 2 * d + 1  # ours: 2 i + v sets position i to v, 2 d exits
    env = IsingEnvironment(TableRewardModule(task["keys_sorted"], task["log_r_sorted"]), dim=d)
    assert env.action_space.n == 2 * d  # gfnx: i sets i to 0, d + i sets i to 1; no exit
    # column of gfnx's action a in our numbering
    ours_of_gfnx = np.concatenate([2 * np.arange(d), 2 * np.arange(d) + 1])
    key = jax.random.PRNGKey(args.seed)
    key, k_env, k_t, k_f = jax.random.split(key, 4)
    env_params = env.init(k_env)

    # every state of the task as a gfnx state
    states = jnp.asarray(task["states"], dtype=jnp.int8)
    terminal = np.asarray(task["terminal"], dtype=bool)
    all_states = EnvState(
        state=states,
        time=jnp.sum(states != -1, axis=1).astype(jnp.int32),
        is_terminal=jnp.asarray(terminal),
        is_initial=jnp.all(states == -1, axis=1),
        is_pad=jnp.zeros(len(states), dtype=jnp.bool_))
    log_r = np.asarray(env.reward_module.log_reward(all_states, env_params), dtype=np.float64)
    log_r_diff = float(np.abs(log_r[terminal] - task["log_r"][terminal]).max())
    if not log_r_diff <= 1e-4:
        raise SystemExit(f"the reward table's lookup differs from the task's log R by up to {log_r_diff}")

    params = {"trunk": init_mlp(k_t, [3 * d, 256, 256]), "pf": init_mlp(k_f, [256, n_act])[0],
              "logZ": jnp.zeros(())}
    optimizer = optax.multi_transform({"net": optax.adam(1e-3), "logz": optax.adam(0.1)},
                                      {"trunk": "net", "pf": "net", "logZ": "logz"})
    opt_state = optimizer.init(params)

    def features(obs):
        """gfnx's observation is the {-1, 0, 1} vector: one-hot over {unset, 0, 1}, position-major."""
        return jax.nn.one_hot(obs.astype(jnp.int32) + 1, 3).reshape(obs.shape[0], 3 * d)

    def policy_fn(rng_key, obs, p):
        # the first 2 d logits in gfnx's order; the exit logit (last) has no gfnx action
        fwd = head(p["pf"], trunk(p["trunk"], features(obs)))[:, :2 * d]
        # uniform P_B: equal logits under gfnx's backward mask (the set positions)
        return fwd, {"forward_logits": fwd, "backward_logits": jnp.zeros((obs.shape[0], d))}

    def sampling_policy_fn(rng_key, obs, p):
        """The rollout's policy: with probability `--exploration` per state, uniform over the allowed
        actions (zero logits, masked by gfnx); the info keeps the policy's own logits for the loss."""
        fwd, info = policy_fn(rng_key, obs, p)
        if args.exploration:
            explore = jax.random.bernoulli(rng_key, args.exploration, (fwd.shape[0],))
            fwd = jnp.where(explore[:, None], 0.0, fwd)
        return fwd, info

    def loss_fn(p, rng_key):
        traj, info = forward_rollout(rng_key, args.batch_size, sampling_policy_fn, p, env, env_params)
        log_pf, log_pb = forward_trajectory_log_probs(env, traj, env_params)
        return jnp.mean((p["logZ"] + log_pf - log_pb - info["log_gfn_reward"]) ** 2)

    @jax.jit
    def train_step(p, o, rng_key):
        loss, grads = jax.value_and_grad(loss_fn)(p, rng_key)
        updates, o = optimizer.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    terminal_j = jnp.asarray(terminal)

    @jax.jit
    def all_log_probs(p):
        obs = env.get_obs(all_states, env_params)
        invalid = env.get_invalid_mask(all_states, env_params)
        log_probs = jax.nn.log_softmax(mask_logits(policy_fn(None, obs, p)[0], invalid), axis=-1)
        log_probs = jnp.where(invalid, -jnp.inf, log_probs)  # complete states: every column masked
        out = jnp.full((len(states), n_act), -jnp.inf).at[:, ours_of_gfnx].set(log_probs)
        return out.at[:, 2 * d].set(jnp.where(terminal_j, 0.0, -jnp.inf))  # the implicit exit

    train_and_evaluate(args, train_step, params, opt_state, key, all_log_probs, log_z=lambda p: p["logZ"],
                       log_r_max_abs_diff=log_r_diff)


if __name__ == "__main__":
    main()
