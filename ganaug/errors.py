"""Errors a user can act on. The CLI prints them as one line and exits with status 2."""


class GanaugError(Exception):
    """Base class: the message is a sentence that says what was wrong, where, and what to do."""


class ConfigError(GanaugError):
    """A config file, key, value or override is wrong."""


class DataError(GanaugError):
    """A data source, image file, split manifest or synthetic set is missing or wrong."""


class CheckpointError(GanaugError):
    """A checkpoint is missing, unreadable or made for something else."""


class StageError(GanaugError):
    """A stage cannot run: its inputs are missing or its outputs belong to another config."""


class Interrupted(Exception):
    """Training stopped on request (Ctrl-C, SIGTERM, or Slurm's SIGUSR2 notice of preemption or the time limit) after
    saving a resumable checkpoint; not an error. `signal`: the signal's name (e.g. "SIGUSR2")."""

    def __init__(self, message: str, signal: str = ""):
        super().__init__(message)
        self.signal = signal
