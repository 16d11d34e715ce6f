"""Speed benchmark on sets (items added one at a time, each set reached by k! orders): our CLI
trainer against torchgfn (`SetAddition`; gfnx ships no sets environment), same task, objective
and network, runs interleaved (seed by seed, system by system).

    python bench/sets_speed.py [--iters 3000] [--seeds 0 1 2] [--quick] [--systems ours ours-eager torchgfn]
    python bench/sets_speed.py --write-task task.npz     # the peers' task file alone

The task, identical for both: sets of exactly k = 4 of n = 10 items (action i adds item i; exit
exactly when the set is full), log R(S) = 2 (sum_{i in S} v_i + sum_{i<j in S} v_i v_j / k) with
item values v ~ U(-1, 1) of reward seed 0 (our `sets` environment; torchgfn reads this table,
written by the harness, bench/table_bench.py, with every state: `states` (N, n) int8 0/1). The
seeds are training seeds.

The settings, for both: trajectory balance with a learned log Z (Adam lr 0.1), uniform P_B (no
P_B head), on-policy, batch 16, Adam lr 1e-3; the network an MLP 2 x 256 with LeakyReLU(0.01)
over the membership vector (n inputs), one head of n + 1 logits masked by each library's own
rule; one thread. Ours runs compiled (`--compile`) and eager.

Quality, computed by the harness alike from each system's log P_F on all 386 states: the exact
distribution over the 210 sets and its L1 (and JSD) to the target; time to quality: training
seconds until that L1 first falls below 1.5 x the L1 of 200k exact draws, and below 0.1.

Writes bench/results/sets_speed.json."""

from __future__ import annotations

import sys

from hypergrid import BENCH
from table_bench import TableTask, main
from gflownets.envs import Sets

#: the task: 4 of 10 items, item values of reward seed 0, beta 2
ENV = {"n_items": 10, "set_size": 4}

TASK = TableTask(
    name="sets", make_env=lambda seed: Sets(**ENV),
    train_args=lambda seed: ["sets", *(f"--{k.replace('_', '-')}={v}" for k, v in ENV.items()), "--objective=tb",
                             "--backward-policy=uniform", "--hidden=256", "--layers=2", "--lr=1e-3", "--lr-logz=0.1",
                             "--exploration=0"],
    encode=lambda env, states: states.cpu().numpy().astype("int8"),
    flat_bits=lambda encoded: encoded,
    scalars=lambda env: {"n_items": env.n_items, "set_size": env.set_size},
    peers={"torchgfn": (BENCH / "peers" / "torchgfn_sets.py", [])},
    peer_args=("--exploration", "0"), batch_size=16, metric="l1", level=0.1,
    settings={**ENV, "hidden": 256, "layers": 2, "activation": "leaky_relu(0.01)", "objective": "tb",
              "backward_policy": "uniform", "exploration": 0.0, "lr": 1e-3, "lr_logz": 0.1})

if __name__ == "__main__":
    sys.exit(main(TASK, __doc__.splitlines()[0]))
