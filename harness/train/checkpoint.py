"""Checkpoints: written atomically, found again after a crash.

``checkpoint-<step>.pt`` every N steps (the newest K kept) and
``epoch-<e>.pt`` at each epoch end, as in the authors' recipe; only the
newest few keep the optimizer state (:func:`retain`). A file is
written to a temporary name, flushed to disk and renamed, so a process killed
mid-write never leaves a truncated checkpoint under a real name; a file that
still fails to load is skipped when resuming.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional

import torch

from harness.atomic import atomic_path

_STEP = re.compile(r"^checkpoint-(\d+)\.pt$")
_EPOCH = re.compile(r"^epoch-(\d+)\.pt$")


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file beside ``path``, flushed to disk, then renamed."""
    with atomic_path(path, durable=True) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())


def step_path(ckpt_dir: Path, step: int) -> Path:
    return Path(ckpt_dir) / f"checkpoint-{step}.pt"


def epoch_path(ckpt_dir: Path, epoch: int) -> Path:
    return Path(ckpt_dir) / f"epoch-{epoch}.pt"


def epoch_checkpoints(ckpt_dir: Path) -> dict[int, Path]:
    """Epoch number -> path of every ``epoch-<e>.pt``."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return {}
    return {int(m.group(1)): p for p in d.iterdir() if (m := _EPOCH.match(p.name))}


def load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def latest_valid(ckpt_dir: Path) -> Optional[tuple[Path, dict[str, Any]]]:
    """The newest checkpoint that loads (newest by write time, then by step); None if none."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return None
    candidates = [p for p in d.iterdir() if _STEP.match(p.name) or _EPOCH.match(p.name)]
    candidates.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for p in candidates:
        try:
            state = load(p)
        except Exception:  # truncated or corrupt: try the next newest
            continue
        if isinstance(state, dict) and "model" in state and "step" in state \
                and state.get("optimizer") is not None:  # retain() stripped older ones
            return p, state
    return None


def prune_step_checkpoints(ckpt_dir: Path, keep_last_k: int) -> None:
    """Remove all but the newest ``keep_last_k`` ``checkpoint-<step>.pt`` files."""
    d = Path(ckpt_dir)
    steps = sorted((int(m.group(1)), p) for p in d.iterdir() if (m := _STEP.match(p.name)))
    for _, p in steps[:-keep_last_k] if keep_last_k > 0 else steps:
        p.unlink(missing_ok=True)


def _strip_optimizer(path: Path) -> None:
    """Rewrite ``path`` without its optimizer state, keeping its modification time (the
    newest-first order resuming relies on)."""
    st = path.stat()
    state = load(path)
    if state.get("optimizer") is None:
        return
    state["optimizer"] = None
    atomic_save(state, path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def retain(ckpt_dir: Path, keep_last_k: int, keep_optimizer_k: int) -> None:
    """Bound a run's disk use: the newest ``keep_last_k`` step checkpoints stay (every epoch
    checkpoint stays); only the newest ``keep_optimizer_k`` checkpoints keep the optimizer state,
    which resuming needs and decoding does not."""
    d = Path(ckpt_dir)
    prune_step_checkpoints(d, keep_last_k)
    found = [p for p in d.iterdir() if _STEP.match(p.name) or _EPOCH.match(p.name)]
    found.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for p in found[keep_optimizer_k:]:
        try:
            _strip_optimizer(p)
        except Exception:  # unreadable: resuming skips it anyway
            continue


def disk_use(path: Path) -> int:
    """Bytes of every file under ``path`` (0 if it does not exist)."""
    p = Path(path)
    if not p.is_dir():
        return p.stat().st_size if p.is_file() else 0
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
