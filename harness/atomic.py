"""Write-then-rename: a reader never sees a half-written file or folder.

Every output of the harness (prepared corpora, checkpoints, tables, figures,
profiles) is written under a hidden temporary name beside its final name and
renamed into place, so a process killed mid-write leaves either the old output
or nothing, never a truncated one.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def tmp_sibling(path: Path) -> Path:
    """A hidden temporary name beside ``path`` (same filesystem, so rename is atomic)."""
    return path.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name}")


def remove(path: Path) -> None:
    """Delete a file or folder if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path; on success it is renamed to ``path``, on error removed.

    Works for files and folders; an existing ``path`` is replaced. ``durable``:
    also flush the folder's entry to disk after the rename (for checkpoints).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(final)
    remove(tmp)
    try:
        yield tmp
        if final.is_dir() and not final.is_symlink():
            remove(final)
        os.replace(tmp, final)
        if durable:
            _fsync_dir(final.parent)
    finally:
        remove(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; create the folder if needed."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented, key-sorted JSON, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _writer_alive(name: str) -> bool:
    """Whether the process that named a ``.tmp-<pid>-...`` file is alive on this machine
    (False for a name without a pid)."""
    pid = name[len(".tmp-"):].split("-", 1)[0]
    if not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True  # another thread of this process may be writing it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_tmp(folder: Path, recursive: bool = False) -> list[Path]:
    """Remove the ``.tmp-*`` leftovers of killed writers in ``folder`` (and below it when
    ``recursive``); those of a live process stay. Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = folder.rglob(".tmp-*") if recursive else folder.glob(".tmp-*")
    gone = []
    for p in sorted(found, key=lambda p: len(p.parts), reverse=True):  # (inside a stale folder first)
        if not _writer_alive(p.name) and (p.exists() or p.is_symlink()):
            remove(p)
            gone.append(p)
    return gone
