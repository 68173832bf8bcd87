"""`harness profile [VARIANT ...]`: params per part and per objective, encoder
GFLOPs for one 30 s input, the paper's values and the differences beside.

Prints a table (or JSON with ``--json``), writes ``profile.md`` / ``profile.csv``
under ``--out`` (default ``runs/profile``; with ``--json`` only when ``--out``
is given) and the rows into the results store's ``profile`` table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from harness.atomic import atomic_write_text

from harness.profile.flops import PAPER_FRAMES
from harness.profile.summary import (DEFAULT_OBJECTIVES, flat_table, parts_table, profile_table,
                      profile_variants, store_rows)

from .common import UserError, open_store, parse_overrides, positive_int, resolve_variants

DEFAULT_OUT = "runs/profile"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("variants", nargs="*", metavar="VARIANT",
                   help="registered variants or shell-style patterns (default: all)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of tables")
    p.add_argument("--objectives", default=",".join(DEFAULT_OBJECTIVES),
                   help="comma-separated objectives (default: %(default)s)")
    p.add_argument("--no-flops", action="store_true", help="count params only (fast)")
    p.add_argument("--out", default=None,
                   help=f"folder for profile.md/csv (default: {DEFAULT_OUT}; with --json none is "
                        "written unless --out is given)")
    p.add_argument("--store", default=None, help="results store (default: $HARNESS_STORE or "
                                                 "runs/results.sqlite)")
    p.add_argument("--no-store", action="store_true", help="do not write the results store")
    p.add_argument("--frames", type=positive_int, default=PAPER_FRAMES,
                   help="input frames at 100 Hz (default: %(default)s = 30 s, the paper's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", dest="overrides",
                   help="override a switch of every variant profiled (repeatable)")
    p.add_argument("--jobs", type=positive_int, default=min(2, os.cpu_count() or 1),
                   help="variants profiled at once, each in its own process (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="intra-op threads per job (default: cores / jobs)")


def run(args: argparse.Namespace) -> int:
    from variants.registry import VariantError

    try:
        objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
        overrides = parse_overrides(args.overrides)
        names = resolve_variants(args.variants)
        t0 = time.perf_counter()

        def progress(variant: str, cpu_s: float) -> None:
            print(f"profiled {variant} ({cpu_s:.1f} s CPU; {time.perf_counter() - t0:.1f} s elapsed)",
                  file=sys.stderr)

        rows = profile_variants(names, objectives, flops=not args.no_flops, overrides=overrides,
                                frames=args.frames, jobs=args.jobs, threads=args.threads,
                                progress=progress)
    except (VariantError, ValueError) as err:
        raise UserError(str(err))
    summary, parts = profile_table(rows), parts_table(rows)
    out = Path(args.out) if args.out else (None if args.json else Path(DEFAULT_OUT))
    try:
        if out is not None:
            atomic_write_text(out / "profile.md", "# Profile\n\n" + summary.to_markdown("##") + "\n"
                              + parts.to_markdown("##"))
            atomic_write_text(out / "profile.csv", flat_table(rows).to_csv())
    except (FileExistsError, NotADirectoryError, PermissionError) as e:
        raise UserError(f"--out {args.out}: cannot write {e.filename}: {e.strerror}")
    if not args.no_store:
        store_rows(open_store(args.store), rows)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(summary.to_text())
        print()
        print(parts.to_text())
        print(f"\nwrote {out / 'profile.md'} and {out / 'profile.csv'}", file=sys.stderr)
    return 0
