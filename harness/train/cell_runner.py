"""Run one cell end to end: lock, train (or resume), decode, record.

The results store gets the cell's status as it goes: ``running`` while it
trains, then ``done``, ``diverged`` (with the step), ``failed`` (with the
error) or ``interrupted`` (with the step a signal stopped it at). Only rank 0
writes; a lock file in the run directory keeps two runners from training the
same cell at once, and the runner that takes it reads the cell's state again
(another runner may have finished it since the grid's to-do list was made).
Store writes never hold training up and are never lost: they are queued for a
background writer, and what the store does not take is kept in the cell's
journal (:class:`Bookkeeping`); a trained and decoded cell is ``done`` whatever
the store did meanwhile.
"""
from __future__ import annotations

import copy
import json
import logging
import queue
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from harness.atomic import clean_stale_tmp
from harness.config import Cell
from harness.decoding import DecodeSettings
from harness.evaluate.cell_log import cell_logger
from harness.evaluate.checkpoint import UnreadableCheckpointsError, disk_full_message, is_disk_full
from harness.evaluate.data_setup import load_cell_data
from harness.evaluate.decode import decode_epoch, last_epoch
from harness.evaluate.model_setup import build_cell_model
from harness.locks import FileLock
from harness.store import ResultsStore
from harness.store import journal
from harness.store.results_store import StoreError, StoreLockedError, wait_limit_s
from variants.registry import resolve_objective

from . import distributed
from .distributed import DistInfo
from .interrupt import Interrupted
from .precision import LossScaleCollapsedError
from .train_state import DivergedError
from .trainer import Trainer

BUSY = "busy"
#: seconds a store write waits on another writer's lock before the cell's log says so
LOCK_NOTICE_S = 5.0


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

    Every write goes, in order, through one background thread, so training never waits on
    the store: a store locked by another writer is retried (one log line once a write has
    waited :data:`LOCK_NOTICE_S`), and a write the store refuses (read-only, deleted,
    corrupt, a full disk) is kept in the cell's journal (:mod:`harness.store.journal`),
    which is written into the store before the next write, at the end of the cell, or by
    the next ``harness run`` / ``harness status``. :meth:`record` (a status) waits for the
    writes before it, up to ``HARNESS_STORE_WAIT_S``; then they go to the journal too.
    """

    def __init__(self, store: ResultsStore, cell_id: str, run_dir: Path):
        self.store, self.cell_id = store, cell_id
        self.journal = journal.journal_path(run_dir)
        self.log: Optional[logging.Logger] = None
        # the writer's own view of the store: a lock is retried here, not waited out in SQLite
        self._store = copy.copy(store)
        self._store.wait_s = LOCK_NOTICE_S
        self._store.warn = self._say
        self._queue: "queue.Queue[Optional[tuple[str, dict]]]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._give_up = threading.Event()
        self._said: set[str] = set()
        #: the cell's identity columns, written with every status
        self.identity: dict[str, Any] = {}
        #: the ``wers`` rows this process queued
        self.wers: list[dict[str, Any]] = []

    def _say(self, message: str, key: Optional[str] = None) -> None:
        """Log ``message`` (once per ``key``)."""
        if key is not None:
            if key in self._said:
                return
            self._said.add(key)
        if self.log is not None and self.log.handlers:  # (closed once the cell ended)
            self.log.warning("%s", message)
        else:
            print(message, file=sys.stderr, flush=True)

    # ---- what the cell writes ----
    def submit(self, op: str, **args: Any) -> None:
        """Queue one store write (``op``: a :data:`journal.OPS` method); returns at once."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=f"store-{self.cell_id}", daemon=True)
            self._thread.start()
        self._queue.put((op, args))

    def progress(self, **fields: Any) -> None:
        self.submit("set_cell", cell_id=self.cell_id, **fields)

    def add_epoch(self, epoch: int, **fields: Any) -> None:
        self.submit("add_epoch", cell_id=self.cell_id, epoch=epoch, **fields)

    def add_wer(self, cell_id: str, *args: Any, **fields: Any) -> None:
        """``store.add_wer`` for decoding (:func:`harness.evaluate.decode.record`), queued."""
        names = ("test_set", "method", "epoch", "decode_key")
        row = dict(zip(names, args), **fields)
        self.wers.append(row)
        self.submit("add_wer", cell_id=cell_id, **row)

    def add_utterances(self, cell_id: str, test_set: str, method: str, epoch: int, decode_key: str,
                       utts: Any) -> None:
        """``store.add_utterances`` for decoding, queued (the counts as plain lists)."""
        self.submit("add_utterances", cell_id=cell_id, test_set=test_set, method=method, epoch=epoch,
                    decode_key=decode_key, utts=journal.plain_utterances(utts))

    def record(self, **fields: Any) -> bool:
        """Write a status (and any fields) after every write before it; whether it reached the
        store (False: it is in the journal)."""
        self.submit("set_cell", cell_id=self.cell_id, **fields)
        return self.flush()

    def flush(self) -> bool:
        """Wait for the queued writes (up to ``HARNESS_STORE_WAIT_S`` for a locked store, then
        they go to the journal); whether the store has them all (no journal left)."""
        if self._thread is None:
            return not self.journal.exists()
        done = threading.Event()
        self._queue.put(("__flush__", {"done": done}))
        if not done.wait(wait_limit_s()):
            self._give_up.set()
            done.wait()
            self._give_up.clear()
        return not self.journal.exists()

    def close(self) -> bool:
        """Flush and end the writer thread; whether nothing is left in the journal."""
        ok = self.flush()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if not ok:
            self._say(f"cell {self.cell_id}: {len(journal.entries(self.journal))} result(s) the results "
                      f"store {self.store.path} did not take are kept in {self.journal}; `harness run` "
                      f"or `harness status` of the grid writes them into the store")
        return ok

    # ---- the writer thread ----
    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            op, args = item
            try:
                self._write(None if op == "__flush__" else (op, args))
            except Exception as e:  # a bug, not a store fault: said, and the writer goes on
                self._say(f"cell {self.cell_id}: store write {op} failed: {type(e).__name__}: {e}")
            finally:
                if op == "__flush__":
                    args["done"].set()

    def _write(self, item: Optional[tuple[str, dict]]) -> None:
        """The journal, then ``item`` (None: only the journal), into the store; what the store
        refuses goes into the journal."""
        pause = 0.5
        error: Optional[Exception] = None
        while not self._give_up.is_set():  # (set: the store was locked for too long)
            try:
                if self.journal.exists():
                    journal.replay(self._store, self.journal)
                if item is not None:
                    journal.apply(self._store, item[0], item[1])
                return
            except StoreLockedError:
                self._say(f"results store {self.store.path}: locked by another process for over "
                          f"{LOCK_NOTICE_S:.0f} s; the cell's writes wait in a queue and training goes on",
                          key="locked")
                time.sleep(pause)
                pause = min(2 * pause, 5.0)
            except (StoreError, sqlite3.Error, OSError) as e:
                error = e
                break
        if item is None:
            return
        if error is None:
            error = StoreLockedError(f"{self.store.path}: locked by another process for over "
                                     f"{wait_limit_s():.0f} s")
        try:
            journal.append(self.journal, item[0], item[1])
        except OSError as e:
            self._say(f"cell {self.cell_id}: could not write {item[0]} to the results store ({error}) "
                      f"nor to {self.journal} ({e}): it is lost")
            return
        self._say(f"could not write to the results store ({error}); the cell's results are kept in "
                  f"{self.journal} until the store takes them (training goes on)", key="journal")


def code_version() -> str:
    """``git describe --always --dirty`` of the harness checkout, or 'unknown'."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=root, capture_output=True,
                             text=True, timeout=20)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


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
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(run_dir / ".lock") if dist.is_main else None
        got = lock.acquire(wait=False) if lock is not None else True
    except OSError as e:  # a full disk (the lock itself holds without its holder's name)
        if not is_disk_full(e):
            raise
        print(f"cell {cell.cell_id}: {disk_full_message(e, run_dir)}", file=sys.stderr)
        return "interrupted"
    busy = distributed.broadcast_object(not got, dist)
    if busy:
        return BUSY
    book = None
    try:
        if dist.is_main:  # files a killed run of this cell was writing (checkpoints, progress)
            for p in clean_stale_tmp(run_dir, recursive=True):
                print(f"cell {cell.cell_id}: removed {p}, left by a run killed while writing it",
                      file=sys.stderr)
            book = Bookkeeping(ResultsStore(store_path), cell.cell_id, run_dir)
            if book.journal.exists():  # results an earlier run could not write: before its state is read
                try:
                    journal.replay(book.store, book.journal)
                except StoreError as e:
                    print(f"cell {cell.cell_id}: the results in {book.journal} stay there: {e}", file=sys.stderr)
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
    except OSError as e:  # a full disk before the cell's log exists (its lock, its folder)
        if not is_disk_full(e):
            raise
        print(f"cell {cell.cell_id}: {disk_full_message(e, run_dir)}", file=sys.stderr)
        return "interrupted"
    finally:
        if book is not None:
            book.close()
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
            # who the cell is, with every status: a store deleted meanwhile gets the row back whole
            book.identity = {"grid": cell.grid, "name": cell.name, "variant": cell.variant,
                             "objective": cell.objective, "config": cell.resolved(), "run_dir": str(run_dir)}
            book.progress(status="running", error=None, code_version=code_version(), **book.identity)
        status = _train_and_decode(cell, run_dir, book, dist, log, options)
    except Interrupted as e:
        log.warning("%s", e.describe())
        if book is not None:
            fields: dict[str, Any] = {"status": "interrupted", "error": e.describe()}
            if e.step is not None:
                fields["step"] = e.step
            book.record(**fields, **book.identity)
        raise
    except BaseException as e:  # record why, then let the grid go on
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        if isinstance(e, DivergedError):
            status, step, msg = "diverged", e.step, f"diverged at step {e.step}: {e}"
        elif isinstance(e, LossScaleCollapsedError):
            status, step, msg = "diverged", None, f"diverged: {e}"
        elif is_disk_full(e):  # resumable once there is room: one line naming the folder
            status, step, msg = "interrupted", None, disk_full_message(e, run_dir)
        elif isinstance(e, (StoreError, UnreadableCheckpointsError)):  # one line naming the file
            status, step, msg = "failed", None, str(e)
        else:
            status, step, msg = "failed", None, _short_error(e)
        log.error("%s", msg)
        if book is not None:
            fields = {"status": status, "error": msg}
            if step is not None:
                fields["step"] = step
            book.record(**fields, **book.identity)
    finally:
        for h in list(log.handlers):
            h.close()
            log.removeHandler(h)
    return status


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
    if book is not None:
        model = build_cell_model(cell, data.tokenizer)
        book.progress(params=int(model.param_counts()["total"]))
        del model

    def on_epoch(epoch: int, **fields) -> None:
        if book is not None:
            book.add_epoch(epoch, **fields)
            book.progress(step=fields["step"], epoch=float(epoch))

    def on_progress(step: int, epoch: float) -> None:
        if book is not None:
            book.progress(step=step, epoch=epoch)

    trainer = Trainer(cell, run_dir, data, dist, log, on_epoch=on_epoch, on_progress=on_progress,
                      start_over_if_unreadable=options.start_over_if_unreadable)

    def decode_after(epoch: int) -> None:
        if dist.is_main:
            decode_epoch(cell, data, trainer.ckpt_dir, epoch, trainer.device, book, log)
        distributed.barrier(dist)

    trainer.on_epoch_end_decode = decode_after
    result = trainer.run()
    final = last_epoch(trainer.ckpt_dir)
    if final is None:
        raise RuntimeError(f"training wrote no epoch checkpoint in {trainer.ckpt_dir}")
    keys = {DecodeSettings.from_config(cell.config).key(m) for m in cell.config.decode_methods}
    already = book is not None and any(
        r["epoch"] == final and r["decode_key"] in keys for r in _decoded(book))
    if not (cell.config.decode.every_epoch and already):
        decode_after(final)
    if book is not None:  # (a store that does not take it: the journal keeps it, the cell is done)
        book.record(status="done", step=result.step, epoch=float(final), error=result.stopped_early or None,
                    **book.identity)
    log.info("cell done: %d steps, %d epochs", result.step, final)
    return "done"


def _decoded(book: Bookkeeping) -> list[dict[str, Any]]:
    """The cell's ``wers`` rows, without waiting on the store: those this run queued, those in
    its journal and those the store has (if it can be read)."""
    rows = list(book.wers) + [e["args"] for e in journal.entries(book.journal) if e["op"] == "add_wer"]
    try:
        rows += book.store.rows("wers", cell_id=book.cell_id)
    except StoreError:
        pass
    return rows
