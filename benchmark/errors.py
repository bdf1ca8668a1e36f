"""Errors a user can fix: the CLI prints them as one line and exits with code 2."""

import sys
import traceback


class CFBenchError(Exception):
    """A problem with the user's input or environment, with the fix in the message."""


class DatasetMissingError(CFBenchError):
    """A dataset is not on disk and cannot be downloaded."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. a scheduler pre-empting the job): the run stops as on Ctrl-C."""


def print_user_error(error: Exception, debug: bool) -> int:
    """A problem the user can fix: one line on stderr (traceback only with --debug), exit 2."""
    if debug:
        traceback.print_exc()
    print(f"error: {error}", file=sys.stderr)
    return 2
