"""Speed benchmark on DAG structure learning (DAG-GFlowNet's task, d = 5, BGe): our CLI trainer
against peer libraries (gfnx, torchgfn), same task, objective and network, runs interleaved
(seed by seed, system by system) so machine load hits all alike.

    python bench/dag_speed.py [--iters 3000] [--seeds 0 1 2] [--quick]
                              [--systems ours ours-eager gfnx gfnx-scan torchgfn]
    python bench/dag_speed.py --write-task task.npz [--seed 0]   # the peers' task file alone

The task, identical for every system: DAGs over d = 5 nodes built one edge at a time (action
i * d + j adds i -> j, action d * d stops; every state may stop), R(G) = p(D | G) with the BGe
score of 100 samples of a linear-Gaussian network on an Erdos-Renyi graph with 5 expected edges
(`gflownets train dag`'s data, data seed = the bench seed), uniform prior over graphs. The
harness (bench/table_bench.py) writes every DAG (29,281 of them; `states`: the (d, d)
adjacency) and our log R of each to a file; the peers read their reward from that table
(looked up by the adjacency's bit pattern, bit i * d + j = A[i, j]), so all three optimise the
same numbers.

The settings, for all: modified detailed balance (DAG-GFlowNet's objective, the one torchgfn's
structure-learning example trains with), uniform P_B (no P_B head), no target network, no
replay, batch 32 trajectories sampled with epsilon = 0.1 uniform exploration (the policy mixed
with the uniform distribution over allowed actions: DAG-GFlowNet's off-policy training; on-policy,
modified DB stalls near JSD 0.33 here, as torchgfn's example documents 0.36), Adam lr 1e-3;
the network an MLP 2 x 256 with LeakyReLU(0.01) over the flattened adjacency and transitive closure (50 inputs, our DAG's
`features`), one head of d * d + 1 logits masked by each library's own rule; one thread. Ours runs
twice: `ours` (`--compile`) and `ours-eager` (`--no-compile`); gfnx twice: a Python loop over
its jitted step (`gfnx`) and the whole loop in one jitted `lax.scan` (`gfnx-scan`).

Quality, computed by the harness the same way for every system: the exact distribution over
DAGs each samples, from its log P_F on every state, and its Jensen-Shannon divergence to the
exact posterior (and L1). Time to quality: training seconds until that JSD first falls below
1.5 x the JSD of 200k exact draws of the posterior, and until it first falls below 0.05 (a level
the systems reach in a few thousand iterations).

Writes bench/results/dag_speed.json."""

from __future__ import annotations

import sys

import torch

from hypergrid import BENCH
from table_bench import TableTask, main
from gflownets.envs import DAG

#: the task: d = 5 nodes, 100 samples, BGe, 1 expected edge per node, uniform prior
ENV = {"nodes": 5, "samples": 100, "score": "bge", "edges_per_node": 1.0, "prior": "uniform"}
EXPLORATION = 0.1


def make_env(seed: int) -> DAG:
    return DAG(**ENV, data_seed=seed)


TASK = TableTask(
    name="dag", make_env=make_env,
    train_args=lambda seed: ["dag", *(f"--{k.replace('_', '-')}={v}" for k, v in ENV.items()), f"--data-seed={seed}",
                             "--objective=mdb", "--backward-policy=uniform", "--hidden=256", "--layers=2", "--lr=1e-3",
                             f"--exploration={EXPLORATION}", "--replay-size=0", "--replay-batch=0", "--target-decay=0"],
    encode=lambda env, states: env.adjacency(states).to(torch.int8).cpu().numpy(),
    flat_bits=lambda adjacency: adjacency.reshape(len(adjacency), -1),
    scalars=lambda env: {"nodes": env.d},
    peers={"gfnx": (BENCH / "peers" / "gfnx_dag.py", ["--driver", "loop"]),
           "gfnx-scan": (BENCH / "peers" / "gfnx_dag.py", ["--driver", "scan"]),
           "torchgfn": (BENCH / "peers" / "torchgfn_dag.py", [])},
    peer_args=("--exploration", str(EXPLORATION)), batch_size=32, metric="jsd", level=0.05,
    settings={**ENV, "hidden": 256, "layers": 2, "activation": "leaky_relu(0.01)", "objective": "mdb",
              "backward_policy": "uniform", "exploration": EXPLORATION, "replay": 0, "lr": 1e-3})

if __name__ == "__main__":
    sys.exit(main(TASK, __doc__.splitlines()[0]))
