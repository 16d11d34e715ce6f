"""torchgfn 2.4.1 on the Ising / discrete-EBM task (`gfn.gym.DiscreteEBM`, x in {0, 1}^D built one
bit at a time in any order, Zhang et al. 2022), trajectory balance (`TBGFlowNet`), run by the peer
venv's python. The environment is torchgfn's own DiscreteEBM and the trajectories come from its
own sampler (`sample_trajectories(..., save_logprobs=True)`); only the reward is swapped in,
through DiscreteEBM's own extension point, its `energy`: `TableEnergy` returns -log R(x) from the
harness's table (`--task`), looked up by key = sum_i x_i << i, instead of the IsingModel, and
alpha = 1, so DiscreteEBM's log R = -alpha * energy is the harness's (checked against the task's
log R on every complete state, else the run stops). torchgfn keeps log R in float32.

torchgfn's action numbering: action i (< D) sets position i to 0, D + i sets it to 1, 2 D exits
(allowed only when no position is unset, and then the only allowed action); ours: 2 i + v, 2 D.
The backward actions are the first 2 D (i undoes a 0 at i, D + i undoes a 1 at i).

The network is ours: one-hot of each position over {unset, 0, 1} (3 D floats, position-major, a
torchgfn Preprocessor; torchgfn's sink state, every position 2, never reaches the policy and is
clamped into range), torchgfn's `MLP` 2 x 256 with `activation_fn="leaky_relu"` (slope 0.01), one
linear head of 2 D + 1 logits whose rows are read in torchgfn's action order (a fixed relabelling
of ours: the same function class and initialisation), masked by torchgfn's forward masks. Uniform
backward policy: `DiscretePolicyEstimator.uniform` (zero logits under torchgfn's backward masks,
so log P_B = -log(number of set positions of the child)); no P_B network. A learned log Z (init
0). Adam lr 1e-3 for the network and 0.1 for log Z (two parameter groups), no clipping, batch 16,
on-policy unless `--exploration EPS` (torchgfn's `epsilon`: each step's distribution mixed with
the uniform one over the allowed actions; the loss then recomputes the policy's log P_F). One thread.

The clock covers sampling, the loss, backward and the optimizer step. Evaluations (outside the
clock) at --eval-every and at the end write --evals-out (.npz): iterations, training seconds, and
log P_F(a | s) of every task state (task order) in our action numbering, from torchgfn's own
distribution (the estimator's output through `to_probability_distribution`, as its sampler uses
it; -inf where masked). Prints one JSON line: iterations, seconds, it/s, trajectories/s, peak RSS
(before the first evaluation)."""


import numpy as np
import torch
from gfn.estimators import DiscretePolicyEstimator
from gfn.gflownet import TBGFlowNet
from gfn.gym import DiscreteEBM
from gfn.gym.discrete_ebm import EnergyFunction
from gfn.preprocessors import Preprocessor
from gfn.states import States
from gfn.utils.common import set_seed
from gfn.utils.modules import MLP
from table_peer import parse_args, train_and_evaluate


class TableEnergy(EnergyFunction):
    """-log R(x) from the harness's table; DiscreteEBM hands it 2 x - 1 (spins in {-1, 1})."""

    def __init__(self, keys_sorted: np.ndarray, log_r_sorted: np.ndarray, d: int):
        super().__init__()
        self.keys = torch.as_tensor(keys_sorted, dtype=torch.long)
        self.log_r = torch.as_tensor(log_r_sorted, dtype=torch.float64)
        self.weights = torch.ones(d, dtype=torch.long) << torch.arange(d)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        key = ((states > 0).long() * self.weights).sum(-1)
        index = torch.searchsorted(self.keys, key).clamp(max=len(self.keys) - 1)
        if not torch.equal(self.keys[index], key):
            raise ValueError("a state is not in the task's table")
        return -self.log_r[index].to(torch.get_default_dtype())


class PositionOneHot(Preprocessor):
    """One-hot of each position over {unset, 0, 1}, position-major: 3 D floats (our features)."""

    def __init__(self, d: int):
        super().__init__(output_dim=3 * d)

    def preprocess(self, states: States) -> torch.Tensor:
        index = (states.tensor + 1).clamp(max=2)  # (the sink state, all 2, never reaches the policy)
        return torch.nn.functional.one_hot(index.long(), 3).flatten(-2).to(torch.get_default_dtype())


def main() -> None:
    args = parse_args("Ising", 16, 0.0, "torchgfn's epsilon; 0: on-policy")
    torch.set_num_threads(1)
    set_seed(args.seed)

    task = np.load(args.task)
    d = int(task["dim"])
    env = DiscreteEBM(ndim=d, energy=TableEnergy(task["keys_sorted"], task["log_r_sorted"], d), alpha=1.0)
    assert env.n_actions == 2 * d + 1
    # torchgfn's action of each of ours: 2 i -> i, 2 i + 1 -> d + i, 2 d -> 2 d (exit)
    torchgfn_of_ours = torch.tensor([i + v * d for i in range(d) for v in (0, 1)] + [2 * d])

    terminal = np.asarray(task["terminal"], dtype=bool)
    all_states = env.states_from_tensor(torch.as_tensor(task["states"], dtype=torch.long))
    complete = env.states_from_tensor(torch.as_tensor(task["states"][terminal], dtype=torch.long))
    log_r = env.log_reward(complete).double().numpy()
    log_r_diff = float(np.abs(log_r - task["log_r"][terminal]).max())
    if not log_r_diff <= 1e-4:
        raise SystemExit(f"torchgfn's log R differs from the task's by up to {log_r_diff}")

    pre = PositionOneHot(d)
    pf_module = MLP(pre.output_dim, env.n_actions, hidden_dim=256, n_hidden_layers=2, activation_fn="leaky_relu")
    pf = DiscretePolicyEstimator(pf_module, env.n_actions, preprocessor=pre, is_backward=False)
    pb = DiscretePolicyEstimator.uniform(env.n_actions, preprocessor=pre)
    gfn = TBGFlowNet(pf=pf, pb=pb, init_logZ=0.0)
    optimizer = torch.optim.Adam(gfn.pf_pb_parameters(), lr=1e-3)
    optimizer.add_param_group({"params": gfn.logz_parameters(), "lr": 0.1})
    recalculate = args.exploration > 0  # the stored log-probs are the explored distribution's

    def all_log_probs() -> np.ndarray:
        """(N, 2 d + 1) float32 log P_F(a | s) in our numbering, by torchgfn's distribution."""
        with torch.no_grad():
            dist = pf.to_probability_distribution(all_states, pf(all_states))
            log_probs = torch.log_softmax(dist.logits, dim=-1)
            log_probs = log_probs.masked_fill(~all_states.forward_masks, -float("inf"))
        return log_probs[:, torchgfn_of_ours].numpy().astype(np.float32)

    def step() -> None:
        trajectories = gfn.sample_trajectories(env, n=args.batch_size, save_logprobs=True,
                                               epsilon=args.exploration)
        loss = gfn.loss(env, trajectories, recalculate_all_logprobs=recalculate)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    train_and_evaluate(args, step, all_log_probs,
                       extra=lambda: {"log_z": float(gfn.logZ.detach()), "log_r_max_abs_diff": log_r_diff})


if __name__ == "__main__":
    main()
