"""cfbench command line: fine-tune an image encoder on a task sequence and measure what it forgets.

python run_benchmark.py --sequence smoke            # offline, about 30 s on a laptop CPU
python run_benchmark.py --sequence 5tasks           # the real benchmark (GPU, datasets)
python run_benchmark.py --sequence smoke --seeds 0 1 2   # several seeds, one run folder each
python run_benchmark.py report results              # figures and tables from saved runs
python run_benchmark.py soup RUN_DIR... --mode greedy   # average finished runs' weights
python run_benchmark.py merge RUN_DIR... --method magmax  # merge their per-stage task vectors
python run_benchmark.py select --sequence offline --strategy ldifs --grid lam=1,10,100
                                                    # a weight chosen on validation
"""

from __future__ import annotations

import importlib
import sys

from benchmark.commands import NAMES, parse
from benchmark.errors import CFBenchError, print_user_error


def main(argv: list[str] | None = None) -> int:
    """The command named by the first word (benchmark/commands/NAME.py; none: run.py) on the
    rest of ``argv``; its exit code. A CFBenchError is one line on stderr and exit 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    name = argv[0] if argv[:1] and argv[0] in NAMES else "run"
    command = importlib.import_module(f"benchmark.commands.{name}")
    args = parse(command, argv[1:] if name != "run" else argv)
    try:
        return command.run(args)
    except CFBenchError as error:
        return print_user_error(error, args.debug)


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
