"""`harness bench [VARIANT ...]`: encoder inference time and peak memory under
the paper's Figure 3 protocol (one fresh process per variant), written into the
results store's ``bench`` table with the device name and thread count.

Defaults: on CUDA the paper's batch of 30 utterances of 30 s; on CPU a batch of
2 utterances of 10 s so that a run finishes in minutes (both are options).

``--train``: training steps instead (forward + backward + optimizer step, the
variant's objective and optimizer, ``--precision`` float32 or bf16 autocast),
with step time, peak memory and the bytes saved for backward, into the store's
``train_bench`` table. Defaults: batch 20 x 30 s on CUDA, 2 x 5 s on CPU.

``--train`` also prints steps per second and the median share of a step in
each phase (forward = Conv-Embed + encoder, loss = heads + losses, backward,
optimizer). ``--compile on|both``: the encoder through ``torch.compile`` as
``train.compile`` does (``both``: eager, then compiled, each in its own
process), with the first step's extra time (compilation); only eager rows go
into the store (the cost model reads them as the trainer's default).

``--saved-bytes``: no timing; the bytes one training forward saves for backward
per second of audio, float32 and bf16 (CPU, bf16 under CUDA's autocast policy,
see :mod:`harness.profile.saved_bytes`), printed only. Default batch 2 x 10 s: the bf16 count
includes autocast's low-precision weight copies, a per-step constant that
short inputs would spread over too few seconds.
"""
from __future__ import annotations

import argparse
import sys

from harness.profile.bench import run_isolated
from harness.profile.measure import PRECISIONS
from harness.profile.train_bench import OBJECTIVES

from .common import UserError, count, open_store, parse_overrides, positive_float, positive_int, resolve_variants

PAPER_BATCH, PAPER_DURATION_S = 30, 30.0
CPU_BATCH, CPU_DURATION_S = 2, 10.0
TRAIN_GPU_BATCH, TRAIN_GPU_DURATION_S = 20, 30.0
TRAIN_CPU_BATCH, TRAIN_CPU_DURATION_S = 2, 5.0
SAVED_BYTES_BATCH, SAVED_BYTES_DURATION_S = 2, 10.0
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
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--train", action="store_true",
                      help="time training steps (forward + backward + optimizer) instead of inference")
    mode.add_argument("--saved-bytes", action="store_true",
                      help="print bytes saved for backward per second of audio (float32, bf16)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="--train only: float32 or bf16 autocast (default: float32)")
    p.add_argument("--objective", choices=OBJECTIVES, default=None,
                   help="--train only: the training objective (default: transducer)")
    p.add_argument("--compile", choices=("off", "on", "both"), default=None,
                   help="--train only: the encoder through torch.compile as train.compile does; "
                        "both: eager and compiled (default: off)")


def run(args: argparse.Namespace) -> int:
    import os

    from variants.registry import VariantError

    cuda = args.device == "cuda"
    if not args.train:
        given = [f"--{k} {getattr(args, k)}" for k in ("precision", "objective", "compile")
                 if getattr(args, k) is not None]
        if given:  # inference timing and --saved-bytes do not use them: they would be ignored
            raise UserError(f"{' and '.join(given)}: {'go' if len(given) > 1 else 'goes'} with --train only "
                            "(inference is timed on the encoder alone in float32; --saved-bytes counts "
                            "float32 and bf16 itself); allowed: add --train, or leave it out")
    args.precision = args.precision or "float32"
    args.objective = args.objective or "transducer"
    args.compile = args.compile or "off"
    if args.train:
        default_batch, default_duration = ((TRAIN_GPU_BATCH, TRAIN_GPU_DURATION_S) if cuda
                                           else (TRAIN_CPU_BATCH, TRAIN_CPU_DURATION_S))
    elif args.saved_bytes:
        default_batch, default_duration = SAVED_BYTES_BATCH, SAVED_BYTES_DURATION_S
    else:
        default_batch, default_duration = ((PAPER_BATCH, PAPER_DURATION_S) if cuda
                                           else (CPU_BATCH, CPU_DURATION_S))
    batch = args.batch if args.batch is not None else default_batch
    duration = args.duration if args.duration is not None else default_duration
    threads = args.threads if args.threads is not None else ((os.cpu_count() or 1) if cuda else 1)
    try:
        names = resolve_variants(args.variants or list(DEFAULT_VARIANTS))
        overrides = parse_overrides(args.overrides)
    except (VariantError, ValueError) as err:
        raise UserError(str(err))
    if cuda:
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda asked for, but torch sees no CUDA device; "
                            "use --device cpu")
    if args.saved_bytes:
        return _saved_bytes(names, batch, duration, overrides)
    store = None
    if not args.no_store:
        store = open_store(args.store)
    if args.train:
        return _train(args, names, batch, duration, threads, overrides, store)
    print(f"batch {batch} x {duration:g} s, {args.warmup} warm-up + {args.runs} timed runs, "
          f"device {args.device}, {threads} thread(s), one fresh process per variant")
    header = f"{'variant':<36} {'median s':>9} {'p25 s':>8} {'p75 s':>8} {'peak MB':>9}  device"
    print(header + "\n" + "-" * len(header))
    failed, method = 0, None
    for name in names:
        r = _isolated(name, lambda: run_isolated(name, batch, duration, args.runs, args.warmup,
                                                 args.device, threads, overrides,
                                                 timeout_s=args.timeout))
        if r is None:
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


def _isolated(name: str, call) -> object | None:
    """``call()``, or None after printing why it failed."""
    try:
        return call()
    except (RuntimeError, ValueError, OSError) as err:
        print(f"{name:<36} FAILED: {err}", file=sys.stderr)
    except Exception as err:  # subprocess.TimeoutExpired and friends
        print(f"{name:<36} FAILED: {type(err).__name__}: {err}", file=sys.stderr)
    return None


def _train(args: argparse.Namespace, names: list[str], batch: int, duration: float, threads: int,
           overrides: dict, store) -> int:
    print(f"training steps: batch {batch} x {duration:g} s, {args.precision}, {args.objective}, "
          f"{args.warmup} warm-up + {args.runs} timed steps, device {args.device}, "
          f"{threads} thread(s), one fresh process per variant")
    header = (f"{'variant':<28} {'mode':<8} {'median s':>9} {'steps/s':>8} {'p25 s':>8} {'p75 s':>8} "
              f"{'peak MB':>9} {'live MB':>9} {'saved MB':>9}  phases (fwd/loss/bwd/opt)")
    print(header + "\n" + "-" * len(header))
    modes = {"off": (False,), "on": (True,), "both": (False, True)}[args.compile]
    failed, method, compiled_rows = 0, None, []
    for name in names:
        for compiled in modes:
            r = _isolated(name, lambda: run_isolated(
                name, batch, duration, args.runs, args.warmup, args.device, threads, overrides,
                timeout_s=args.timeout, kind="train", precision=args.precision,
                objective=args.objective, compile=compiled))
            if r is None:
                failed += 1
                continue
            method = r.mem_method
            shares = "/".join(f"{100 * r.phases.get(k, 0.0):.0f}%"
                              for k in ("forward", "loss", "backward", "optimizer"))
            mode = "compiled" if compiled else "eager"
            print(f"{name:<28} {mode:<8} {r.median_s:>9.3f} {r.steps_per_s:>8.2f} {r.p25_s:>8.3f} "
                  f"{r.p75_s:>8.3f} {r.peak_mem_mb:>9.1f} {r.live_peak_mb:>9.1f} {r.saved_mb:>9.1f}  {shares}"
                  + (f"  (first step +{r.compile_s:.1f} s compiling, {r.graphs} graphs)"
                     if r.compile_s is not None else ""))
            if compiled:
                compiled_rows.append(name)
            elif store is not None:
                store.add_train_bench(name, r.device, r.precision, r.batch, r.duration_s,
                                      device_type=r.device_type, objective=r.objective,
                                      threads=r.threads, steps=r.steps, median_s=r.median_s,
                                      p25_s=r.p25_s, p75_s=r.p75_s, peak_mem_mb=r.peak_mem_mb,
                                      saved_mb=r.saved_mb, mem_method=r.mem_method,
                                      live_peak_mb=r.live_peak_mb,
                                      steps_per_s=r.steps_per_s, phases=r.phases)
    if method:
        print(f"peak memory: {method}; device {args.device}")
        print("live MB: peak of live tensor bytes over the first step's forward + backward "
              "(the device-free proxy of peak memory; weights and input excluded)")
    if compiled_rows and store is not None:
        print("compiled rows are printed only (the store keeps the eager step, which the "
              "cost model reads)")
    return 1 if failed else 0


def _saved_bytes(names: list[str], batch: int, duration: float, overrides: dict) -> int:
    from harness.profile.saved_bytes import measure_saved_bytes

    print(f"bytes saved for backward by one training forward (Conv-Embed + encoder), batch "
          f"{batch} x {duration:g} s, CPU; bf16 under CUDA's autocast policy")
    header = f"{'variant':<36} {'precision':>9} {'MB':>9} {'MB per s of audio':>18}  largest"
    print(header + "\n" + "-" * len(header))
    failed = 0
    for name in names:
        for precision in PRECISIONS:
            r = _isolated(name, lambda: measure_saved_bytes(name, precision, batch, duration,
                                                            overrides=overrides, top=1))
            if r is None:
                failed += 1
                continue
            big = r.largest[0] if r.largest else None
            print(f"{name:<36} {precision:>9} {r.saved_bytes / 2**20:>9.1f} "
                  f"{r.mb_per_audio_second:>18.2f}  "
                  + (f"{big.dtype} {big.shape} {big.nbytes / 2**20:.1f} MB" if big else ""))
    return 1 if failed else 0
