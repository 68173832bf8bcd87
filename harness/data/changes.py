"""What preparation did to a corpus's utterances, written beside its manifests.

``OUT/changes.jsonl`` holds one JSON object per dropped or changed utterance::

    {"split": "test-clean", "stage": "manifests", "id": "1089-134686-0000",
     "change": "dropped", "reason": "unreadable audio: ...", "source": "/path/to.flac"}

``change`` is ``dropped`` (the utterance is not in the split), ``resampled``
(its audio is read at 16 kHz through lhotse's resampling) or
``outside_alphabet`` (its transcript, kept, holds characters outside the
corpus alphabet), ``too_short`` (fewer encoder frames than its transcript needs:
training leaves it out, harness.data.too_short), ``mixed_down`` (its audio has
several channels, mixed down to their mean) or ``channel_picked`` (one channel
of several kept, the ``channel`` option). Preparation is incremental, so each (split, stage) replaces
its own entries and the file always describes the folder as it is. The
policies (``allow_dropped``, ``oov_chars``) are checked against this file on
every ``prepare_corpus`` call, also when the corpus was prepared before.
"""
from __future__ import annotations

import json
import logging
import warnings
from collections import Counter
from pathlib import Path
from typing import Iterable

from harness.atomic import atomic_path
from .errors import DataError

log = logging.getLogger(__name__)

CHANGES_FILE = "changes.jsonl"
KINDS = ("dropped", "resampled", "outside_alphabet", "too_short", "mixed_down", "channel_picked")


def warn(msg: str) -> None:
    """A warning line for the user: logged, and a Python warning (which tests can catch)."""
    log.warning(msg)
    warnings.warn(msg, stacklevel=3)


def change(split: str, stage: str, utt_id: str, kind: str, reason: str, source: str = "") -> dict:
    """One entry of ``changes.jsonl``."""
    if kind not in KINDS:
        raise ValueError(f"unknown change {kind!r}; allowed: {', '.join(KINDS)}")
    return {"split": split, "stage": stage, "id": utt_id, "change": kind, "reason": reason,
            "source": source}


def load_changes(out: Path) -> list[dict]:
    path = Path(out) / CHANGES_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def record_changes(out: Path, split: str, stage: str, entries: Iterable[dict]) -> list[dict]:
    """Replace the entries of (``split``, ``stage``) by ``entries``; returns the whole log."""
    kept = [e for e in load_changes(out) if (e["split"], e["stage"]) != (split, stage)]
    log_ = kept + list(entries)
    with atomic_path(Path(out) / CHANGES_FILE) as tmp:
        tmp.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in log_), encoding="utf-8")
    return log_


def summary_line(changes: list[dict], out: Path) -> str:
    """One line: how many utterances were dropped, resampled, flagged, and where the list is."""
    if not changes:
        return "no utterance dropped or changed"
    parts = []
    for kind, what in (("dropped", "dropped"), ("resampled", "resampled to 16 kHz"),
                       ("outside_alphabet", "with characters outside the alphabet (kept)"),
                       ("too_short", "too short for their transcript (left out of training)"),
                       ("mixed_down", "mixed down to one channel"),
                       ("channel_picked", "reduced to the chosen channel")):
        per_split = Counter(e["split"] for e in changes if e["change"] == kind)
        if per_split:
            where = ", ".join(f"{s} {n}" for s, n in per_split.items())
            parts.append(f"{sum(per_split.values())} {what} ({where})")
    return f"utterances: {'; '.join(parts)}; each listed in {Path(out) / CHANGES_FILE}"


def check_test_drops(changes: list[dict], corpus: str, test_splits: Iterable[str], sizes: dict[str, int],
                     allow_dropped: bool, out: Path) -> None:
    """A test split that lost utterances is an error unless ``allow_dropped``."""
    for split in test_splits:
        lost = [e for e in changes if e["split"] == split and e["change"] == "dropped"]
        if not lost:
            continue
        total = sizes.get(split)
        of = f" of {total}" if total else ""
        first = lost[0]
        msg = (f"{corpus} test split {split} loses {len(lost)}{of} utterances "
               f"(e.g. {first['id']}: {first['reason']}); ")
        if not allow_dropped:
            raise DataError(msg + "a test set must keep every utterance: fix or remove the files, or "
                            "allow it with --allow-dropped (data.allow_dropped: true); "
                            f"each is listed in {Path(out) / CHANGES_FILE}")
        warn(msg + f"scored on the rest (allow_dropped); each is listed in {Path(out) / CHANGES_FILE}")
