"""`harness compare GRID`: every row of a grid against its baseline row, with confidence
intervals and a verdict.

One line per (row, test set, method): the row, its number of seeds, its WER with a 95 %
confidence interval, its difference from the baseline with a 95 % confidence interval,
the probability that it improves on the baseline, and a verdict (`holds` / `reversed` /
`not resolved` where the paper reports the same comparison, else `better` / `worse` /
`not resolved`) with the smallest difference this budget resolves (the interval's
half-width). The intervals come from :mod:`harness.stats` (bootstrap over speakers and
seeds) on the per-utterance results of each decode; decodes recorded before those were
stored keep their point estimates. ``--json``: one JSON object per line.
"""
from __future__ import annotations

import argparse

from .common import UserError, add_grid_argument, load_grid_cells, positive_int, store_path
from .common import count as nonnegative_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_grid_argument(p)
    p.add_argument("--baseline", metavar="ROW",
                   help="the row to compare with (default: the grid's `baseline:`, else its base row, "
                        "else its first ablation)")
    p.add_argument("--test-sets", nargs="+", metavar="SET", help="only these test sets")
    p.add_argument("--methods", nargs="+", metavar="METHOD", help="only these decoding methods")
    p.add_argument("--resamples", type=positive_int, default=10_000,
                   help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seed of the resampling: the same seed gives the same intervals (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def format_table(verdicts: list, baseline: str) -> list[str]:
    """The lines of the plain-text table."""
    head = ("row", "seeds", "test set", "method", "WER % [95% CI]", f"diff vs {baseline} [95% CI]",
            "P(better)", "verdict (± resolvable)", "paper")
    body = [(v.row, str(v.n_seeds), v.test_set, v.method, v.wer_text(), v.delta_text(),
             "—" if v.p_improvement is None else f"{v.p_improvement:.2f}", v.verdict_text(),
             "—" if v.paper_delta is None else f"{v.paper_delta:+.2f} {v.paper}") for v in verdicts]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *body]]


def run(args: argparse.Namespace) -> int:
    from harness.report.verdicts import NoResults, baseline_label, read_grid_verdicts
    from harness.store.results_store import StoreError

    grid, cells = load_grid_cells(args, check=False)
    try:
        baseline = baseline_label(grid, args.baseline)
        verdicts = read_grid_verdicts(grid, cells, store_path(args, grid), baseline=baseline,
                                      test_sets=args.test_sets, methods=args.methods,
                                      resamples=args.resamples, seed=args.seed)
    except (NoResults, StoreError, ValueError) as e:
        raise UserError(str(e))
    if not verdicts:
        raise UserError(f"{grid.path}: no decode matches --test-sets {args.test_sets or 'any'} "
                        f"--methods {args.methods or 'any'}")
    if args.json:
        for v in verdicts:
            print(v.to_json())
        return 0
    print(f"grid {grid.name}: {len(verdicts)} line(s); baseline row {baseline}; WER and differences in "
          f"percent (points), difference = row - baseline (negative: the row is better); "
          f"{args.resamples} bootstrap resamples, seed {args.seed}")
    for line in format_table(verdicts, baseline):
        print(line)
    notes = sorted({v.note for v in verdicts if v.note})
    for n in notes:
        print(f"note: {n}")
    return 0
