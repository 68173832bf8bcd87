"""The results store's versioned migrations, each run once when an older store is opened
for writing.

A store records the last migration it has had in SQLite's ``user_version``; opening one
below :data:`SCHEMA_VERSION` runs the missing steps in one transaction (another process
opening it at the same moment waits, then finds them done). New columns are not steps:
:func:`harness.store.results_store.add_missing_columns` adds them on every open.

1. Cell ids without decoding settings. Before, a cell's id also hashed its ``decode``
   section (``decode.methods`` defaulted to greedy search) and ``train.keep_last_k``
   (default 30 then). Rows kept under such an id move to the id the same config has
   now (:func:`harness.config.cell_id.cell_id`), with their epochs, WERs and utterance
   counts, and the run folder the row names is renamed beside it, so nothing is retrained.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

#: the version a store has once every migration below has run
SCHEMA_VERSION = 1
#: the tables keyed by cell id
CELL_TABLES = ("cells", "epochs", "wers", "utterances")


def migrate(con: sqlite3.Connection, warn: Callable[[str], None]) -> None:
    """Run the migrations ``con``'s store has not had yet, in one write transaction."""
    if con.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    if con.in_transaction:
        con.commit()
    con.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait and find it done
    version = con.execute("PRAGMA user_version").fetchone()[0]
    for number, step in enumerate(STEPS, start=1):
        if version < number:
            step(con, warn)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def legacy_cell_id(config: Any, spec: Any) -> str:
    """The id a cell had before decoding settings left the id (they were hashed too, and
    ``train.keep_last_k`` defaulted to 30)."""
    from harness.config.cell_id import config_hash

    cfg = config.model_dump(mode="json", exclude_defaults=True)
    decode = cfg.get("decode", {})
    if decode.get("methods") == ["greedy_search"]:  # the default decode.methods then
        decode.pop("methods")
        if not decode:
            cfg.pop("decode")
    for section, keys in (("train", ("log_interval", "oom_check", "max_minutes", "keep_optimizer_k")),
                          ("data", ("num_workers",))):
        for k in keys:
            cfg.get(section, {}).pop(k, None)
    train = cfg.get("train", {})
    if train.get("keep_last_k", 30) == 30:  # the default then
        train.pop("keep_last_k", None)
    return config_hash(cfg, spec)


def cell_ids_without_decoding_settings(con: sqlite3.Connection, warn: Callable[[str], None]) -> None:
    """Step 1 (see the module docstring)."""
    rows = con.execute("SELECT cell_id, name, config, run_dir FROM cells").fetchall()
    if not rows:
        return
    from pydantic import ValidationError

    from harness.config import CellConfig
    from harness.config.cell_id import cell_id
    from variants import VariantError, get_spec

    taken = {r[0] for r in rows}
    for old, name, config_json, run_dir in rows:
        try:
            config = CellConfig.model_validate(json.loads(config_json))
            spec = get_spec(config.variant, config.overrides)
        except (TypeError, json.JSONDecodeError, ValidationError, VariantError):
            continue  # not a grid cell's config (a decoded checkpoint's row), or no longer one
        new = cell_id(config, spec)
        if new == old or new in taken or legacy_cell_id(config, spec) != old:
            continue
        for table in CELL_TABLES:
            con.execute(f"UPDATE {table} SET cell_id=? WHERE cell_id=?", (new, old))
        con.execute("UPDATE cells SET run_dir=?, updated_at=? WHERE cell_id=?",
                    (moved_run_dir(run_dir, old, new, name, warn), time.time(), new))
        taken.add(new)
        warn(f"cell {name}: id {old} -> {new} (decoding settings are no longer part of the id; its "
             "runs and results moved)")


def moved_run_dir(run_dir: str | None, old: str, new: str, name: str,
                  warn: Callable[[str], None]) -> str | None:
    """The cell's run folder ``.../<old>`` renamed ``.../<new>`` (a relative one is found from
    the working directory, as `harness run` wrote it); the new path."""
    if not run_dir or Path(run_dir).name != old:
        return run_dir  # a folder not named by the id (a decoded checkpoint's output): stays
    old_dir = Path(run_dir)
    new_dir = old_dir.with_name(new)
    if old_dir.is_dir() and not new_dir.exists():
        old_dir.rename(new_dir)
    elif not new_dir.is_dir():
        warn(f"cell {name}: its run folder {old_dir} is not there (seen from {os.getcwd()}); its "
             f"results moved to id {new}: rename its folder to {new} too, or its checkpoints are "
             "not found (to decode or resume it)")
    return str(new_dir)


#: migration steps in order: step N brings a store to version N
STEPS: tuple[Callable[[sqlite3.Connection, Callable[[str], None]], None], ...] = (
    cell_ids_without_decoding_settings,
)
