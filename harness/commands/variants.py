"""`harness variants [PATTERN]` and `harness variants --describe NAME`.

An unknown NAME, or a PATTERN that matches no variant, is an error (``error: ...``,
exit 2) listing the registered variants."""
from __future__ import annotations

import argparse

from variants import describe_variant, get_spec, list_variants


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default="*", help="shell-style wildcard (default: all)")
    p.add_argument("--describe", metavar="NAME", help="print one variant's resolved spec")


def run(args: argparse.Namespace) -> int:
    from variants.registry import VariantError

    from .common import UserError

    if args.describe:
        try:
            text = describe_variant(args.describe)
        except VariantError as e:
            raise UserError(f"--describe: {e}")
        print(text)
        return 0
    names = list_variants(args.pattern)
    if not names:
        raise UserError(f"no variant matches {args.pattern!r}; allowed: {', '.join(list_variants())}")
    width = max((len(n) for n in names), default=0)
    for n in names:
        print(f"{n:<{width}}  {get_spec(n).description}")
    return 0
