"""Speed benchmark on binary vectors with an Ising energy (EB-GFN's task, Zhang et al. 2022): our
CLI trainer against peer libraries (gfnx, torchgfn), same task, objective and network, runs
interleaved (seed by seed, system by system) so machine load hits all alike.

    python bench/ising_speed.py [--iters 3000] [--seeds 0 1 2] [--quick]
                                [--systems ours ours-eager gfnx gfnx-scan torchgfn]
    python bench/ising_speed.py --write-task task.npz     # the peers' task file alone

The task, identical for every system: x in {0, 1}^D, D = 9, built one bit at a time in any
order (action 2 i + v sets bit i to v; exit only once every bit is set), each x reached by D!
orders; log R(x) = J sum_i s_i s_{i+1 mod D} + h sum_i s_i with s = 2x - 1, J = 0.5, h = 0.1 (a
ring: our `bits` environment; the peers' own Ising energies are replaced by this table, written
by the harness, bench/table_bench.py, with every state: `states` (N, D) int8, -1 unset, 0/1 set).
The seeds are training seeds (the reward is the same for all).

The settings, for all: trajectory balance with a learned log Z (Adam lr 0.1), uniform P_B (one
over the number of set bits; no P_B head), on-policy, batch 16, Adam lr 1e-3; the network an MLP
2 x 256 with LeakyReLU(0.01) over the one-hot of each position over {unset, 0, 1} (27 inputs, our
`features`), one head of 2 D + 1 logits masked by each library's own rule (gfnx has no exit
action: a trajectory ends with its D-th bit); one thread. Ours runs compiled (`--compile`) and
eager; gfnx twice (Python loop over its jitted step, and one jitted `lax.scan`).

Quality, computed by the harness alike for every system from its log P_F on all 3^9 = 19,683
states: the exact distribution over the 512 vectors it samples and its L1 (and JSD) to the
target. Time to quality: training seconds until that L1 first falls below 1.5 x the L1 of 200k
exact draws of the target, and until it first falls below 0.1.

Writes bench/results/ising_speed.json."""

from __future__ import annotations

import sys

from hypergrid import BENCH
from table_bench import TableTask, main
from gflownets.envs import Bits

#: the task: 9 bits on a ring, coupling 0.5, field 0.1
ENV = {"dim": 9, "coupling": 0.5, "field": 0.1}

TASK = TableTask(
    name="ising", make_env=lambda seed: Bits(**ENV),
    train_args=lambda seed: ["bits", *(f"--{k}={v}" for k, v in ENV.items()), "--objective=tb",
                             "--backward-policy=uniform", "--hidden=256", "--layers=2", "--lr=1e-3", "--lr-logz=0.1",
                             "--exploration=0"],
    encode=lambda env, states: (states - 1).to(dtype=states.dtype).cpu().numpy().astype("int8"),
    flat_bits=lambda encoded: encoded,
    scalars=lambda env: {"dim": env.dim},
    peers={"gfnx": (BENCH / "peers" / "gfnx_ising.py", ["--driver", "loop"]),
           "gfnx-scan": (BENCH / "peers" / "gfnx_ising.py", ["--driver", "scan"]),
           "torchgfn": (BENCH / "peers" / "torchgfn_ising.py", [])},
    peer_args=("--exploration", "0"), batch_size=16, metric="l1", level=0.1,
    settings={**ENV, "hidden": 256, "layers": 2, "activation": "leaky_relu(0.01)", "objective": "tb",
              "backward_policy": "uniform", "exploration": 0.0, "lr": 1e-3, "lr_logz": 0.1})

if __name__ == "__main__":
    sys.exit(main(TASK, __doc__.splitlines()[0]))
