"""gfnx 0.0.1 (JAX, CPU) on append-only bit sequences, trajectory balance, run by the peer venv's
python for bench/bitseq_speed.py. The environment is gfnx's FixedAutoregressiveSequenceEnvironment
(15 tokens of 256; no exit action: a trajectory ends with its 15th token), the reward gfnx's own
bitseq module fed the harness's modes (`--task`, written by the harness) instead of a draw of
gfnx's generator. Its log R of the harness's test sequences must equal ours, else the run stops.

The network is ours: one-hot of each position over {empty, token 0..255}, an MLP 2 x 256 with
LeakyReLU(0.01), one forward head of 256, a learned log Z; the backward policy is the single
"remove the last token" action (log P_B = 0). Two drivers (`gfnx_table`, shared with the table
peers): `--driver loop` (a Python loop over a jitted train step; the first step, compilation,
timed apart) and `--driver scan` (the iterations between two evaluations in one jitted
`lax.scan`, compiled apart).

At --eval-every and at the end, outside the clock, the exact log p(x) of the test sequences
goes to `--evals-out` (.npz: iterations, seconds, log_probs (evaluations, test size)). Prints
one JSON line (iterations, seconds, it/s, compile seconds, peak RSS) and saves the training
samples' tokens to `--samples-out` (.npy), from which the harness counts the modes found."""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from gfnx.environment.sequence import EnvState, FixedAutoregressiveSequenceEnvironment
from gfnx.reward.bitseq import BitseqRewardModule
from gfnx.utils.rollout import forward_rollout, forward_trajectory_log_probs
from gfnx_hypergrid import head, init_mlp
from gfnx_table import train_and_evaluate

#: the slope of our trunk's LeakyReLU (gflownets.policies.mlp.NEGATIVE_SLOPE)
NEGATIVE_SLOPE = 0.01


class HarnessModesReward(BitseqRewardModule):
    """gfnx's bitseq reward, log R = -reward_exponent * d / n with d the Hamming distance (bits
    of a token most significant first) to the nearest mode, on the harness's modes."""

    def __init__(self, modes: np.ndarray, token_bits: int, beta: float):
        super().__init__(sentence_len=modes.shape[1], k=token_bits, mode_set_size=modes.shape[0],
                         reward_exponent=beta)
        self.modes = jnp.asarray(modes, dtype=jnp.bool_)

    def init(self, rng_key, dummy_state):
        return {"mode_set": self.modes}


def trunk(params, x):
    for w, b in params:
        x = jax.nn.leaky_relu(x @ w + b, NEGATIVE_SLOPE)
    return x


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", required=True, help=".npz from bench/bitseq_speed.py: modes, test set, log R")
    parser.add_argument("--samples-out", required=True, help=".npy of the training samples' tokens")
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--driver", choices=["loop", "scan"], default="loop")
    parser.add_argument("--eval-every", type=int, default=0, help="evaluate every N iterations (0: at the end only)")
    parser.add_argument("--evals-out", required=True, help=".npz: iterations, seconds, log_probs (of the test set)")
    args = parser.parse_args()

    task = np.load(args.task)
    token_bits, beta = int(task["token_bits"]), float(task["beta"])
    vocab, n_tokens = 2 ** token_bits, task["modes"].shape[1] // token_bits
    pad = vocab
    env = FixedAutoregressiveSequenceEnvironment(
        HarnessModesReward(task["modes"], token_bits, beta), max_length=n_tokens, nchar=vocab,
        ntoken=vocab + 3, bos_token=vocab + 1, eos_token=vocab + 2, pad_token=pad)  # gfnx's bitseq ids
    key = jax.random.PRNGKey(args.seed)
    key, k_env, k_t, k_f = jax.random.split(key, 4)
    env_params = env.init(k_env)

    test = jnp.asarray(task["test_tokens"], dtype=jnp.int32)
    log_r = np.asarray(env.reward_module.log_reward(EnvState.from_tokens(test), env_params), dtype=np.float64)
    log_r_diff = float(np.abs(log_r - task["test_log_r"]).max())
    if log_r_diff > 1e-4:
        raise SystemExit(f"gfnx's log R of the test sequences differs from ours by up to {log_r_diff}")

    params = {"trunk": init_mlp(k_t, [n_tokens * (vocab + 1), 256, 256]), "pf": init_mlp(k_f, [256, vocab])[0],
              "logZ": jnp.zeros(())}
    optimizer = optax.multi_transform({"net": optax.adam(1e-3), "logz": optax.adam(0.5)},
                                      {"trunk": "net", "pf": "net", "logZ": "logz"})
    opt_state = optimizer.init(params)

    def features(obs):
        """gfnx's observation is [BOS, tokens padded with PAD]: one-hot over {PAD, 0..V-1}."""
        tokens = obs[:, 1:]
        return jax.nn.one_hot(jnp.where(tokens == pad, 0, tokens + 1), vocab + 1).reshape(len(obs), -1)

    def policy_fn(rng_key, obs, p):
        fwd = head(p["pf"], trunk(p["trunk"], features(obs)))
        # one backward action (remove the last token): log P_B = 0
        return fwd, {"forward_logits": fwd, "backward_logits": jnp.zeros((len(obs), 1))}

    def loss_fn(p, rng_key):
        traj, info = forward_rollout(rng_key, args.batch_size, policy_fn, p, env, env_params)
        log_pf, log_pb = forward_trajectory_log_probs(env, traj, env_params)
        loss = jnp.mean((p["logZ"] + log_pf - log_pb - info["log_gfn_reward"]) ** 2)
        return loss, info["final_env_state"].tokens

    @jax.jit
    def train_step(p, o, rng_key):
        (loss, tokens), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, rng_key)
        updates, o = optimizer.update(grads, o, p)
        return optax.apply_updates(p, updates), o, tokens

    @jax.jit
    def log_prob(p, tokens):
        """Exact log p(x) of full sequences: the sum over the 15 appends of log P_F(token | prefix)
        (every action is allowed before the end; there is no exit step)."""
        positions = jnp.arange(n_tokens)
        total = jnp.zeros(len(tokens))
        for t in range(n_tokens):
            prefix = EnvState.from_tokens(jnp.where(positions < t, tokens, pad))
            logits = policy_fn(None, env.get_obs(prefix, env_params), p)[0]
            total = total + jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[:, t:t + 1], axis=1)[:, 0]
        return total

    # check of the by-hand log p against gfnx's own log P_F of sampled trajectories (before training)
    traj, info = forward_rollout(jax.random.PRNGKey(1), 64, policy_fn, params, env, env_params)
    rollout_log_pf = forward_trajectory_log_probs(env, traj, env_params)[0]
    log_p_diff = float(jnp.abs(log_prob(params, info["final_env_state"].tokens) - rollout_log_pf).max())
    if log_p_diff > 1e-3:
        raise SystemExit(f"the test set's log p(x) disagrees with gfnx's trajectory log P_F by up to {log_p_diff}")

    samples = train_and_evaluate(args, train_step, params, opt_state, key, lambda p: log_prob(p, test), collect=True,
                                 log_z=lambda p: p["logZ"], log_r_max_abs_diff=log_r_diff,
                                 log_p_check_max_abs_diff=log_p_diff)
    np.save(args.samples_out, np.concatenate([np.asarray(s).reshape(-1, n_tokens) for s in samples]).astype(np.int64))


if __name__ == "__main__":
    main()
