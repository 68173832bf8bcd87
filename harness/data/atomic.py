"""Write-then-rename helpers: a later step never reads a half-written output."""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def tmp_sibling(path: Path) -> Path:
    """A hidden temporary name beside ``path`` (same filesystem, so rename is atomic)."""
    return path.with_name(f".tmp-{os.getpid()}-{path.name}")


def remove(path: Path) -> None:
    """Delete a file or folder if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; on success it is renamed to ``path``, on error removed.

    Works for files and folders; an existing ``path`` is replaced.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(final)
    remove(tmp)
    try:
        yield tmp
        if final.exists():
            remove(final)
        os.replace(tmp, final)
    finally:
        remove(tmp)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented, key-sorted JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def clean_stale_tmp(folder: Path) -> None:
    """Remove ``.tmp-*`` leftovers of an interrupted run in ``folder``."""
    if folder.is_dir():
        for p in folder.glob(".tmp-*"):
            remove(p)
