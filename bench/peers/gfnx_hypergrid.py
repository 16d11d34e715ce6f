"""gfnx 0.0.1 (JAX, CPU) on its HypergridEnvironment, trajectory balance (gfnx's forward_rollout +
forward_trajectory_log_probs inside the loss), run by the peer venv's python. The network is
ours: one MLP trunk (2 x 256) with a P_F head and a P_B head. Two drivers: `--driver loop`, a
Python loop over a jitted train step; `--driver scan`, the whole training loop in one jitted
`jax.lax.scan`, as gfnx's own baselines run it. The first call (compilation) is timed apart as
compile_seconds. Prints one JSON line."""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from gfnx import HypergridEnvironment
from gfnx.reward.hypergrid import GeneralHypergridRewardModule
from gfnx.utils.rollout import forward_rollout, forward_trajectory_log_probs
from hypergrid_exact import all_states, forward_mask, terminal_distribution
from peak_rss import peak_mb


def init_mlp(key, sizes):
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        key, sub = jax.random.split(key)
        bound = 1 / jnp.sqrt(fan_in)
        params.append((jax.random.uniform(sub, (fan_in, fan_out), minval=-bound, maxval=bound),
                       jnp.zeros(fan_out)))
    return params


def trunk(params, x):
    for w, b in params:
        x = jax.nn.relu(x @ w + b)
    return x


def head(params, x):
    w, b = params
    return x @ w + b


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ndim", type=int, default=2)
    parser.add_argument("--height", type=int, default=8)
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--driver", choices=["loop", "scan"], default="loop")
    parser.add_argument("--eval-every", type=int, default=0, help="exact L1 every N iterations (not timed)")
    args = parser.parse_args()

    env = HypergridEnvironment(GeneralHypergridRewardModule(R0=0.1, R1=0.5, R2=2.0),
                               dim=args.ndim, side=args.height)
    key = jax.random.PRNGKey(args.seed)
    key, k_env, k_t, k_f, k_b = jax.random.split(key, 5)
    env_params = env.init(k_env)
    n_in, n_act = args.ndim * args.height, args.ndim + 1
    params = {"trunk": init_mlp(k_t, [n_in, 256, 256]), "pf": init_mlp(k_f, [256, n_act])[0],
              "pb": init_mlp(k_b, [256, n_act - 1])[0], "logZ": jnp.zeros(())}
    optimizer = optax.multi_transform(
        {"net": optax.adam(1e-3), "logz": optax.adam(0.1)},
        {"trunk": "net", "pf": "net", "pb": "net", "logZ": "logz"})
    opt_state = optimizer.init(params)

    def policy_fn(rng_key, obs, p):
        hidden = trunk(p["trunk"], obs)
        fwd = head(p["pf"], hidden)
        return fwd, {"forward_logits": fwd, "backward_logits": head(p["pb"], hidden)}

    def loss_fn(p, rng_key):
        traj, info = forward_rollout(rng_key, args.batch_size, policy_fn, p, env, env_params)
        log_pf, log_pb = forward_trajectory_log_probs(env, traj, env_params)
        return jnp.mean((p["logZ"] + log_pf - log_pb - info["log_gfn_reward"]) ** 2)

    @jax.jit
    def train_step(p, o, rng_key):
        loss, grads = jax.value_and_grad(loss_fn)(p, rng_key)
        updates, o = optimizer.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    grid = all_states(args.ndim, args.height)
    features = jax.nn.one_hot(jnp.asarray(grid), args.height).reshape(len(grid), -1)  # gfnx's get_obs
    allowed = jnp.asarray(forward_mask(grid, args.height))
    exact_target = np.asarray(env.get_true_distribution(env_params)).reshape(-1).astype(np.float64)

    def exact_l1(p) -> float:
        logits = jnp.where(allowed, policy_fn(None, features, p)[0], -jnp.inf)
        probs = np.asarray(jax.nn.softmax(logits, axis=1), dtype=np.float64)
        return float(np.abs(terminal_distribution(probs, args.ndim, args.height) - exact_target).sum())

    curve = []
    if args.driver == "loop":
        start = time.perf_counter()
        key, sub = jax.random.split(key)
        params, opt_state, loss = train_step(params, opt_state, sub)
        jax.block_until_ready(loss)
        compile_seconds = time.perf_counter() - start

        seconds = 0.0
        for iteration in range(2, args.iters + 1):
            start = time.perf_counter()
            key, sub = jax.random.split(key)
            params, opt_state, loss = train_step(params, opt_state, sub)
            evaluate = args.eval_every and (iteration % args.eval_every == 0 or iteration == args.iters)
            if evaluate:
                jax.block_until_ready(params)  # (the clock stops when the step is done)
            seconds += time.perf_counter() - start
            if evaluate:
                curve.append({"iteration": iteration, "seconds": seconds, "l1": exact_l1(params)})
        start = time.perf_counter()
        jax.block_until_ready((params, loss))  # (the last steps dispatched asynchronously)
        seconds += time.perf_counter() - start
        timed = args.iters - 1
    else:
        def body(carry, rng_key):
            p, o = carry
            p, o, loss = train_step(p, o, rng_key)
            return (p, o), loss

        @jax.jit
        def train(p, o, keys):
            return jax.lax.scan(body, (p, o), keys)

        # the whole loop in one scan; with --eval-every, one scan per evaluation interval
        span = args.eval_every if args.eval_every and args.iters % args.eval_every == 0 else args.iters
        key, sub = jax.random.split(key)
        keys = jax.random.split(sub, args.iters).reshape(args.iters // span, span, -1)
        start = time.perf_counter()
        compiled = train.lower(params, opt_state, keys[0]).compile()  # compilation alone, timed apart
        compile_seconds = time.perf_counter() - start
        seconds = 0.0
        for part, part_keys in enumerate(keys, start=1):
            start = time.perf_counter()
            (params, opt_state), losses = compiled(params, opt_state, part_keys)
            jax.block_until_ready((params, losses))
            seconds += time.perf_counter() - start
            if args.eval_every:
                curve.append({"iteration": part * span, "seconds": seconds, "l1": exact_l1(params)})
        timed = args.iters

    chunk = 10_000

    @jax.jit
    def sample(p, rng_key):
        traj, _ = forward_rollout(rng_key, chunk, policy_fn, p, env, env_params)
        final = jax.tree.map(lambda x: x[:, -1], traj.state)
        return final.state.astype(jnp.int32) @ (args.height ** jnp.arange(args.ndim - 1, -1, -1))

    counts = jnp.zeros(args.height ** args.ndim)
    drawn = 0
    while drawn < args.samples:
        key, sub = jax.random.split(key)
        counts = counts + jnp.bincount(sample(params, sub), length=counts.size)
        drawn += chunk
    true = env.get_true_distribution(env_params).reshape(-1)
    l1 = float(jnp.abs(counts / counts.sum() - true).sum())
    print(json.dumps({"iterations": args.iters, "driver": args.driver, "seconds": seconds, "iters_per_s": timed / seconds,
                      "trajectories_per_s": args.batch_size * timed / seconds, "l1_samples": l1,
                      "compile_seconds": compile_seconds,
                      "peak_rss_mb": peak_mb(), "curve": curve}))


if __name__ == "__main__":
    main()
