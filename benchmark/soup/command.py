"""``run_benchmark.py soup``: its options parsed, the soup made, the exit code (its options are
in cli.py, the work in make.py)."""

from __future__ import annotations

import sys
from pathlib import Path


def soup_command(argv: list[str]) -> int:
    from benchmark.soup.cli import soup_parser

    args = soup_parser().parse_args(argv)
    from benchmark.errors import CFBenchError, print_user_error

    try:
        from benchmark.soup.make import SoupOptions, make_soup

        make_soup(
            SoupOptions(
                folders=tuple(Path(f) for f in args.run_dirs),
                mode=args.mode,
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
    except KeyboardInterrupt:  # nothing to resume: a soup is redone with --force
        print(
            "interrupted; run the same command with --force to make the soup again", file=sys.stderr
        )
        return 130
