"""torchgfn 2.4.1 on append-only bit sequences (`gfn.gym.BitSequence`, word_size 8, seq_size 120:
15 tokens of 256 and an exit action allowed only when full), trajectory balance, run by the peer
venv's python for bench/bitseq_speed.py. Its modes are replaced by the harness's (`--task`) and
its temperature set to n / beta, so that its log R = -d / temperature = -beta * d / n is ours;
its log R of the harness's test sequences must equal ours, else the run stops.

The network is ours: one-hot of each position over {empty, token 0..255} (a preprocessor:
torchgfn's default for BitSequence hands the raw token ids to the network), an MLP 2 x 256 with
LeakyReLU (torchgfn's `activation_fn="leaky_relu"`, slope 0.01 as ours), one forward head of
256 + exit, a learned log Z. No P_B estimator: every state has one parent (`constant_pb=True`).

At --eval-every and at the end, outside the clock (`table_peer`, shared with the table peers),
the exact log p(x) of the test sequences goes to `--evals-out` (.npz: iterations, seconds,
log_probs (evaluations, test size)). Prints one JSON line (iterations, seconds, it/s, peak RSS)
and saves the training samples' tokens to `--samples-out` (.npy), from which the harness counts
the modes found."""

import argparse

import numpy as np
import torch
from gfn.estimators import DiscretePolicyEstimator
from gfn.gflownet import TBGFlowNet
from gfn.gym import BitSequence
from gfn.preprocessors import Preprocessor
from gfn.states import States
from gfn.utils.modules import MLP
from table_peer import train_and_evaluate


class PositionOneHot(Preprocessor):
    """One-hot of each position over {empty, token 0..V-1}: our `env.features`, 15 x 257 here."""

    def __init__(self, n_tokens: int, vocab: int):
        super().__init__(output_dim=n_tokens * (vocab + 1))
        self.vocab = vocab

    def preprocess(self, states: States) -> torch.Tensor:
        # empty (-1) -> 0, token v -> v + 1; the sink state (every position V) never reaches the
        # policy, the clamp only keeps it in range
        index = (states.tensor + 1).clamp(max=self.vocab)
        return torch.nn.functional.one_hot(index, self.vocab + 1).flatten(-2).float()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", required=True, help=".npz from bench/bitseq_speed.py: modes, test set, log R")
    parser.add_argument("--samples-out", required=True, help=".npy of the training samples' tokens")
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-every", type=int, default=0, help="evaluate every N iterations (0: at the end only)")
    parser.add_argument("--evals-out", required=True, help=".npz: iterations, seconds, log_probs (of the test set)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    task = np.load(args.task)
    token_bits, beta = int(task["token_bits"]), float(task["beta"])
    modes = torch.as_tensor(task["modes"], dtype=torch.long)
    n_bits, vocab = modes.shape[1], 2 ** token_bits
    env = BitSequence(word_size=token_bits, seq_size=n_bits, n_modes=len(modes), temperature=n_bits / beta)
    env.modes = modes

    test = env.states_from_tensor(torch.as_tensor(task["test_tokens"], dtype=torch.long))
    log_r = env.log_reward(test).double().numpy()
    log_r_diff = float(np.abs(log_r - task["test_log_r"]).max())
    if log_r_diff > 1e-4:
        raise SystemExit(f"torchgfn's log R of the test sequences differs from ours by up to {log_r_diff}")

    pre = PositionOneHot(env.words_per_seq, vocab)
    pf_module = MLP(pre.output_dim, env.n_actions, hidden_dim=256, n_hidden_layers=2, activation_fn="leaky_relu")
    pf = DiscretePolicyEstimator(pf_module, env.n_actions, preprocessor=pre, is_backward=False)
    gfn = TBGFlowNet(pf=pf, pb=None, constant_pb=True, init_logZ=0.0)
    optimizer = torch.optim.Adam(gfn.pf_pb_parameters(), lr=1e-3)
    optimizer.add_param_group({"params": gfn.logz_parameters(), "lr": 0.5})

    samples = []

    def step() -> None:
        trajectories = gfn.sample_trajectories(env, n=args.batch_size, save_logprobs=True)
        loss = gfn.loss(env, trajectories, recalculate_all_logprobs=False)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        samples.append(trajectories.terminating_states.tensor.clone())  # (~1 us, next to a step's ~70 ms)

    @torch.no_grad()
    def test_log_probs() -> np.ndarray:
        """Exact log p(x): the one trajectory of each test sequence (15 appends, then exit), its log P_F."""
        test_trajectories = env.trajectory_from_terminating_states(test.tensor)
        return gfn.trajectory_log_probs_forward(test_trajectories, recalculate_all_logprobs=True).sum(0).double().numpy()

    train_and_evaluate(args, step, test_log_probs,
                       lambda: {"log_z": float(gfn.logZ.detach()), "log_r_max_abs_diff": log_r_diff})
    np.save(args.samples_out, torch.cat(samples).numpy().astype(np.int64))


if __name__ == "__main__":
    main()
