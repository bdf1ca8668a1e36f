"""``run_benchmark.py merge``: its options parsed, the merged run made, the exit code (its
options are in cli.py, the work in make.py)."""

from __future__ import annotations

import sys
from pathlib import Path


def merge_command(argv: list[str]) -> int:
    from benchmark.merge.cli import merge_parser

    args = merge_parser().parse_args(argv)
    from benchmark.errors import CFBenchError, print_user_error

    try:
        from benchmark.merge.make import MergeOptions, make_merge

        make_merge(
            MergeOptions(
                folders=tuple(Path(f) for f in args.run_dirs),
                method=args.method,
                lam=args.lam,
                k=args.k,
                alpha=args.alpha,
                beta=args.beta,
                lines=args.lines,
                name=args.name,
                out=Path(args.out) if args.out else None,
                seed=args.seed,
                device=args.device,
                data_root=Path(args.data_root) if args.data_root else None,
                eval_batch_size=args.eval_batch_size,
                force=args.force,
            )
        )
        return 0
    except CFBenchError as error:
        return print_user_error(error, args.debug)
    except KeyboardInterrupt:  # nothing to resume: a merge is redone with --force
        print("interrupted; run the same command with --force to merge again", file=sys.stderr)
        return 130
