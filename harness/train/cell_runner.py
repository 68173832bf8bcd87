"""Run one cell end to end: lock, train (or resume), decode, record.

The results store gets the cell's status as it goes: ``running`` while it
trains, then ``done``, ``diverged`` (with the step) or ``failed`` (with the
error). Only rank 0 writes; a file lock in the run directory keeps two
runners from training the same cell at once.
"""
from __future__ import annotations

import fcntl
import logging
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Optional

import yaml

from harness.config import Cell
from harness.decoding import DecodeSettings
from harness.store import ResultsStore

from . import distributed
from .data_setup import load_cell_data
from .distributed import DistInfo
from .evaluate import decode_epoch, last_epoch
from .precision import LossScaleCollapsedError
from .trainer import DivergedError, Trainer, build_cell_model

BUSY = "busy"


def code_version() -> str:
    """``git describe --always --dirty`` of the harness checkout, or 'unknown'."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=root, capture_output=True,
                             text=True, timeout=20)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cell_logger(run_dir: Path, cell: Cell, rank: int, stem: str = "train") -> logging.Logger:
    """The cell's log: ``<run dir>/log/<stem>-rank<rank>.log``, and stderr on rank 0."""
    log = logging.getLogger(f"harness.cell.{cell.cell_id}.{stem}.{rank}")
    log.setLevel(logging.INFO)
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    fmt = logging.Formatter(f"%(asctime)s [{cell.name} {cell.cell_id} r{rank}] %(levelname)s %(message)s")
    (run_dir / "log").mkdir(parents=True, exist_ok=True)
    fh = logging.FileHandler(run_dir / "log" / f"{stem}-rank{rank}.log")
    fh.setFormatter(fmt)
    log.addHandler(fh)
    if rank == 0:
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(fmt)
        log.addHandler(sh)
    return log


def _short_error(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)[-3:]
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(tb))
    return f"{type(e).__name__}: {e}" + (f" (at {where})" if where else "")


def run_cell(cell: Cell, store_path: Path, run_root: Path, dist: Optional[DistInfo] = None) -> str:
    """Train and decode ``cell``; returns its final status (or ``busy`` if locked elsewhere)."""
    dist = dist or distributed.from_env()
    run_dir = Path(run_root) / cell.cell_id
    run_dir.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(store_path) if dist.is_main else None
    lock_file = None
    if dist.is_main:
        lock_file = open(run_dir / ".lock", "w")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            lock_file = None
    busy = distributed.broadcast_object(dist.is_main and lock_file is None, dist)
    if busy:
        return BUSY
    log = cell_logger(run_dir, cell, dist.rank)
    try:
        if store is not None:
            (run_dir / "config.yaml").write_text(yaml.safe_dump(
                {"cell_id": cell.cell_id, "grid": cell.grid, "name": cell.name, "config": cell.resolved()},
                sort_keys=False))
            store.set_cell(cell.cell_id, status="running", error=None, code_version=code_version(),
                           run_dir=str(run_dir))
        status = _train_and_decode(cell, run_dir, store, dist, log)
    except BaseException as e:  # record why, then let the grid go on

        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        if isinstance(e, DivergedError):
            status, step, msg = "diverged", e.step, f"diverged at step {e.step}: {e}"
        elif isinstance(e, LossScaleCollapsedError):
            status, step, msg = "diverged", None, f"diverged: {e}"
        else:
            status, step, msg = "failed", None, _short_error(e)
        log.error("%s", msg)
        if store is not None:
            fields = {"status": status, "error": msg}
            if step is not None:
                fields["step"] = step
            store.set_cell(cell.cell_id, **fields)
    finally:
        if lock_file is not None:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
            lock_file.close()
        for h in list(log.handlers):
            h.close()
            log.removeHandler(h)
    return status


def _train_and_decode(cell: Cell, run_dir: Path, store, dist: DistInfo, log: logging.Logger) -> str:
    if dist.is_main:
        data = load_cell_data(cell.config.data)
        distributed.barrier(dist)
    else:
        distributed.barrier(dist)
        data = load_cell_data(cell.config.data)
    if store is not None:
        model = build_cell_model(cell, data.tokenizer)
        store.set_cell(cell.cell_id, params=int(model.param_counts()["total"]))
        del model

    def on_epoch(epoch: int, **fields) -> None:
        if store is not None:
            store.add_epoch(cell.cell_id, epoch, **fields)
            store.set_cell(cell.cell_id, step=fields["step"], epoch=float(epoch))

    def on_progress(step: int, epoch: float) -> None:
        if store is not None:
            store.set_cell(cell.cell_id, step=step, epoch=epoch)

    trainer = Trainer(cell, run_dir, data, dist, log, on_epoch=on_epoch, on_progress=on_progress)

    def decode_after(epoch: int) -> None:
        if dist.is_main:
            decode_epoch(cell, data, trainer.ckpt_dir, epoch, trainer.device, store, log)
        distributed.barrier(dist)

    trainer.on_epoch_end_decode = decode_after
    result = trainer.run()
    final = last_epoch(trainer.ckpt_dir)
    if final is None:
        raise RuntimeError(f"training wrote no epoch checkpoint in {trainer.ckpt_dir}")
    keys = {DecodeSettings.from_config(cell.config).key(m) for m in cell.config.decode_methods}
    already = store is not None and any(
        r["epoch"] == final and r["decode_key"] in keys for r in store.rows("wers", cell_id=cell.cell_id))
    if not (cell.config.decode.every_epoch and already):
        decode_after(final)
    if store is not None:
        store.set_cell(cell.cell_id, status="done", step=result.step, epoch=float(final),
                       error=result.stopped_early or None)
    log.info("cell done: %d steps, %d epochs", result.step, final)
    return "done"
