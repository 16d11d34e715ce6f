"""Exceptions with messages meant for users: the CLI prints them as one line, no traceback."""


class GFlowNetError(ValueError):
    """Base class of every error caused by user input (config, reward, data, checkpoint)."""


class ConfigError(GFlowNetError):
    """An invalid or unknown configuration value."""


class RewardError(GFlowNetError):
    """A reward function returned NaN, infinity, a negative value or zero without a floor."""


class ActionError(GFlowNetError):
    """An action that the environment's mask forbids."""


class DataError(GFlowNetError):
    """A malformed offline data file or an object outside the environment."""


class CheckpointError(GFlowNetError):
    """A missing checkpoint or one written for another environment."""


class TrainingError(GFlowNetError):
    """Training diverged: the loss or the policy's weights stopped being finite."""


class TooManyStates(GFlowNetError):
    """An environment too large to enumerate: exact evaluation is skipped, nothing else is."""


class Interrupted(GFlowNetError):
    """SIGINT or SIGTERM stopped training after a checkpoint; `exit_code` follows the shell's
    128 + signal number convention."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
