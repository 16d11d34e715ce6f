"""The training drivers and outputs shared by the gfnx peers (gfnx_dag.py, gfnx_ising.py of
bench/table_bench.py's tasks, gfnx_bitseq.py): `--driver loop` (a Python loop over the jitted step; the first
step, which compiles, timed apart) or `--driver scan` (the iterations between two evaluations in
one jitted `lax.scan`, compiled apart with `.lower().compile()`); evaluations of log P_F on every
task state (or of a test set) at --eval-every and at the end, outside the clock; the evals file
and the JSON line."""

import json
import time

import jax
import numpy as np

from peak_rss import peak_mb


def train_and_evaluate(args, train_step, params, opt_state, key, all_log_probs, collect: bool = False, **extra):
    """Run `args.iters` steps of `train_step(params, opt_state, key) -> (params, opt_state, out)`
    with `args.driver`, evaluating `all_log_probs(params)` (the log P_F table, (N, actions), or any
    array the harness scores) as the harness asks; write `args.evals_out` and print the JSON line
    (with `extra`, and `log_z` of `extra["log_z"](params)` when given). With `collect`, returns
    every step's `out` (a list of per-step pytrees: the loop's, or the scans' stacked outputs)."""
    eval_at = set(range(args.eval_every, args.iters + 1, args.eval_every)) if args.eval_every else set()
    eval_at.add(args.iters)
    evals = {"iterations": [], "seconds": [], "log_probs": []}
    outs = []
    peak_rss_mb = None

    def evaluate(iteration: int, seconds: float) -> None:
        nonlocal peak_rss_mb
        if peak_rss_mb is None:  # training's, before any evaluation work
            peak_rss_mb = peak_mb()
        evals["iterations"].append(iteration)
        evals["seconds"].append(seconds)
        evals["log_probs"].append(np.asarray(all_log_probs(params), dtype=np.float32))

    if args.driver == "loop":
        start = time.perf_counter()
        key, sub = jax.random.split(key)
        params, opt_state, out = train_step(params, opt_state, sub)
        jax.block_until_ready(out)
        compile_seconds = time.perf_counter() - start
        if collect:
            outs.append(out)
        seconds = 0.0
        if 1 in eval_at:
            evaluate(1, seconds)
        start = time.perf_counter()
        for iteration in range(2, args.iters + 1):
            key, sub = jax.random.split(key)
            params, opt_state, out = train_step(params, opt_state, sub)
            if collect:
                outs.append(out)  # (a device array: no transfer, no wait)
            if iteration in eval_at:
                jax.block_until_ready((params, out))  # (the steps dispatched asynchronously)
                seconds += time.perf_counter() - start
                evaluate(iteration, seconds)
                start = time.perf_counter()
        timed = args.iters - 1
    else:
        def body(carry, rng_key):
            p, o = carry
            p, o, out = train_step(p, o, rng_key)
            return (p, o), out

        @jax.jit
        def train(p, o, keys):
            return jax.lax.scan(body, (p, o), keys)

        # one scan per evaluation interval (a shorter last one when E does not divide N)
        bounds = sorted(eval_at)
        spans = np.diff([0] + bounds)
        key, sub = jax.random.split(key)
        keys = jax.random.split(sub, args.iters)
        start = time.perf_counter()
        compiled = {int(n): train.lower(params, opt_state, keys[:n]).compile()  # compilation alone
                    for n in sorted(set(spans.tolist()))}
        compile_seconds = time.perf_counter() - start
        seconds = 0.0
        for first, last, span in zip([0] + bounds[:-1], bounds, spans):
            start = time.perf_counter()
            (params, opt_state), stacked = compiled[int(span)](params, opt_state, keys[first:last])
            jax.block_until_ready((params, stacked))
            seconds += time.perf_counter() - start
            if collect:
                outs.append(stacked)
            evaluate(last, seconds)
        timed = args.iters


    log_z = extra.pop("log_z", None)
    if log_z is not None:
        extra["log_z"] = float(log_z(params))
    np.savez(args.evals_out, iterations=np.asarray(evals["iterations"], dtype=np.int64),
             seconds=np.asarray(evals["seconds"], dtype=np.float64), log_probs=np.stack(evals["log_probs"]))
    print(json.dumps({"iterations": args.iters, "driver": args.driver, "seconds": seconds,
                      "iters_per_s": timed / seconds if seconds else None,
                      "trajectories_per_s": args.batch_size * timed / seconds if seconds else None,
                      "compile_seconds": compile_seconds, "peak_rss_mb": peak_rss_mb, **extra}))
    return outs if collect else None
