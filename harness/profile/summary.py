"""One profile row per variant and objective: params per part, encoder GFLOPs,
the paper's values and the relative differences."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch

from harness.tables import Table, fmt_pct, pct_diff

from .flops import PAPER_FRAMES, PLAIN, WITH_RULES, EncoderFlops, measure_encoder_flops
from .params import PARTS, check_objectives, count_parts, objective_part_counts, objective_total

DEFAULT_OBJECTIVES: tuple[str, ...] = ("transducer", "ctc", "ctc_aed")


def encoder_flops(variant: str, overrides: Mapping[str, Any] | None = None,
                  frames: int = PAPER_FRAMES, rules: Mapping[type, int] | None = None) -> EncoderFlops:
    """Build ``variant`` on CPU once (with the lightest head) and count its encoder FLOPs."""
    from variants import build_model

    torch.manual_seed(0)
    model = build_model(variant, objective="ctc", **dict(overrides or {}))
    return measure_encoder_flops(model, frames=frames, rules=rules)


def profile_variant(variant: str, objectives: Iterable[str] = DEFAULT_OBJECTIVES, *,
                    flops: bool = True, overrides: Mapping[str, Any] | None = None,
                    frames: int = PAPER_FRAMES,
                    rules: Mapping[type, int] | None = None) -> list[dict[str, Any]]:
    """Rows for one variant, one per objective.

    Keys: variant, objective, params (count), params_m, encoder_params,
    params_paper (millions, as the paper prints it; None where it gives none or
    ``overrides`` change the model),
    params_diff_pct, gflops (with the authors' rules where any apply),
    gflops_convention, gflops_deepspeed (plain), gflops_flop_counter,
    gflops_paper, gflops_diff_pct, frames, parts (dict of counts per part).
    """
    from variants import get_spec

    objectives = check_objectives(objectives)
    spec = get_spec(variant, overrides)
    parts = count_parts(variant, overrides)
    fl = encoder_flops(variant, overrides, frames, rules) if flops else None
    rows = []
    for obj in objectives:
        total = objective_total(parts, obj)
        # an override makes a model the paper did not measure: no paper values
        paper_p = None if overrides else spec.paper_params_m.get(obj)
        gflops = fl.gflops(WITH_RULES) if fl else None
        # the paper's GFLOPs are for one 30 s input; other lengths are not comparable
        paper_g = spec.paper_gflops if frames == PAPER_FRAMES and not overrides else None
        rows.append({
            "variant": variant,
            "objective": obj,
            "params": total,
            "params_m": total / 1e6,
            "encoder_params": parts["encoder_embed"] + parts["encoder"],
            "params_paper": paper_p,
            "params_diff_pct": pct_diff(total / 1e6, paper_p),
            "gflops": gflops,
            "gflops_convention": fl.convention if fl else None,
            "gflops_deepspeed": fl.gflops(PLAIN) if fl else None,
            "gflops_flop_counter": fl.gflops("flop_counter") if fl else None,
            "gflops_paper": paper_g,
            "gflops_diff_pct": pct_diff(gflops, paper_g),
            "frames": frames,
            "parts": objective_part_counts(parts, obj),
        })
    return rows


def _profile_job(job: tuple[str, tuple[str, ...], bool, dict[str, Any], int, int]
                 ) -> tuple[list[dict[str, Any]], float]:
    """One variant in a worker process: (rows, seconds of CPU time it took)."""
    import time

    variant, objectives, flops, overrides, frames, threads = job
    torch.set_num_threads(threads)
    t0 = time.process_time()
    rows = profile_variant(variant, objectives, flops=flops, overrides=overrides, frames=frames)
    return rows, time.process_time() - t0


def profile_variants(variants: list[str], objectives: Iterable[str] = DEFAULT_OBJECTIVES, *,
                     flops: bool = True, overrides: Mapping[str, Any] | None = None,
                     frames: int = PAPER_FRAMES, jobs: int = 1, threads: int | None = None,
                     progress=None) -> list[dict[str, Any]]:
    """Rows of several variants, in order; ``jobs`` > 1 profiles that many at once.

    Each worker is a fresh (spawned) process running ``threads`` intra-op
    threads (default: cores / jobs): on few cores, variants side by side use
    them better than one variant's threads, since much of a profiled forward
    pass is single-threaded Python (the profilers' hooks).
    """
    import functools
    import multiprocessing
    import os
    import signal
    from concurrent.futures import ProcessPoolExecutor

    from harness.processes import die_with_parent

    objectives = check_objectives(objectives)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    work = [(v, objectives, flops, dict(overrides or {}), frames, threads) for v in variants]
    rows: list[dict[str, Any]] = []
    if jobs == 1 or len(work) == 1:
        results = map(_profile_job, work)
        for variant, (r, cpu_s) in zip(variants, results):
            rows += r
            if progress:
                progress(variant, cpu_s)
        return rows
    ctx = multiprocessing.get_context("spawn")
    # spawned workers die with this process (prctl looked up in the child: not picklable)
    tie = functools.partial(die_with_parent, signal.SIGKILL, os.getpid())
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=tie) as pool:
        for variant, (r, cpu_s) in zip(variants, pool.map(_profile_job, work)):
            rows += r
            if progress:
                progress(variant, cpu_s)
    return rows


def profile_table(rows: list[Mapping[str, Any]]) -> Table:
    """Totals and GFLOPs per variant and objective, the paper's values beside."""
    frames = {r["frames"] for r in rows} or {PAPER_FRAMES}
    seconds = ", ".join(f"{f / 100:g} s" for f in sorted(frames))
    t = Table(
        title=f"Params and encoder GFLOPs (one {seconds} input, batch 1) vs the paper",
        columns=["variant", "objective", "params (M)", "paper (M)", "diff", "encoder (M)",
                 "GFLOPs", "convention", "GFLOPs plain", "GFLOPs torch", "paper GFLOPs",
                 "diff GFLOPs"],
        digits={"params (M)": 2, "paper (M)": 1, "encoder (M)": 2})
    for r in rows:
        t.add([r["variant"], r["objective"], r["params_m"], r["params_paper"],
               fmt_pct(r["params_diff_pct"]), r["encoder_params"] / 1e6, r["gflops"],
               r["gflops_convention"], r["gflops_deepspeed"], r["gflops_flop_counter"],
               r["gflops_paper"], fmt_pct(r["gflops_diff_pct"])])
    t.notes = [
        "GFLOPs: encoder_embed + encoder under DeepSpeed's flops profiler, in the convention named "
        f"beside it: '{WITH_RULES}' adds the authors' per-element rules "
        "(variants.components.flop_rules.EXTRA_FLOPS_PER_ELEMENT) to DeepSpeed's count; "
        f"'{PLAIN}' is DeepSpeed alone ('GFLOPs plain' column). 'GFLOPs torch': "
        "torch.utils.flop_counter.FlopCounterMode, matmul/conv/attention kernels only, a cross-check.",
        "diff: (ours - paper) / paper. A total adds the parts its objective's heads use.",
    ]
    return t


def parts_table(rows: list[Mapping[str, Any]]) -> Table:
    """Parameters per part, one row per variant (parts as every head has them)."""
    t = Table(title="Parameters per part", columns=["variant"] + list(PARTS))
    seen: dict[str, dict[str, int]] = {}
    for r in rows:
        merged = seen.setdefault(r["variant"], {p: 0 for p in PARTS})
        for p in PARTS:
            merged[p] = max(merged[p], int(r["parts"][p]))
    for variant, parts in seen.items():
        t.add([variant] + [f"{parts[p]:,}" for p in PARTS])
    t.notes = ["Counts of the model built with every head; a part an objective does not use "
               "is left out of that objective's total."]
    return t


def flat_table(rows: list[Mapping[str, Any]]) -> Table:
    """Every field of every row, parts as columns (for CSV)."""
    scalar = [k for k in rows[0] if k != "parts"] if rows else []
    t = Table(title="profile", columns=scalar + [f"params_{p}" for p in PARTS],
              digits={k: 4 for k in scalar})
    for r in rows:
        t.add([r[k] for k in scalar] + [r["parts"][p] for p in PARTS])
    return t


def store_rows(store, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write profile rows into the results store's ``profile`` table."""
    for r in rows:
        store.add_profile(
            r["variant"], r["objective"], params=r["params"], encoder_params=r["encoder_params"],
            parts=r["parts"], gflops=r["gflops"], gflops_convention=r["gflops_convention"],
            gflops_flop_counter=r["gflops_flop_counter"], params_paper=r["params_paper"],
            gflops_paper=r["gflops_paper"])
