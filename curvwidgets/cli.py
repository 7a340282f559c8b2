"""The ``curvwidgets`` command line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

__all__ = ["main"]


def _demo(arguments: argparse.Namespace) -> int:
    from .demo import format_summary, run_synthetic_demo

    summaries = run_synthetic_demo(Path(arguments.out), size=arguments.size, steps=arguments.steps, seed=arguments.seed)
    print()
    print(format_summary(summaries))
    print(f"\nW1 = Wasserstein-1 distance to the exact eigenvalues (eigenvalue units); figures in {arguments.out}/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one sub-command per verb."""
    parser = argparse.ArgumentParser(prog="curvwidgets", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    demo = verbs.add_parser("demo", help="reproduce the synthetic figures of the paper as PNG files")
    demo.add_argument("--out", default="results", help="folder for the figures (default: results)")
    demo.add_argument("--size", choices=["paper", "small"], default="paper",
                      help="matrix sizes: the paper's (P up to 10000) or small (P up to 1000)")
    demo.add_argument("--steps", type=int, default=30, help="Lanczos steps m (default: 30)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``curvwidgets`` command."""
    arguments = build_parser().parse_args(argv)
    return arguments.run(arguments)


if __name__ == "__main__":
    raise SystemExit(main())
