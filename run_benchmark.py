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

import sys

from benchmark.commands import main  # the dispatcher: one module per command

__all__ = ["cli", "main"]


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
