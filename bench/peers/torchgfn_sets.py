"""torchgfn 2.4.1 on sets (`gfn.gym.SetAddition`, n items, sets of exactly k: `fixed_length=True`,
so that exit is allowed exactly when the set is full, and is then the only action), trajectory
balance (`TBGFlowNet`), run by the peer venv's python for the bench's sets task.

The reward is the harness's (`--task`): log R of a full set is looked up in the task's table by
its key sum_i x_i << i. SetAddition takes a `reward_fn` of R; torchgfn's `log_reward` would take
its log, so the env's `log_reward` is overridden to hand back the table's log R itself (float32,
torchgfn's dtype), and `reward_fn` is its exp. The table must reproduce the task's `log_r` on its
terminal states, else the run stops.

The network is ours: input the 0/1 membership vector (torchgfn's `IdentityPreprocessor`: the state
tensor is that vector, float), torchgfn's `MLP` 2 x 256 with `activation_fn="leaky_relu"`
(nn.LeakyReLU, slope 0.01), n + 1 logits (action i < n adds item i, n exits: SetAddition's
numbering, which is ours), masked by SetAddition's forward masks. P_B is uniform over the parents,
torchgfn's `DiscretePolicyEstimator.uniform` (equal logits under SetAddition's backward mask, which
allows removing any present item: log P_B = -log |s'|; the exit transition has no P_B term).
A learned log Z (init 0); Adam lr 1e-3 for the network, lr 0.1 for log Z; no clipping; on-policy
(`--exploration` > 0 is applied as the sampler's `epsilon`). One thread.

The clock covers sampling (with the reward look-ups), the loss, backward and the optimizer step.
Evaluations (outside the clock) at --eval-every and at the end write --evals-out (.npz):
iterations, training seconds, and log P_F(a | s) of every task state (task order) for every action
(our numbering), from torchgfn's own distribution (the estimator's output through
`to_probability_distribution` and `log_prob`, as its sampler uses them; -inf where masked).
Prints one JSON line: iterations, seconds, it/s, trajectories/s, peak RSS (before the first
evaluation)."""


import numpy as np
import torch

from gfn.estimators import DiscretePolicyEstimator
from gfn.gflownet import TBGFlowNet
from gfn.gym.set_addition import SetAddition
from gfn.preprocessors import IdentityPreprocessor
from gfn.states import DiscreteStates
from gfn.utils.common import set_seed
from gfn.utils.modules import MLP
from table_peer import parse_args, train_and_evaluate


class TableLogReward:
    """log R(x) from the harness's table, by the key sum_i x_i << i of the membership vector x."""

    def __init__(self, keys_sorted: np.ndarray, log_r_sorted: np.ndarray, n_items: int):
        self.keys = torch.as_tensor(keys_sorted, dtype=torch.long)
        self.log_r = torch.as_tensor(log_r_sorted, dtype=torch.float64)
        self.bits = torch.ones(n_items, dtype=torch.long) << torch.arange(n_items)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.long() * self.bits).sum(-1)
        index = torch.searchsorted(self.keys, key).clamp(max=len(self.keys) - 1)
        if not torch.equal(self.keys[index], key):
            raise ValueError("a terminating set is not in the task's table")
        return self.log_r[index].to(torch.get_default_dtype())


class TableSetAddition(SetAddition):
    """SetAddition whose log R is the table's value itself (not the log of its exp)."""

    def __init__(self, n_items: int, max_items: int, table: TableLogReward):
        super().__init__(n_items, max_items, reward_fn=lambda x: table(x).exp(), fixed_length=True)
        self.table = table

    def log_reward(self, final_states: DiscreteStates) -> torch.Tensor:
        return self.table(final_states.tensor)


def all_log_probs(env: SetAddition, pf: DiscretePolicyEstimator, states: np.ndarray) -> np.ndarray:
    """(N, n + 1) float32 log P_F(a | s) of the given 0/1 states, by torchgfn's distribution."""
    batch = env.states_from_tensor(torch.as_tensor(states, dtype=env.s0.dtype))
    n = len(states)
    with torch.no_grad():
        dist = pf.to_probability_distribution(batch, pf(batch))
        columns = [dist.log_prob(torch.full((n, 1), action, dtype=torch.long)) for action in range(env.n_actions)]
    return torch.stack(columns, dim=1).numpy().astype(np.float32)


def main() -> None:
    args = parse_args("sets", 16, 0.0, "torchgfn's epsilon (0: on-policy)")
    torch.set_num_threads(1)
    set_seed(args.seed)

    task = np.load(args.task)
    n, k = int(task["n_items"]), int(task["set_size"])
    states_all = task["states"].astype(np.int64)
    table = TableLogReward(task["keys_sorted"], task["log_r_sorted"], n)
    terminal = task["terminal"]
    diff = float(np.abs(table(torch.as_tensor(states_all[terminal])).double().numpy()
                        - task["log_r"][terminal]).max())
    if diff > 1e-4:
        raise SystemExit(f"the table's log R of the terminal states differs from the task's by up to {diff}")
    env = TableSetAddition(n, k, table)
    assert env.n_actions == n + 1

    pre = IdentityPreprocessor(output_dim=n)
    pf_module = MLP(n, env.n_actions, hidden_dim=256, n_hidden_layers=2, activation_fn="leaky_relu")
    pf = DiscretePolicyEstimator(pf_module, env.n_actions, preprocessor=pre, is_backward=False)
    pb = DiscretePolicyEstimator.uniform(env.n_actions, preprocessor=pre)
    gflownet = TBGFlowNet(pf=pf, pb=pb, init_logZ=0.0)
    optimizer = torch.optim.Adam(gflownet.pf_pb_parameters(), lr=1e-3)
    optimizer.add_param_group({"params": gflownet.logz_parameters(), "lr": 0.1})
    policy_kwargs = {"epsilon": args.exploration} if args.exploration > 0 else {}

    def step() -> None:
        trajectories = gflownet.sample_trajectories(env, n=args.batch_size, save_logprobs=True, **policy_kwargs)
        optimizer.zero_grad()
        # off-policy (epsilon > 0) the saved log-probs are the noisy policy's: recompute them
        loss = gflownet.loss(env, trajectories, recalculate_all_logprobs=args.exploration > 0)
        loss.backward()
        optimizer.step()

    train_and_evaluate(args, step, lambda: all_log_probs(env, pf, states_all))


if __name__ == "__main__":
    main()
