"""Errors a user can fix: the CLI prints them as one line and exits with code 2."""


class CFBenchError(Exception):
    """A problem with the user's input or environment, with the fix in the message."""


class DatasetMissingError(CFBenchError):
    """A dataset is not on disk and cannot be downloaded."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. a scheduler pre-empting the job): the run stops as on Ctrl-C."""
