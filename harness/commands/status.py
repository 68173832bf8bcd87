"""`harness status GRID`: each cell's state, progress and ETA, disk use, losses, WERs;
``--profile`` adds the step profile."""
from __future__ import annotations

import argparse
import json

from .common import add_grid_argument, existing_store, load_grid_cells


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_grid_argument(p)
    p.add_argument("--run-root", help="run directories (default: the grid's, else runs/<grid name>)")
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


def _replay_journals(args: argparse.Namespace, grid, run_dirs: list) -> None:
    """Results a runner kept in a cell's journal (its store refused them) go into the store
    now, if it exists and takes them; one line each (harness.store.journal)."""
    import sys

    from harness.store import ResultsStore
    from harness.store.journal import journal_path, replay_cells
    from harness.store.results_store import StoreError

    from .common import store_path

    waiting = [d for d in run_dirs if journal_path(d).exists()]
    spath = store_path(args, grid)
    if not waiting or not spath.exists():
        return
    try:
        store = ResultsStore(spath)
    except StoreError as e:
        print(f"{len(waiting)} cell(s) keep results in their store-journal.jsonl: {e}", file=sys.stderr)
        return
    replay_cells(store, waiting, lambda m: print(m, file=sys.stderr))


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.decoding import DecodeSettings
    from harness.evaluate.checkpoint import disk_use
    from harness.train.progress import eta_now, format_seconds, read_progress
    from harness.train.step_profile import format_profile

    grid, cells = load_grid_cells(args, check=False)  # a grid's state is shown even if its data moved
    run_root = Path(args.run_root) if getattr(args, "run_root", None) else grid.run_root
    _replay_journals(args, grid, [run_root / c.cell_id for c in cells])
    spath, store = existing_store(args, grid)
    print(f"grid {grid.name}: {len(cells)} cell(s), store {spath}")
    print(f"{'cell':<12}  {'name':<26} {'status':<11} {'step':>7} {'epoch':>6} {'valid loss':>10} "
          f"{'ETA':>7} {'disk':>8}  WER")
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
        keys = {DecodeSettings.from_config(c.config).key(m) for m in c.config.decode_methods}
        shown = [w for w in wers if w["epoch"] == last]
        shown = [w for w in shown if w["decode_key"] in keys] or shown  # the grid's decode first
        wer_txt = ", ".join(f"{w['test_set']}/{w['method']} {w['wer']:.2f}%"
                            for w in sorted(shown, key=lambda w: (w["test_set"], w["method"]))) or "-"
        if len(wers) > len(shown):
            wer_txt += f" (+{len(wers) - len(shown)} other decodes)"
        run_dir = Path(row["run_dir"]) if row and row.get("run_dir") else run_root / c.cell_id
        eta = format_seconds(eta_now(read_progress(run_dir))) if status == "running" else "-"
        disk = _size(disk_use(run_dir))
        print(f"{c.cell_id:<12}  {c.name[:26]:<26} {status:<11} {step:>7} {epoch:>6.2f} {vloss:>10} "
              f"{eta:>7} {disk:>8}  {wer_txt}")
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
