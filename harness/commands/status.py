"""`harness status GRID`: each cell's state, progress, losses, WERs; ``--profile`` adds the step profile."""
from __future__ import annotations

import argparse
import json

from .common import add_grid_argument, existing_store, load_or_report


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_grid_argument(p)
    p.add_argument("--profile", action="store_true",
                   help="where each cell's training step time went (runner overhead)")


def _locked(run_dir: str | None) -> bool:
    """Whether a runner holds the cell's lock (see harness.train.cell_runner)."""
    import fcntl
    from pathlib import Path

    if not run_dir or not (Path(run_dir) / ".lock").exists():
        return False
    with open(Path(run_dir) / ".lock") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def run(args: argparse.Namespace) -> int:
    from harness.train.step_profile import format_profile

    loaded = load_or_report(args, check=False)  # a grid's state is shown even if its data moved
    if loaded is None:
        return 2
    grid, cells = loaded
    spath, store = existing_store(args, grid)
    print(f"grid {grid.name}: {len(cells)} cell(s), store {spath}")
    print(f"{'cell':<12}  {'name':<26} {'status':<11} {'step':>7} {'epoch':>6} {'valid loss':>10}  WER")
    for c in cells:
        row = store.cell(c.cell_id) if store else None
        epochs = sorted(store.rows("epochs", cell_id=c.cell_id), key=lambda r: r["epoch"]) if store else []
        wers = store.rows("wers", cell_id=c.cell_id) if store else []
        status = row["status"] if row else "pending"
        if status == "running" and not _locked(row.get("run_dir")):
            status = "interrupted"  # no runner holds the cell: `harness run` resumes it
        step = row["step"] if row and row["step"] is not None else 0
        epoch = row["epoch"] if row and row["epoch"] is not None else 0.0
        vloss = f"{epochs[-1]['valid_loss']:.4f}" if epochs and epochs[-1]["valid_loss"] is not None else "-"
        last = max((w["epoch"] for w in wers), default=None)
        wer_txt = ", ".join(f"{w['test_set']}/{w['method']} {w['wer']:.2f}%"
                            for w in sorted(wers, key=lambda w: (w["test_set"], w["method"]))
                            if w["epoch"] == last) or "-"
        print(f"{c.cell_id:<12}  {c.name[:26]:<26} {status:<11} {step:>7} {epoch:>6.2f} {vloss:>10}  {wer_txt}")
        if row and row.get("error"):
            print(f"{'':14}{row['error'][:300]}")
        if args.profile:
            prof = None
            for e in reversed(epochs):
                extra = json.loads(e["extra"]) if e.get("extra") else {}
                if extra.get("profile"):
                    prof = extra["profile"]
                    break
            print(f"{'':14}profile: {format_profile(prof) if prof else 'no epoch finished yet'}")
    return 0
