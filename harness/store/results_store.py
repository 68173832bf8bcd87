"""The one results store: SQLite in WAL mode, read by the reporter with pandas.

Tables (columns are fixed here; every writer goes through :class:`ResultsStore`):

- ``cells``    one row per grid cell: resolved config, code version, status
               (pending, running, interrupted, done, failed, diverged), error text, progress,
               params, FLOPs, run directory.
- ``epochs``   per-epoch train/valid losses of a cell.
- ``wers``     WER/CER per cell, test set, decoding method, epoch and decode key
               (the averaging and beam, ``harness.decoding.settings``), with
               insertions, deletions, substitutions, reference length and which
               weights were decoded (``averaged``).
- ``utterances`` every utterance of one decode, under the ``wers`` key: one row per
               decode with packed arrays (ids, speakers, reference length,
               substitutions, deletions, insertions, in the decode's unit), what
               ``harness compare`` bootstraps from. Stores from before it get the
               table empty: their decodes have point estimates only.
- ``profile``  params and encoder GFLOPs per variant and objective.
- ``bench``    encoder inference time and peak memory per variant and device.
- ``train_bench`` training step time, peak memory and bytes saved for backward
               per variant, device, precision and batch.

Faults are one-line :class:`StoreError` messages naming the file and what to
do: a missing, empty (0 bytes), corrupt, read-only or locked store. Reading
commands open it read-only (never creating or changing it); a lock held by
another writer is waited out with backoff for up to ``HARNESS_STORE_WAIT_S``
seconds (default 300) before it is an error. A store written by an older version is
brought up to date when opened for writing: missing columns are added, and the
versioned steps of :mod:`harness.store.migrations` run once.
"""
from __future__ import annotations

import errno
import json
import os
import sqlite3
import sys
import time
import urllib.parse
import zlib
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import migrations

CELL_STATUSES = ("pending", "running", "interrupted", "done", "failed", "diverged")
#: seconds one statement waits on a lock before the retry loop backs off and tries again
BUSY_TIMEOUT_S = 5.0


class StoreError(RuntimeError):
    """The results store cannot be used; the message names the file and what to do."""


class StoreLockedError(StoreError):
    """Another process held the store's write lock for longer than this writer waits."""


def wait_limit_s() -> float:
    return float(os.environ.get("HARNESS_STORE_WAIT_S", "300"))


def _is_locked(e: sqlite3.Error) -> bool:
    text = str(e).lower()
    return isinstance(e, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def store_error(path: Path, e: BaseException, waited_s: float | None = None) -> StoreError:
    """A one-line :class:`StoreError` for an sqlite3 or OS error on the store at ``path``."""
    text = str(e)
    low = text.lower()
    if "malformed" in low or "not a database" in low or "file is encrypted" in low:
        return StoreError(f"{path}: not a readable results store ({text}); restore a copy, or move it "
                          f"away and rerun `harness run` to start a new one (results in it are lost)")
    unwritable = path.exists() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))
    if "readonly" in low or "read-only" in low or isinstance(e, PermissionError) or (
            "unable to open" in low and unwritable):
        return StoreError(f"{path}: cannot write the results store ({text}); make the file and its "
                          f"folder writable, or pass --store with another path")
    if "unable to open" in low:
        return StoreError(f"{path}: cannot open the results store ({text}); check that its folder "
                          f"exists and is readable (and writable for `harness run`)")
    if "locked" in low or "busy" in low:
        return StoreLockedError(f"{path}: results store locked by another process for over "
                                f"{wait_limit_s() if waited_s is None else waited_s:.0f} s ({text}); "
                                f"wait for it to finish, or raise HARNESS_STORE_WAIT_S")
    return StoreError(f"{path}: results store error: {type(e).__name__}: {text}")

SCHEMA: dict[str, dict[str, str]] = {
    "cells": {
        "cell_id": "TEXT NOT NULL", "grid": "TEXT", "name": "TEXT", "variant": "TEXT",
        "objective": "TEXT", "config": "TEXT", "code_version": "TEXT",
        "status": "TEXT NOT NULL", "error": "TEXT", "step": "INTEGER", "epoch": "REAL",
        "params": "INTEGER", "gflops": "REAL", "run_dir": "TEXT",
        "created_at": "REAL", "updated_at": "REAL",
    },
    "epochs": {
        "cell_id": "TEXT NOT NULL", "epoch": "INTEGER NOT NULL", "step": "INTEGER",
        "train_loss": "REAL", "valid_loss": "REAL", "lr": "REAL", "seconds": "REAL",
        "extra": "TEXT",
    },
    "wers": {
        "cell_id": "TEXT NOT NULL", "test_set": "TEXT NOT NULL", "method": "TEXT NOT NULL",
        "epoch": "INTEGER NOT NULL", "decode_key": "TEXT NOT NULL", "unit": "TEXT", "wer": "REAL",
        "errors": "INTEGER", "ins": "INTEGER", "del": "INTEGER", "sub": "INTEGER",
        "ref_words": "INTEGER", "averaged": "TEXT", "created_at": "REAL",
    },
    "utterances": {
        "cell_id": "TEXT NOT NULL", "test_set": "TEXT NOT NULL", "method": "TEXT NOT NULL",
        "epoch": "INTEGER NOT NULL", "decode_key": "TEXT NOT NULL", "unit": "TEXT",
        "n_utts": "INTEGER", "ids": "BLOB", "speakers": "BLOB", "counts": "BLOB",
        "created_at": "REAL",
    },
    "profile": {
        "variant": "TEXT NOT NULL", "objective": "TEXT NOT NULL", "params": "INTEGER",
        "encoder_params": "INTEGER", "parts": "TEXT", "gflops": "REAL",
        "gflops_convention": "TEXT", "gflops_flop_counter": "REAL",
        "params_paper": "REAL", "gflops_paper": "REAL", "created_at": "REAL",
    },
    "bench": {
        "variant": "TEXT NOT NULL", "device": "TEXT NOT NULL", "threads": "INTEGER",
        "batch": "INTEGER NOT NULL", "duration_s": "REAL NOT NULL", "runs": "INTEGER",
        "median_s": "REAL", "p25_s": "REAL", "p75_s": "REAL", "peak_mem_mb": "REAL",
        "mem_method": "TEXT", "created_at": "REAL",
    },
    "train_bench": {
        "variant": "TEXT NOT NULL", "device": "TEXT NOT NULL", "precision": "TEXT NOT NULL",
        "device_type": "TEXT", "objective": "TEXT", "threads": "INTEGER", "batch": "INTEGER NOT NULL",
        "duration_s": "REAL NOT NULL", "steps": "INTEGER", "median_s": "REAL", "p25_s": "REAL",
        "p75_s": "REAL", "peak_mem_mb": "REAL", "saved_mb": "REAL", "mem_method": "TEXT",
        "created_at": "REAL", "steps_per_s": "REAL", "phases": "TEXT", "live_peak_mb": "REAL",
    },
}
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "cells": ("cell_id",),
    "epochs": ("cell_id", "epoch"),
    "wers": ("cell_id", "test_set", "method", "epoch", "decode_key"),
    "utterances": ("cell_id", "test_set", "method", "epoch", "decode_key"),
    "profile": ("variant", "objective"),
    "bench": ("variant", "device", "batch", "duration_s"),
    "train_bench": ("variant", "device", "precision", "batch", "duration_s"),
}


#: rows of the packed ``utterances.counts`` array (int32, one column per utterance)
UTTERANCE_COUNTS = ("ref_len", "sub", "del", "ins")


def pack_texts(values: Sequence[str]) -> bytes:
    """Strings (no newlines) as one zlib-compressed, newline-separated UTF-8 blob."""
    bad = [v for v in values if "\n" in v]
    if bad:
        raise ValueError(f"utterance ids and speakers cannot hold a newline: {bad[0]!r}")
    return zlib.compress("\n".join(values).encode("utf-8"))


def unpack_texts(blob: bytes, n: int) -> list[str]:
    if n == 0:
        return []
    return zlib.decompress(blob).decode("utf-8").split("\n")


def pack_counts(counts: np.ndarray) -> bytes:
    """An int array (len(UTTERANCE_COUNTS), n) as zlib-compressed little-endian int32."""
    return zlib.compress(np.ascontiguousarray(counts, dtype="<i4").tobytes())


def unpack_counts(blob: bytes, n: int) -> np.ndarray:
    return np.frombuffer(zlib.decompress(blob), dtype="<i4").astype(np.int64).reshape(
        len(UTTERANCE_COUNTS), n)


def decode_utterances(row: Mapping[str, Any]) -> dict[str, Any]:
    """An ``utterances`` row with its arrays unpacked: ``ids``, ``speakers`` (lists) and
    ``ref_len``, ``sub``, ``del``, ``ins``, ``errors`` (int64 arrays)."""
    n = int(row["n_utts"])
    counts = unpack_counts(row["counts"], n)
    out = {k: row[k] for k in row if k not in ("ids", "speakers", "counts")}
    out["ids"] = unpack_texts(row["ids"], n)
    out["speakers"] = unpack_texts(row["speakers"], n)
    out.update(zip(UTTERANCE_COUNTS, counts))
    out["errors"] = counts[1] + counts[2] + counts[3]
    return out


def default_store_path() -> Path:
    return Path(os.environ.get("HARNESS_STORE", "runs/results.sqlite"))


def add_missing_columns(con: sqlite3.Connection, table: str, col_sql: str, pk: str) -> None:
    """Bring a table written by an older version up to :data:`SCHEMA` (on every open; the
    versioned migrations, run once, are :mod:`harness.store.migrations`).

    A missing plain column is added (NULL in old rows); a missing key column
    (``wers.decode_key``) means a new primary key, so the table is copied into
    the new layout with that column '' in old rows.
    """
    have = [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
    missing = [c for c in SCHEMA[table] if c not in have]
    if not missing:
        return
    if any(c in PRIMARY_KEYS[table] for c in missing):
        old = f"{table}_before_migration"
        con.execute(f"ALTER TABLE {table} RENAME TO {old}")
        con.execute(f"CREATE TABLE {table} ({col_sql}, PRIMARY KEY ({pk}))")
        keys = [c for c in missing if c in PRIMARY_KEYS[table]]
        cols = ", ".join(f'"{c}"' for c in have + keys)
        vals = ", ".join([f'"{c}"' for c in have] + ["''"] * len(keys))
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {vals} FROM {old}")
        con.execute(f"DROP TABLE {old}")
        return
    for c in missing:
        con.execute(f'ALTER TABLE {table} ADD COLUMN "{c}" {SCHEMA[table][c].replace(" NOT NULL", "")}')


class ResultsStore:
    """Thin, typed access to the SQLite results store.

    Safe for several processes: WAL mode, a busy timeout, and short
    transactions. Dict/list values are stored as JSON text.
    """

    def __init__(self, path: str | os.PathLike | None = None, readonly: bool = False,
                 wait_s: float | None = None,
                 warn: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)):
        self.path = Path(path) if path is not None else default_store_path()
        self.readonly = readonly
        #: how long a locked store is waited for (None: ``HARNESS_STORE_WAIT_S``)
        self.wait_s = wait_s
        self.warn = warn
        self._made = False
        #: a read-only store in a read-only folder: SQLite cannot create its WAL index there,
        #: so it is read as immutable (nothing can be writing it)
        self._immutable = False
        if self.path.is_dir():
            raise StoreError(f"{self.path}: is a folder, not a results store file; pass --store FILE")
        if readonly and not self.path.exists():
            raise StoreError(f"{self.path}: no results store here; run `harness run GRID` first, "
                             f"or pass --store with the right file")
        if self.path.exists() and self.path.stat().st_size == 0:
            raise StoreError(f"{self.path}: the results store is empty (0 bytes), so it was truncated "
                             f"or not written by the harness; restore a copy, or delete it to start a new one")
        if readonly:
            self._check_readable()
            return
        self._make()

    def _make(self) -> None:
        """The store file (and its folder) made and its tables created."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._create_file()
        except OSError as e:
            raise store_error(self.path, e) from None
        self._run(self._create)
        self._made = True

    def _create_file(self) -> None:
        """Make a missing store whole beside it and link it into place, so no other process
        (a second runner starting at the same moment) ever sees it empty, half made, or has
        its own replaced."""
        if self.path.exists():
            return
        from harness.atomic import tmp_sibling

        tmp = tmp_sibling(self.path)
        try:
            con = sqlite3.connect(tmp)
            try:
                self._create(con)
                con.commit()
            finally:
                con.close()
            try:
                os.link(tmp, self.path)
            except FileExistsError:  # another process made it meanwhile: that one is used
                pass
            except OSError as e:  # a filesystem without hard links: rename (last one wins)
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                if not self.path.exists():
                    os.replace(tmp, self.path)
        except sqlite3.Error as e:
            raise store_error(self.path, e) from None
        finally:
            for p in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
                p.unlink(missing_ok=True)

    def _create(self, con: sqlite3.Connection) -> None:
        if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            con.execute("PRAGMA journal_mode=WAL")
        for table, cols in SCHEMA.items():
            col_sql = ", ".join(f'"{c}" {t}' for c, t in cols.items())
            pk = ", ".join(f'"{c}"' for c in PRIMARY_KEYS[table])
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({col_sql}, PRIMARY KEY ({pk}))")
            add_missing_columns(con, table, col_sql, pk)
        migrations.migrate(con, self.warn)

    def _recreate_if_deleted(self) -> None:
        """A writer whose store was deleted while in use makes a new one (SQLite alone would
        leave an empty file without tables: "no such table: cells"), and says so once."""
        if self.readonly or not self._made or self.path.exists():
            return
        self._made = False
        self._make()
        self.warn(f"{self.path}: the results store was deleted while in use: made a new one; the rows "
                  f"written to the old one are gone unless a copy of it is restored")

    def _check_readable(self) -> None:
        def check(con: sqlite3.Connection) -> None:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "cells" not in tables:
                raise StoreError(f"{self.path}: not a results store (no cells table); pass --store "
                                 f"with the grid's store")

        self._run(check)

    def _wait_s(self) -> float:
        return wait_limit_s() if self.wait_s is None else self.wait_s

    def _open(self) -> sqlite3.Connection:
        self._recreate_if_deleted()
        busy = min(BUSY_TIMEOUT_S, self._wait_s())
        if self.readonly:
            uri = (f"file:{urllib.parse.quote(str(self.path.resolve()))}?mode=ro"
                   + ("&immutable=1" if self._immutable else ""))
            con = sqlite3.connect(uri, uri=True, timeout=busy)
        else:
            con = sqlite3.connect(self.path, timeout=busy)
        con.execute(f"PRAGMA busy_timeout={int(busy * 1000)}")
        return con

    def _run(self, work):
        """``work(connection)`` in one transaction; a locked store is retried with backoff,
        every other fault is a :class:`StoreError`."""
        deadline = time.monotonic() + self._wait_s()
        pause = 0.05
        while True:
            con = None
            try:
                con = self._open()
                out = work(con)
                con.commit()
                return out
            except sqlite3.Error as e:
                if (self.readonly and not self._immutable and "unable to open" in str(e)
                        and not os.access(self.path.parent, os.W_OK | os.X_OK)):
                    self._immutable = True
                    continue
                if _is_locked(e) and time.monotonic() + pause < deadline:
                    time.sleep(pause)
                    pause = min(pause * 2, 5.0)
                    continue
                raise store_error(self.path, e, self.wait_s) from None
            except OSError as e:
                raise store_error(self.path, e) from None
            finally:
                if con is not None:
                    con.close()

    # ---- generic ----
    def upsert(self, table: str, row: Mapping[str, Any]) -> None:
        """Insert or update one row; columns not given keep their old values."""
        if table not in SCHEMA:
            raise KeyError(f"unknown table {table!r}; tables: {', '.join(SCHEMA)}")
        unknown = set(row) - set(SCHEMA[table])
        if unknown:
            raise KeyError(f"unknown columns {sorted(unknown)} for table {table!r}; "
                           f"allowed: {', '.join(SCHEMA[table])}")
        missing = [k for k in PRIMARY_KEYS[table] if row.get(k) is None]
        if missing:
            raise KeyError(f"table {table!r} needs key columns {missing}")
        values = {k: (json.dumps(v, sort_keys=True) if isinstance(v, (dict, list, tuple)) else v)
                  for k, v in row.items()}
        cols = list(values)
        placeholders = ", ".join("?" for _ in cols)
        updates = ", ".join(f'"{c}"=excluded."{c}"' for c in cols if c not in PRIMARY_KEYS[table])
        conflict = ", ".join(f'"{c}"' for c in PRIMARY_KEYS[table])
        sql = (f'INSERT INTO {table} ({", ".join(chr(34) + c + chr(34) for c in cols)}) '
               f"VALUES ({placeholders}) ON CONFLICT ({conflict}) "
               + (f"DO UPDATE SET {updates}" if updates else "DO NOTHING"))
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only; this command does not write the store")
        self._run(lambda con: con.execute(sql, [values[c] for c in cols]))

    def rows(self, table: str, **where: Any) -> list[dict[str, Any]]:
        if table not in SCHEMA:
            raise KeyError(f"unknown table {table!r}; tables: {', '.join(SCHEMA)}")
        sql = f"SELECT * FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(f'"{k}"=?' for k in where)

        def read(con: sqlite3.Connection) -> list[dict[str, Any]]:
            con.row_factory = sqlite3.Row
            if not con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                               (table,)).fetchone():
                return []  # a store from before the table, opened read-only (not migrated)
            return [dict(r) for r in con.execute(sql, list(where.values()))]

        return self._run(read)

    def frame(self, table: str):
        """The whole table as a pandas DataFrame (empty with its columns if no rows)."""
        import pandas as pd

        rows = self.rows(table)
        return pd.DataFrame(rows, columns=list(SCHEMA[table]))

    # ---- cells ----
    def set_cell(self, cell_id: str, **fields: Any) -> None:
        status = fields.get("status")
        if status is not None and status not in CELL_STATUSES:
            raise ValueError(f"unknown status {status!r}; allowed: {', '.join(CELL_STATUSES)}")
        now = time.time()
        existing = self.rows("cells", cell_id=cell_id)
        row = {"cell_id": cell_id, "updated_at": now, **fields}
        if not existing:
            row.setdefault("status", "pending")
            row["created_at"] = now
        else:  # SQLite checks NOT NULL before ON CONFLICT: carry the current status
            row.setdefault("status", existing[0]["status"])
        self.upsert("cells", row)

    def cell(self, cell_id: str) -> dict[str, Any] | None:
        r = self.rows("cells", cell_id=cell_id)
        return r[0] if r else None

    def rename_cell(self, old: str, new: str, **fields: Any) -> None:
        """Give cell ``old`` (and its epoch, WER and utterance rows) the id ``new``, in one transaction."""
        def rename(con: sqlite3.Connection) -> None:
            for table in migrations.CELL_TABLES:
                con.execute(f"UPDATE {table} SET cell_id=? WHERE cell_id=?", (new, old))

        self._run(rename)
        if fields:
            self.set_cell(new, **fields)

    def add_epoch(self, cell_id: str, epoch: int, **fields: Any) -> None:
        self.upsert("epochs", {"cell_id": cell_id, "epoch": epoch, **fields})

    def add_wer(self, cell_id: str, test_set: str, method: str, epoch: int, decode_key: str = "",
                **fields: Any) -> None:
        """One decode's result; a decode with the same key again replaces it."""
        self.upsert("wers", {"cell_id": cell_id, "test_set": test_set, "method": method,
                             "epoch": epoch, "decode_key": decode_key, "created_at": time.time(),
                             **fields})

    def add_utterances(self, cell_id: str, test_set: str, method: str, epoch: int, decode_key: str,
                       utts: Any) -> None:
        """One decode's per-utterance counts (``utts``: ids, speakers, ref_len, subs, dels, ins
        and unit, as :class:`harness.decoding.UtteranceErrors`), replacing an earlier one."""
        n = len(utts.ids)
        counts = np.stack([np.asarray(a, dtype=np.int64) for a in
                           (utts.ref_len, utts.subs, utts.dels, utts.ins)])
        if counts.shape != (len(UTTERANCE_COUNTS), n) or len(utts.speakers) != n:
            raise ValueError(f"utterances: {n} ids but counts of shape {counts.shape} and "
                             f"{len(utts.speakers)} speakers")
        self.upsert("utterances", {"cell_id": cell_id, "test_set": test_set, "method": method,
                                   "epoch": epoch, "decode_key": decode_key, "unit": utts.unit,
                                   "n_utts": n, "ids": pack_texts(list(utts.ids)),
                                   "speakers": pack_texts(list(utts.speakers)),
                                   "counts": pack_counts(counts), "created_at": time.time()})

    def utterances(self, **where: Any) -> list[dict[str, Any]]:
        """``utterances`` rows (filtered by key columns) unpacked by :func:`decode_utterances`."""
        return [decode_utterances(r) for r in self.rows("utterances", **where)]

    def add_profile(self, variant: str, objective: str, **fields: Any) -> None:
        self.upsert("profile", {"variant": variant, "objective": objective,
                                "created_at": time.time(), **fields})

    def add_bench(self, variant: str, device: str, batch: int, duration_s: float, **fields: Any) -> None:
        self.upsert("bench", {"variant": variant, "device": device, "batch": batch,
                              "duration_s": duration_s, "created_at": time.time(), **fields})

    def add_train_bench(self, variant: str, device: str, precision: str, batch: int,
                        duration_s: float, **fields: Any) -> None:
        self.upsert("train_bench", {"variant": variant, "device": device, "precision": precision,
                                    "batch": batch, "duration_s": duration_s,
                                    "created_at": time.time(), **fields})
