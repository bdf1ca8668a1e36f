"""``run_benchmark.py [options]``, the default command: fine-tune on a sequence, one run per
seed and strategy, and measure what is forgotten. Its options are in run_options.py; launch.py
turns them into run configurations and runs them."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from benchmark.commands.options import raw_parser
from benchmark.commands.run_options import DESCRIPTION, EPILOG, groups
from benchmark.errors import Terminated
from strategies import NAMES


def build_parser(strategies: Sequence[str] = NAMES) -> argparse.ArgumentParser:
    """The run command's parser; ``strategies``: the registered names, which the help lists."""
    p = raw_parser("run_benchmark.py", DESCRIPTION, EPILOG)
    for add_options, title in groups(strategies):
        add_options(p.add_argument_group(title).add_argument)
    return p


def run(args: argparse.Namespace) -> int:
    """Every run the arguments ask for; a SIGTERM (pre-emption) stops them as Ctrl-C does: 130
    interrupted, 143 terminated, both resumable."""
    from benchmark.commands.launch import build_configs, run_all  # torch: not for --help

    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # called outside the main thread: leave signals alone
        previous = None
    try:
        run_all(args, *build_configs(args))
        return 0
    except KeyboardInterrupt as error:  # the runner's message says what is saved
        terminated = isinstance(error, Terminated)
        kind = "terminated" if terminated else "interrupted"
        print(f"{kind}; {error}" if str(error) else kind, file=sys.stderr)
        return 143 if terminated else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate(signum, frame):
    raise Terminated()
