"""Errors that the command line prints as one clear message, without a traceback.

Every message says what happened, what was expected, and how to fix it (STYLE.md rule 14).
"""


class CnnlabError(Exception):
    """A user-facing error: the CLI prints its message and exits with status 2."""


class DataError(CnnlabError):
    """A data set could not be found, read or understood."""


class CheckpointError(CnnlabError):
    """A checkpoint is missing, corrupt, or not a cnnlab checkpoint."""


class ConfigError(CnnlabError):
    """A configuration value or file is invalid."""


class OutputError(CnnlabError, OSError):
    """An output file cannot be written (its folder is a file, read-only, or missing); still an
    OSError for callers that treat writes as best effort."""


class UnknownNameError(CnnlabError, KeyError):
    """A name was looked up in a registry that does not hold it."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class TrainingAborted(CnnlabError):
    """Training stopped because it could not go on (for example repeated non-finite losses)."""
