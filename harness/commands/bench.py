"""`harness bench [VARIANT ...]`: encoder inference time and peak memory under
the paper's Figure 3 protocol (one fresh process per variant), written into the
results store's ``bench`` table with the device name and thread count.

Defaults: on CUDA the paper's batch of 30 utterances of 30 s; on CPU a batch of
2 utterances of 10 s so that a run finishes in minutes (both are options).
"""
from __future__ import annotations

import argparse
import sys

from harness.profile.bench import run_isolated

from .common import count, open_store, parse_overrides, positive_float, positive_int, resolve_variants, user_error

PAPER_BATCH, PAPER_DURATION_S = 30, 30.0
CPU_BATCH, CPU_DURATION_S = 2, 10.0
DEFAULT_VARIANTS = ("zipformer-s", "zipformer-m", "zipformer-l",
                    "conformer-s", "conformer-m", "conformer-l")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("variants", nargs="*", metavar="VARIANT",
                   help="variants or patterns (default: Zipformer-S/M/L and Conformer-S/M/L)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--batch", type=positive_int, default=None,
                   help=f"utterances per batch (default: {PAPER_BATCH} on cuda, {CPU_BATCH} on cpu)")
    p.add_argument("--duration", type=positive_float, default=None,
                   help=f"seconds per utterance (default: {PAPER_DURATION_S:g} on cuda, "
                        f"{CPU_DURATION_S:g} on cpu)")
    p.add_argument("--runs", type=positive_int, default=5, help="timed runs (default: %(default)s)")
    p.add_argument("--warmup", type=count, default=2, help="untimed warm-up runs (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="intra-op threads (default: all cores on cuda, 1 on cpu)")
    p.add_argument("--store", default=None, help="results store (default: $HARNESS_STORE or "
                                                 "runs/results.sqlite)")
    p.add_argument("--no-store", action="store_true", help="print only")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", dest="overrides",
                   help="override a switch of every variant (repeatable)")
    p.add_argument("--timeout", type=positive_float, default=None, help="seconds allowed per variant")


def run(args: argparse.Namespace) -> int:
    import os

    from variants.registry import VariantError

    cuda = args.device == "cuda"
    batch = args.batch if args.batch is not None else (PAPER_BATCH if cuda else CPU_BATCH)
    duration = args.duration if args.duration is not None else (PAPER_DURATION_S if cuda
                                                                else CPU_DURATION_S)
    threads = args.threads if args.threads is not None else ((os.cpu_count() or 1) if cuda else 1)
    try:
        names = resolve_variants(args.variants or list(DEFAULT_VARIANTS))
        overrides = parse_overrides(args.overrides)
    except (VariantError, ValueError) as err:
        return user_error(str(err))
    if cuda:
        import torch

        if not torch.cuda.is_available():
            return user_error("--device cuda asked for, but torch sees no CUDA device; "
                              "use --device cpu")
    store = None
    if not args.no_store:
        store = open_store(args.store)
    print(f"batch {batch} x {duration:g} s, {args.warmup} warm-up + {args.runs} timed runs, "
          f"device {args.device}, {threads} thread(s), one fresh process per variant")
    header = f"{'variant':<36} {'median s':>9} {'p25 s':>8} {'p75 s':>8} {'peak MB':>9}  device"
    print(header + "\n" + "-" * len(header))
    failed, method = 0, None
    for name in names:
        try:
            r = run_isolated(name, batch, duration, args.runs, args.warmup, args.device, threads,
                             overrides, timeout_s=args.timeout)
        except (RuntimeError, ValueError, OSError) as err:
            print(f"{name:<36} FAILED: {err}", file=sys.stderr)
            failed += 1
            continue
        except Exception as err:  # subprocess.TimeoutExpired and friends
            print(f"{name:<36} FAILED: {type(err).__name__}: {err}", file=sys.stderr)
            failed += 1
            continue
        method = r.mem_method
        print(f"{name:<36} {r.median_s:>9.3f} {r.p25_s:>8.3f} {r.p75_s:>8.3f} "
              f"{r.peak_mem_mb:>9.1f}  {r.device}")
        if store is not None:
            store.add_bench(name, r.device, r.batch, r.duration_s, threads=r.threads, runs=r.runs,
                            median_s=r.median_s, p25_s=r.p25_s, p75_s=r.p75_s,
                            peak_mem_mb=r.peak_mem_mb, mem_method=r.mem_method)
    if method:
        print(f"peak memory: {method}")
    return 1 if failed else 0
