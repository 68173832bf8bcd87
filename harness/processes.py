"""Child processes that cannot outlive their parent.

On Linux a child asks the kernel (``prctl(PR_SET_PDEATHSIG)``) for a signal
when the thread that started it dies, so a worker pool or a cell's worker
process never lingers after its ``harness`` parent was killed, even by SIGKILL.
The kernel sends it again each time the child is handed on to another thread of
the dying parent, so a child that handles the signal (a cell's worker, which
checkpoints) must take it once (:func:`harness.train.interrupt.stop_once_on`).
Elsewhere this is a no-op (the pools' own shutdown still applies).
"""
from __future__ import annotations

import functools
import os
import signal
import sys
from typing import Callable, Optional

_PR_SET_PDEATHSIG = 1


def _prctl() -> Optional[Callable[..., int]]:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent(sig: int = signal.SIGKILL, parent_pid: Optional[int] = None,
                    prctl: Optional[Callable[..., int]] = None) -> None:
    """In a child: receive ``sig`` when the parent dies (at once if ``parent_pid``, the
    parent it was started by, has already gone)."""
    prctl = prctl or _prctl()
    if prctl is None:
        return
    prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:  # died before prctl took effect
        os.kill(os.getpid(), sig)


def child_of_this_process(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn`` / pool initializer that ties the child to this process with ``sig``
    (everything it needs is looked up here, in the parent: nothing is imported after fork)."""
    return functools.partial(die_with_parent, sig, os.getpid(), _prctl())
