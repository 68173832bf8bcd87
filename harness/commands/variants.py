"""`harness variants [PATTERN]` and `harness variants --describe NAME`."""
from __future__ import annotations

import argparse

from variants import describe_variant, get_spec, list_variants


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default="*", help="shell-style wildcard (default: all)")
    p.add_argument("--describe", metavar="NAME", help="print one variant's resolved spec")


def run(args: argparse.Namespace) -> int:
    if args.describe:
        print(describe_variant(args.describe))
        return 0
    names = list_variants(args.pattern)
    width = max((len(n) for n in names), default=0)
    for n in names:
        print(f"{n:<{width}}  {get_spec(n).description}")
    return 0
