"""Training progress: steps done of the budget, loss, speed and time left.

On a terminal (stderr is a TTY) a tqdm bar; otherwise the periodic log lines
carry the same facts. ``progress.json`` in the run directory, rewritten at
each log interval, lets ``harness status`` show the ETA of a running cell.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Optional

from harness.atomic import atomic_write_text

PROGRESS_FILE = "progress.json"


def budget_steps(max_steps: Optional[int], epochs: Optional[int], batches_per_epoch: float,
                 accum_grad: int) -> Optional[int]:
    """Optimizer steps the budget allows (the smaller of the step and epoch budgets)."""
    by_epochs = epochs * math.ceil(batches_per_epoch / accum_grad) if epochs else None
    given = [b for b in (max_steps, by_epochs) if b]
    return min(given) if given else None


def format_seconds(s: Optional[float]) -> str:
    if s is None or not math.isfinite(s):
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s"


class TrainProgress:
    """Progress of one training run from ``start_step`` towards ``total`` optimizer steps.

    ``exact``: ``total`` is the step budget itself (``train.max_steps`` without an epoch
    budget); otherwise it is an estimate from the training audio's duration, refined at
    each epoch end from the steps the epochs took, and never shown as 100 % while training
    goes on (past it, the total is unknown until the next epoch end). :meth:`finish` sets
    the total to the steps run. The speed and the ETA count the steps of this run only,
    from its first step on (a resumed run's start-up and sampler fast-forward excluded).
    """

    def __init__(self, run_dir: Path, total: Optional[int], start_step: int, enabled: bool = True,
                 tty: Optional[bool] = None, exact: bool = True):
        self.path = Path(run_dir) / PROGRESS_FILE
        self.total, self.start_step, self.enabled, self.exact = total, start_step, enabled, exact
        self.started = time.time()
        self.step, self.loss = start_step, float("nan")
        self.bar: Any = None
        self._want_bar = enabled and (sys.stderr.isatty() if tty is None else tty)
        self._clock: Optional[tuple[int, float]] = None  # (step, time) of this run's first step

    def rate(self) -> Optional[float]:
        """Optimizer steps per second in this run since its first step (None before the second)."""
        if self._clock is None:
            return None
        done, elapsed = self.step - self._clock[0], time.time() - self._clock[1]
        return done / elapsed if done > 0 and elapsed > 0 else None

    def eta(self) -> Optional[float]:
        """Seconds left at the current speed (None without a total or a measured speed)."""
        rate = self.rate()
        if not self.total or not rate:
            return None
        return max(self.total - self.step, 0) / rate

    def _set_total(self, total: Optional[int]) -> None:
        self.total = total
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def update(self, step: int, loss: float) -> None:
        """One optimizer step done with this running loss."""
        if self._clock is None:
            self._clock = (step, time.time())
            if self._want_bar:
                from tqdm import tqdm

                # started at this run's first step, so tqdm's speed and ETA count this run only
                self.bar = tqdm(total=self.total, initial=self.step, unit="step", desc="train",
                                file=sys.stderr, dynamic_ncols=True)
        if self.total and step >= self.total and not self.exact:
            self._set_total(None)  # an estimate passed: unknown until the next epoch end
        if self.bar is not None:
            self.bar.update(step - self.step)
            if math.isfinite(loss):
                self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        self.step, self.loss = step, loss

    def epoch_done(self, epoch: int, step: int, epochs: Optional[int], max_steps: Optional[int]) -> None:
        """Epoch ``epoch`` (1-based) ended at ``step``: re-estimate an epoch budget's total from
        the steps per epoch so far (the smaller of it and ``max_steps``)."""
        if self.exact or not epochs or epoch <= 0:
            return
        total = max(step, round(step / epoch * epochs))
        if max_steps:
            total = min(total, max_steps)
        self._set_total(total if total > step or epoch >= epochs else None)

    def finish(self, step: int) -> None:
        """Training ended at ``step``: the total is the steps run."""
        self.step = step
        self._set_total(step)
        if self.bar is not None:
            self.bar.n = step
            self.bar.refresh()

    def describe(self) -> str:
        """``step 40/120 (33%), 1.52 steps/s, ETA 0m53s`` for the log lines."""
        rate = self.rate()
        if self.total:
            pct = 100 * self.step / self.total
            total = f"/{self.total} ({min(pct, 99) if self.step < self.total else pct:.0f}%)"
        else:
            total = ""
        return (f"step {self.step}{total}, " + (f"{rate:.2f} steps/s, " if rate else "")
                + f"ETA {format_seconds(self.eta())}")

    def write(self, epoch: float) -> None:
        """``progress.json``: what ``harness status`` shows for a running cell."""
        if not self.enabled:
            return
        atomic_write_text(self.path, json.dumps({
            "step": self.step, "total": self.total, "epoch": epoch,
            "loss": self.loss if math.isfinite(self.loss) else None,
            "steps_per_s": self.rate(), "eta_s": self.eta(), "updated_at": time.time()}))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def read_progress(run_dir: str | Path) -> Optional[dict[str, Any]]:
    """The run's last ``progress.json`` (None if it has none or it does not parse)."""
    try:
        return json.loads((Path(run_dir) / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None


def eta_now(progress: Optional[dict[str, Any]]) -> Optional[float]:
    """The ETA of ``progress`` less the time since it was written."""
    if not progress or progress.get("eta_s") is None:
        return None
    return max(0.0, progress["eta_s"] - (time.time() - progress.get("updated_at", time.time())))
