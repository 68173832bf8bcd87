"""Lock files that one process holds: a cell's ``.lock``, a data directory's lock.

A lock is an ``flock`` on a file that also names its holder (``pid@host``).
Children never keep a lock alive: every forked child (a DataLoader or
feature-extraction worker) closes the lock files it inherited at once, so a
worker that outlives its parent cannot hold a lock. A lock still held while
the pid it names is dead (an orphan from an older run inherited it) is taken
over with a message: the file is replaced by a new one.
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Optional, TextIO

#: lock files held by this process (closed in forked children)
_HELD: set[TextIO] = set()


def _close_inherited() -> None:
    for f in list(_HELD):
        try:
            os.close(f.fileno())  # the parent still holds the flock on its own descriptor
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_close_inherited)


def _holder(f: TextIO) -> str:
    try:
        f.seek(0)
        return f.read().strip()
    except OSError:
        return ""


def holder_is_dead(holder: str) -> bool:
    """Whether ``pid@host`` names a process of this host that no longer exists."""
    pid, _, host = holder.partition("@")
    if not pid.isdigit() or host != socket.gethostname():
        return False  # unknown, or another machine's: assume alive
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _same_file(f: TextIO, path: Path) -> bool:
    try:
        a, b = os.fstat(f.fileno()), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


class FileLock:
    """An exclusive lock on ``path``; ``acquire(wait=False)`` returns False if another holds it."""

    def __init__(self, path: Path, warn: Callable[[str], None] = lambda m: print(m, file=sys.stderr)):
        self.path = Path(path)
        self.warn = warn
        self._f: Optional[TextIO] = None

    @property
    def held(self) -> bool:
        return self._f is not None

    def holder(self) -> str:
        """``pid@host`` of the current holder ('' if none is recorded)."""
        try:
            return self.path.read_text().strip()
        except OSError:
            return ""

    def acquire(self, wait: bool = False, poll_s: float = 0.5) -> bool:
        waited = False
        while True:
            f = open(self.path, "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(f)
                if holder and holder_is_dead(holder) and _same_file(f, self.path):
                    self.warn(f"lock {self.path}: held although its holder {holder} is dead "
                              f"(an orphaned child process keeps it): taking it over")
                    self.path.unlink(missing_ok=True)
                    f.close()
                    continue
                f.close()
                if not wait:
                    return False
                if not waited:
                    self.warn(f"lock {self.path}: waiting for {holder or 'another process'}")
                    waited = True
                time.sleep(poll_s)
                continue
            if not _same_file(f, self.path):  # replaced by a takeover meanwhile
                f.close()
                continue
            try:  # unbuffered: a full disk fails here, not again when the file is closed
                os.ftruncate(f.fileno(), 0)
                os.pwrite(f.fileno(), f"{os.getpid()}@{socket.gethostname()}\n".encode(), 0)
            except OSError as e:  # a full disk: the flock holds all the same, its holder unnamed
                if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                    f.close()
                    raise
            self._f = f
            _HELD.add(f)
            return True

    def release(self) -> None:
        f, self._f = self._f, None
        if f is None:
            return
        _HELD.discard(f)
        try:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)
        finally:
            f.close()

    def __enter__(self) -> "FileLock":
        self.acquire(wait=True)
        return self

    def __exit__(self, *exc) -> None:
        self.release()
