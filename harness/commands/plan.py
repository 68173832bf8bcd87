"""`harness plan GRID`: the cells, their params and FLOPs, and what training them costs."""
from __future__ import annotations

import argparse

from harness.grid.cost import ASSUMPTION, fmt, gflops_of, gpu_hours, memory_fit, params_of, train_hours

from .common import UserError, add_grid_argument, existing_store, load_grid_cells, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_grid_argument(p)
    p.add_argument("--gpus", type=positive_int, default=1, help="GPUs per cell, for wall-clock hours")
    p.add_argument("--no-flops", action="store_true",
                   help="do not measure encoder FLOPs (fast; uses the store or the paper's figure)")
    p.add_argument("--no-data-check", action="store_true",
                   help="check the grid but not this machine's data: source folders and prepared "
                        "corpora (to plan a LibriSpeech grid where LibriSpeech is not); `run` checks them")
    p.add_argument("--gpu-memory", type=float, metavar="GIB",
                   help="say whether each cell's max_duration fits a GPU of this many GiB (from "
                        "`harness bench --train --device cuda` measurements in the store)")


def _vocab_size(data_dir: str) -> int | None:
    """The prepared corpus's vocabulary (the heads' size), if it is prepared already."""
    try:
        from harness.data import PreparedCorpus

        return int(PreparedCorpus.load(data_dir).vocab_size)
    except Exception:
        return None


def run(args: argparse.Namespace) -> int:
    if args.gpu_memory is not None and not args.gpu_memory > 0:
        raise UserError(f"--gpu-memory: must be > 0 GiB, got {args.gpu_memory:g}")
    grid, cells = load_grid_cells(args, disk=not args.no_data_check,
                            missing_data_hint=f"; or plan without this machine's data: `harness plan "
                                              f"{args.grid} --no-data-check` (`harness run` needs it)")
    _, store = existing_store(args, grid)
    print(f"grid {grid.name} ({grid.path}): {len(cells)} cell(s)"
          + (f" - {grid.spec.description}" if grid.spec.description else ""))
    header = f"{'cell':<12}  {'name':<28} {'variant':<34} {'objective':<10} {'params(M)':>9} " \
             f"{'GFLOPs':>7} {'epochs':>7} {'audio h':>8} {'GPU-h':>8}"
    print(header)
    total = 0.0
    notes: set[str] = set()
    left_out: dict[str, list[str]] = {}  # why -> cells without GPU-hours
    for c in cells:
        params, why = params_of(c, _vocab_size(c.config.data.dir))
        gflops, gsrc = gflops_of(c, store, measure=not args.no_flops)
        hours, hsrc = train_hours(c)
        t = c.config.train
        epochs = float(t.epochs) if t.epochs else None
        if t.max_steps and hours:
            step_epochs = t.max_steps * t.accum_grad * c.config.data.max_duration * args.gpus / (hours * 3600)
            epochs = min(epochs, step_epochs) if epochs else step_epochs
        gh = gpu_hours(gflops, hours, epochs)
        total += gh or 0.0
        if gh is None:
            why = ("no FLOPs figure" + (" (--no-flops, none in the store or the paper)" if args.no_flops else "")
                   if gflops is None else "no training-audio hours" if hours is None else "no epoch count")
            left_out.setdefault(why, []).append(c.cell_id)
        for n in (why, gsrc, hsrc):
            if n:
                notes.add(n)
        print(f"{c.cell_id:<12}  {c.name[:28]:<28} {c.variant[:34]:<34} {c.objective[:10]:<10} "
              f"{fmt(params / 1e6 if params else None, '9.2f'):>9} {fmt(gflops, '7.1f'):>7} "
              f"{fmt(epochs, '7.1f'):>7} {fmt(hours, '8.1f'):>8} {fmt(gh, '8.2f'):>8}")
    counted = len(cells) - sum(len(v) for v in left_out.values())
    print(f"total: {total:.2f} GPU-hours ({total / max(args.gpus, 1):.2f} h wall-clock with "
          f"{args.gpus} GPU(s) per cell, cells one after another)"
          + (f" for {counted} of {len(cells)} cell(s)" if left_out else ""))
    for why, ids in left_out.items():
        print(f"left out of the total: {len(ids)} cell(s) with {why}: {', '.join(ids)}"
              + ("; plan without --no-flops to measure them" if args.no_flops and why.startswith("no FLOPs")
                 else ""))
    seeds = grid.spec.base.seeds or [cells[0].config.seed if cells else 42]
    print(f"seeds: {len(seeds)} per row ({', '.join(map(str, seeds))}); each seed is a cell above, "
          "so the total counts every seed")
    print(f"assumption: {ASSUMPTION}")
    print("note: params use the prepared corpus's vocabulary when it is prepared, else the spec's "
          "(500 BPE units)")
    from harness.grid.validate import usable_methods

    decoding: dict[str, int] = {}
    for c in cells:
        key = " + ".join(usable_methods(c))
        decoding[key] = decoding.get(key, 0) + 1
    print("decoding: " + "; ".join(f"{m} ({n} cell(s))" for m, n in decoding.items()))
    for n in sorted(notes):
        print(f"note: {n}")
    from harness.grid.validate import averaging_notes, device_errors

    for n in averaging_notes(cells):
        print(f"note: {n}")
    for e in device_errors(grid, cells):
        print(f"note: {e} (`harness run` here refuses it)")
    if args.gpu_memory is not None:
        for c in cells:
            print(f"memory {c.cell_id} {c.name}: {memory_fit(c, store, args.gpu_memory)[1]}")
    if store is not None:
        for line in resolve_lines(grid, cells, store.path):
            print(line)
    return 0


#: resamples for plan's look at the differences measured so far (compare uses 10,000)
PLAN_RESAMPLES = 2000


def resolve_lines(grid, cells, store) -> list[str]:
    """For each row already compared in the store: how many seeds would resolve the observed
    difference from the baseline (``harness.stats.seeds_to_resolve``)."""
    from harness.report.verdicts import NoResults, read_grid_verdicts, seeds_needed

    try:
        verdicts = read_grid_verdicts(grid, cells, store, resamples=PLAN_RESAMPLES)
    except NoResults:
        return []
    out = []
    for v in verdicts:
        if v.delta is None or v.verdict == "baseline":
            continue
        head = (f"resolve {v.row} vs {v.baseline}, {v.test_set} {v.method}: observed {v.delta:+.2f} points "
                f"with {v.n_seeds} seed(s)")
        if v.delta_ci is None:
            out.append(f"{head}; no interval ({v.note})")
        elif v.delta == 0:
            out.append(f"{head}: no difference observed, nothing to resolve")
        elif v.verdict != "not resolved":
            out.append(f"{head}: resolved already ({v.verdict}, ±{v.resolvable:.2f})")
        else:
            n = seeds_needed(v)
            if n is not None:
                out.append(f"{head}, ±{v.resolvable:.2f}: about {n} seeds per row would resolve it")
            elif v.within_half_width is not None and v.within_half_width >= abs(v.delta):
                out.append(f"{head}, ±{v.resolvable:.2f}: no number of seeds resolves it on this test set "
                           f"(its utterances alone give ±{v.within_half_width:.2f}); a larger test set would")
            else:
                out.append(f"{head}, ±{v.resolvable:.2f}: more than 100 seeds per row would be needed")
    return out
