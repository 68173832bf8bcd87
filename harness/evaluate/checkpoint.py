"""Checkpoints: written atomically, found again after a crash.

``checkpoint-<step>.pt`` every N steps (the newest K kept) and
``epoch-<e>.pt`` at each epoch end, as in the authors' recipe; only the
newest few keep the optimizer state (:func:`retain`). A file is
written to a temporary name, flushed to disk and renamed, so a process killed
mid-write never leaves a truncated checkpoint under a real name; a file that
still fails to load is skipped when resuming, and said so by name. Free space
is checked before writing: a full disk is an error naming the folder and the
bytes needed, not torch's "unexpected pos".
"""
from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from harness.atomic import atomic_path
from variants.tensor_bytes import tensor_bytes

_STEP = re.compile(r"^checkpoint-(\d+)\.pt$")
_EPOCH = re.compile(r"^epoch-(\d+)\.pt$")


class UnreadableCheckpointsError(RuntimeError):
    """A run has checkpoints but none of them loads."""


class NoSpaceError(OSError):
    """Not enough free space for a checkpoint (ENOSPC; the message names the folder and bytes)."""

    def __init__(self, message: str):
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return str(self.strerror)


#: headroom over the tensors' bytes (pickled structure, optimizer scalars, the config)
SPACE_MARGIN = 1.05
SPACE_EXTRA = 1 << 20


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full_message(e: OSError, folder: Path) -> str:
    """One line for a full disk met while writing anything of a run (a log, progress, a decode):
    the folder, the file and the bytes free (a :class:`NoSpaceError` already has its line)."""
    if isinstance(e, NoSpaceError):
        return str(e)
    where = Path(e.filename).parent if getattr(e, "filename", None) else Path(folder)
    what = f" while writing {Path(e.filename).name}" if getattr(e, "filename", None) else ""
    try:
        free = f"{free_bytes(where)} bytes free"
    except OSError:
        free = "free space unknown"
    return f"no space left on {where}{what} ({free}); free some space there and rerun to resume"


def ensure_space(folder: Path, needed: int, what: str) -> None:
    """Raise :class:`NoSpaceError` naming ``folder`` unless it has ``needed`` bytes free."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    free = free_bytes(folder)
    if free < needed:
        raise NoSpaceError(f"no space left on {folder} for {what}: needs about {needed} bytes, "
                           f"{free} free")


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file beside ``path``, flushed to disk, then renamed.

    Raises :class:`NoSpaceError` naming the folder and the bytes needed when the free
    space is short (checked first) or the disk fills while writing.
    """
    path = Path(path)
    needed = int(tensor_bytes(obj) * SPACE_MARGIN) + SPACE_EXTRA
    ensure_space(path.parent, needed, path.name)
    try:
        with atomic_path(path, durable=True) as tmp:
            with open(tmp, "wb") as f:
                torch.save(obj, f)
                f.flush()
                os.fsync(f.fileno())
    except (OSError, RuntimeError) as e:
        # torch reports a short write (a disk that filled meanwhile) as "unexpected pos"
        full = (e.errno in (errno.ENOSPC, errno.EDQUOT) if isinstance(e, OSError)
                else "unexpected pos" in str(e) or "No space left" in str(e))
        if not full:
            raise
        raise NoSpaceError(f"no space left on {path.parent} while writing {path.name}: needs about "
                           f"{needed} bytes, {shutil.disk_usage(path.parent).free} free") from e


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


def _reason(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def latest_valid(ckpt_dir: Path, on_skip: Optional[Callable[[Path, str], None]] = None
                 ) -> Optional[tuple[Path, dict[str, Any]]]:
    """The newest checkpoint that loads (newest by write time); None if none.

    ``on_skip(path, reason)`` hears of each newer one that does not load.
    """
    d = Path(ckpt_dir)
    if not d.is_dir():
        return None
    candidates = [p for p in d.iterdir() if _STEP.match(p.name) or _EPOCH.match(p.name)]
    candidates.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for p in candidates:
        try:
            state = load(p)
        except Exception as e:  # truncated or corrupt: try the next newest
            if on_skip:
                on_skip(p, _reason(e))
            continue
        if not (isinstance(state, dict) and "model" in state and "step" in state):
            reason = "not a harness checkpoint (no model or step)"
        elif state.get("optimizer") is None:  # retain() stripped older ones
            reason = "weights only (its optimizer state was dropped by keep_optimizer_k); decodable, not resumable"
        else:
            return p, state
        if on_skip:
            on_skip(p, reason)
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
