"""Any environment of the library as a gymnasium environment with action masks, so that
reinforcement-learning libraries (sb3-contrib's MaskablePPO) can train on the same reward: the
reference our batched `PPOSampler` is checked against. One episode builds one object; the
observation is `env.features(state)`; the reward, R(x) (or log R(x)), comes with the exit
action. Needs `gymnasium` (installed with stable-baselines3)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gflownets.envs.base import DiscreteEnv
from gflownets.errors import ConfigError
from gflownets.policies.base import Policy, PolicyOutput


def gym_env(env: DiscreteEnv, reward: str = "reward") -> Any:
    """A gymnasium.Env over `env` (one object per episode; `action_masks()` for MaskablePPO).
    `reward_calls` counts the objects it has scored."""
    try:
        import gymnasium
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ConfigError("the gymnasium wrapper needs gymnasium: pip install gymnasium") from err
    if reward not in ("reward", "log"):
        raise ConfigError(f"reward must be 'reward' or 'log', got {reward!r}")

    class GFlowNetGymEnv(gymnasium.Env):
        metadata: dict[str, Any] = {"render_modes": []}

        def __init__(self) -> None:
            self.env = env
            self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (env.feature_dim,), np.float32)
            self.action_space = gymnasium.spaces.Discrete(env.n_actions)
            self.state = env.initial_states(1)
            self.reward_calls = 0

        def _observation(self) -> np.ndarray:
            return self.env.features(self.state)[0].float().cpu().numpy()

        def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
            super().reset(seed=seed)
            self.state = self.env.initial_states(1)
            return self._observation(), {}

        def action_masks(self) -> np.ndarray:
            return self.env.forward_mask(self.state)[0].cpu().numpy()

        def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
            if not self.action_masks()[action]:
                raise ValueError(f"action {action} is forbidden by the mask in this state")
            if action == self.env.exit_action:
                log_reward = float(self.env.log_reward(self.state)[0])
                self.reward_calls += 1
                return self._observation(), log_reward if reward == "log" else float(np.exp(log_reward)), True, \
                    False, {"object": self.state[0].clone()}
            self.state = self.env._step(self.state, torch.tensor([action], device=self.state.device))
            return self._observation(), 0.0, False, False, {}

    return GFlowNetGymEnv()


def stable_baselines_policy(model: Any, env: DiscreteEnv) -> Policy:
    """A stable-baselines3 (or sb3-contrib) actor as a policy of the library's interface, so
    the state graph computes its terminal distribution exactly (`StateGraph.
    terminal_distribution`) as for our own samplers."""

    class StableBaselinesPolicy(Policy):
        def __init__(self) -> None:
            super().__init__(env, backward="uniform")

        @torch.no_grad()
        def forward(self, states: torch.Tensor) -> PolicyOutput:
            observations = env.features(states).float()
            masks = env.forward_mask(states).cpu().numpy()
            logits = model.policy.get_distribution(observations, action_masks=masks).distribution.logits
            return PolicyOutput(logits, logits[:, :-1], logits[:, 0])

    return StableBaselinesPolicy()
