"""A cell's store writes that the results store did not take, kept beside the cell.

When the store refuses a write (read-only, deleted, corrupt, a full disk, locked
for too long) the runner appends it to ``store-journal.jsonl`` in the cell's run
folder, one JSON object a line (``{"op": "add_epoch", "args": {...}}``), in the
order the writes were made. The journal is written into the store, in that
order, before the cell's next write, at the end of the cell, and by the next
``harness run`` or ``harness status`` of the grid; then it is deleted. Every
write is an upsert, so writing an entry twice (a replay cut short) is harmless.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterable

JOURNAL = "store-journal.jsonl"
#: the store methods a journal entry may name (every one an upsert)
OPS = ("set_cell", "add_epoch", "add_wer", "add_utterances")
#: the per-utterance arrays of ``add_utterances`` (kept as lists in an entry)
UTTERANCE_FIELDS = ("ids", "speakers", "ref_len", "subs", "dels", "ins")


def plain_utterances(utts: Any) -> dict[str, Any]:
    """``add_utterances``' counts (a :class:`harness.decoding.UtteranceErrors`) as JSON values."""
    out: dict[str, Any] = {k: [v.item() if hasattr(v, "item") else v for v in getattr(utts, k)]
                           for k in UTTERANCE_FIELDS}
    out["unit"] = utts.unit
    return out


def apply(store: Any, op: str, args: dict[str, Any]) -> None:
    """Do one journaled write on ``store`` (``add_utterances``' counts given as by
    :func:`plain_utterances`)."""
    if op not in OPS:
        raise ValueError(f"unknown journal op {op!r}; allowed: {', '.join(OPS)}")
    if op == "add_utterances" and isinstance(args.get("utts"), dict):
        args = dict(args, utts=SimpleNamespace(**args["utts"]))
    getattr(store, op)(**args)


def journal_path(run_dir: Path) -> Path:
    return Path(run_dir) / JOURNAL


def append(path: Path, op: str, args: dict[str, Any]) -> None:
    """Add one write to the journal (flushed to disk: it may be the only copy of a result)."""
    if op not in OPS:
        raise ValueError(f"unknown journal op {op!r}; allowed: {', '.join(OPS)}")
    line = json.dumps({"op": op, "args": args}, sort_keys=True, default=str) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def entries(path: Path) -> list[dict[str, Any]]:
    """The journal's writes in order ([] if there is none; a torn last line, from a process
    killed while appending it, is left out)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(e, dict) and e.get("op") in OPS and isinstance(e.get("args"), dict):
            out.append(e)
    return out


def replay(store: Any, path: Path) -> int:
    """Write the journal at ``path`` into ``store`` and delete it; the number of writes.

    A store fault (:class:`~harness.store.results_store.StoreError`) propagates and the
    journal stays (the writes done so far are done again next time: they are upserts).
    """
    todo = entries(path)
    for e in todo:
        apply(store, e["op"], e["args"])
    Path(path).unlink(missing_ok=True)
    return len(todo)


def replay_cells(store: Any, run_dirs: Iterable[Path], say: Callable[[str], None]) -> None:
    """Replay the journal of each run folder whose cell no runner holds (its ``.lock``);
    ``say`` gets one line per journal written (or left, with why)."""
    from harness.locks import FileLock
    from harness.store.results_store import StoreError

    for run_dir in run_dirs:
        path = journal_path(run_dir)
        if not path.exists():
            continue
        lock = FileLock(Path(run_dir) / ".lock")
        if not lock.acquire(wait=False):  # its runner is writing it now
            continue
        try:
            n = replay(store, path)
            say(f"{run_dir.name}: wrote the {n} result(s) kept in {path} into the results store")
        except StoreError as e:
            say(f"{run_dir.name}: {len(entries(path))} result(s) stay in {path}: {e}")
        finally:
            lock.release()
