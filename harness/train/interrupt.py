"""SIGINT and SIGTERM: stop at a step boundary with a checkpoint, or at once on a second signal.

While :func:`handling` is active the first signal only sets a flag when the
trainer has said it can stop cleanly (:func:`deferred`, around its epochs): the
trainer finishes the current optimizer step, writes a checkpoint and raises
:class:`Interrupted`. Anywhere else (data preparation, decoding) the first
signal raises :class:`Interrupted` at once, as does a second signal. The cell
is then recorded ``interrupted`` with its step and ``harness run`` exits
128 + the signal's number (130 for SIGINT, 143 for SIGTERM, as Slurm expects).
"""
from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A stop asked for by a signal; a BaseException so no ``except Exception`` swallows it."""

    def __init__(self, signum: int, step: Optional[int] = None, checkpoint: Optional[str] = None,
                 at_once: bool = False):
        self.signum, self.step, self.checkpoint, self.at_once = signum, step, checkpoint, at_once
        super().__init__(self.describe())

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        return 128 + self.signum

    def describe(self) -> str:
        where = f" at step {self.step}" if self.step is not None else ""
        saved = f", {self.checkpoint} written" if self.checkpoint else ""
        how = " (second signal: stopped at once)" if self.at_once else ""
        return f"interrupted by {signal.Signals(self.signum).name}{where}{saved}{how}"


class _State:
    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self.deferring = 0
        self.active = False


_state = _State()


def requested() -> Optional[int]:
    """The signal received while stopping was deferred (None if none)."""
    return _state.signum


def _handler(signum: int, frame) -> None:
    if _state.signum is not None:
        raise Interrupted(signum, at_once=True)
    _state.signum = signum
    if not _state.deferring:
        raise Interrupted(signum)
    print(f"{signal.Signals(signum).name}: stopping after the current step with a checkpoint "
          f"(send it again to stop at once)", file=sys.stderr, flush=True)


def stop_once_on(sig: int, why: str) -> None:
    """Take ``sig`` as one SIGTERM, however often it comes (main thread only).

    A worker's parent-death signal (``prctl(PR_SET_PDEATHSIG)``) is sent by the kernel each
    time the worker is handed to another parent: once for every thread of the dying runner
    that exits, so several in a row. As SIGTERM the second would stop the worker at once,
    without its checkpoint; this way the first asks for a stop at the next step (or ends the
    process when no :func:`handling` is active) and the others are ignored.
    """
    def on_signal(signum: int, frame) -> None:
        if _state.signum is not None or getattr(on_signal, "seen", False):
            return
        on_signal.seen = True  # type: ignore[attr-defined]
        try:
            print(why, file=sys.stderr, flush=True)
        except OSError:  # (the dead runner's terminal or pipe)
            pass
        if not _state.active:
            raise SystemExit(128 + signal.SIGTERM)
        _handler(signal.SIGTERM, frame)

    signal.signal(sig, on_signal)


@contextmanager
def handling() -> Iterator[None]:
    """Install the handlers (main thread only; elsewhere, and when nested, a no-op)."""
    if _state.active or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    _state.active, _state.signum = True, None
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _state.active, _state.signum, _state.deferring = False, None, 0


@contextmanager
def deferred() -> Iterator[None]:
    """A region that polls :func:`requested` and stops cleanly by itself; a signal it did not
    act on raises :class:`Interrupted` when it ends."""
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1
    if _state.signum is not None and not _state.deferring:
        raise Interrupted(_state.signum)
