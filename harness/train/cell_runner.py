"""Run one cell end to end: lock, train (or resume), decode, record.

The results store gets the cell's status as it goes: ``running`` while it
trains, then ``done``, ``diverged`` (with the step), ``failed`` (with the
error) or ``interrupted`` (with the step a signal stopped it at). Only rank 0
writes; a lock file in the run directory keeps two runners from training the
same cell at once, and the runner that takes it reads the cell's state again
(another runner may have finished it since the grid's to-do list was made).
Progress writes that fail are logged and training goes on.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from harness.config import Cell
from harness.decoding import DecodeSettings
from harness.locks import FileLock
from harness.store import ResultsStore
from harness.store.results_store import StoreError
from variants.registry import resolve_objective

from . import distributed
from .checkpoint import NoSpaceError, UnreadableCheckpointsError
from .data_setup import load_cell_data
from .distributed import DistInfo
from .evaluate import decode_epoch, last_epoch
from .interrupt import Interrupted
from .precision import LossScaleCollapsedError
from .trainer import DivergedError, Trainer, build_cell_model

BUSY = "busy"


@dataclass(frozen=True)
class RunOptions:
    """What a runner may redo: failed or diverged cells, and a run with no readable checkpoint."""

    retry_failed: bool = False
    retry_diverged: bool = False
    start_over_if_unreadable: bool = False

    def leaves_alone(self, status: Optional[str]) -> bool:
        """Whether a cell in ``status`` is finished for this runner."""
        return (status == "done" or (status == "failed" and not self.retry_failed)
                or (status == "diverged" and not self.retry_diverged))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "RunOptions":
        return cls(**json.loads(text)) if text else cls()


class Bookkeeping:
    """The cell's writes to the results store (rank 0 only; None elsewhere).

    ``progress`` writes are best effort: one that fails after the store's retries is
    logged and training goes on. ``record`` writes (status, results) raise.
    """

    def __init__(self, store: ResultsStore, cell_id: str):
        self.store, self.cell_id = store, cell_id
        self.log: Optional[logging.Logger] = None

    def record(self, **fields: Any) -> None:
        self.store.set_cell(self.cell_id, **fields)

    def progress(self, what: str, write) -> None:
        try:
            write()
        except (StoreError, sqlite3.Error) as e:
            if self.log is not None:
                self.log.warning("could not record %s in the results store (training goes on): %s",
                                 what, e)


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


def run_cell(cell: Cell, store_path: Path, run_root: Path, dist: Optional[DistInfo] = None,
             options: RunOptions = RunOptions()) -> str:
    """Train and decode ``cell``; returns its final status (``busy`` if locked elsewhere; the
    stored status if another runner finished it). A signal is recorded (``interrupted``) and
    re-raised as :class:`~harness.train.interrupt.Interrupted`."""
    dist = dist or distributed.from_env()
    run_dir = Path(run_root) / cell.cell_id
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir / ".lock") if dist.is_main else None
    got = lock.acquire(wait=False) if lock is not None else True
    busy = distributed.broadcast_object(not got, dist)
    if busy:
        return BUSY
    try:
        book = Bookkeeping(ResultsStore(store_path), cell.cell_id) if dist.is_main else None
        # the to-do list was made before this lock was taken: another runner may have finished
        now = book.store.cell(cell.cell_id) if book is not None else None
        settled = distributed.broadcast_object(
            now["status"] if now and options.leaves_alone(now["status"]) else None, dist)
        if settled is not None:
            return settled
        return _run_locked(cell, run_dir, book, dist, options)
    except StoreError as e:  # the store broke before the cell started: nothing to record it in
        print(f"cell {cell.cell_id}: {e}", file=sys.stderr)
        return "failed"
    finally:
        if lock is not None:
            lock.release()


def _run_locked(cell: Cell, run_dir: Path, book: Optional[Bookkeeping], dist: DistInfo,
                options: RunOptions) -> str:
    log = cell_logger(run_dir, cell, dist.rank)
    if book is not None:
        book.log = log
    try:
        if book is not None:
            (run_dir / "config.yaml").write_text(yaml.safe_dump(
                {"cell_id": cell.cell_id, "grid": cell.grid, "name": cell.name, "config": cell.resolved()},
                sort_keys=False))
            book.record(status="running", error=None, code_version=code_version(), run_dir=str(run_dir))
        status = _train_and_decode(cell, run_dir, book, dist, log, options)
    except Interrupted as e:
        log.warning("%s", e.describe())
        if book is not None:
            fields: dict[str, Any] = {"status": "interrupted", "error": e.describe()}
            if e.step is not None:
                fields["step"] = e.step
            _record_or_log(book, log, fields)
        raise
    except BaseException as e:  # record why, then let the grid go on
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        if isinstance(e, DivergedError):
            status, step, msg = "diverged", e.step, f"diverged at step {e.step}: {e}"
        elif isinstance(e, LossScaleCollapsedError):
            status, step, msg = "diverged", None, f"diverged: {e}"
        elif isinstance(e, (StoreError, NoSpaceError, UnreadableCheckpointsError)):  # one line naming the file
            status, step, msg = "failed", None, str(e)
        else:
            status, step, msg = "failed", None, _short_error(e)
        log.error("%s", msg)
        if book is not None:
            fields = {"status": status, "error": msg}
            if step is not None:
                fields["step"] = step
            _record_or_log(book, log, fields)
    finally:
        for h in list(log.handlers):
            h.close()
            log.removeHandler(h)
    return status


def _record_or_log(book: Bookkeeping, log: logging.Logger, fields: dict[str, Any]) -> None:
    """Record an ending; if the store cannot take it, say so and let the grid go on."""
    try:
        book.record(**fields)
    except (StoreError, sqlite3.Error) as e:
        log.error("could not record status %s in the results store: %s", fields.get("status"), e)


def _train_and_decode(cell: Cell, run_dir: Path, book: Optional[Bookkeeping], dist: DistInfo,
                      log: logging.Logger, options: RunOptions) -> str:
    objective = cell.config.objective
    ctc = "ctc" in resolve_objective(objective if isinstance(objective, str) else tuple(objective))
    if dist.is_main:
        data = load_cell_data(cell.config.data, ctc=ctc, logger=log)
        distributed.barrier(dist)
    else:
        distributed.barrier(dist)
        data = load_cell_data(cell.config.data, ctc=ctc, logger=log)
    store = book.store if book is not None else None
    if book is not None:
        model = build_cell_model(cell, data.tokenizer)
        book.progress("the parameter count", lambda: book.record(params=int(model.param_counts()["total"])))
        del model

    def on_epoch(epoch: int, **fields) -> None:
        if book is not None:
            book.progress(f"epoch {epoch}", lambda: (book.store.add_epoch(cell.cell_id, epoch, **fields),
                                                     book.record(step=fields["step"], epoch=float(epoch))))

    def on_progress(step: int, epoch: float) -> None:
        if book is not None:
            book.progress(f"step {step}", lambda: book.record(step=step, epoch=epoch))

    trainer = Trainer(cell, run_dir, data, dist, log, on_epoch=on_epoch, on_progress=on_progress,
                      start_over_if_unreadable=options.start_over_if_unreadable)

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
    if book is not None:
        book.record(status="done", step=result.step, epoch=float(final), error=result.stopped_early or None)
    log.info("cell done: %d steps, %d epochs", result.step, final)
    return "done"
