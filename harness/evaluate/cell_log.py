"""A cell's log: a file per stage and rank in its run directory, and stderr on rank 0."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from harness.config import Cell


class _LogFile(logging.FileHandler):
    """A cell's log file. A write it cannot make (a full disk) is said once on stderr and the
    file is left alone from then on, instead of logging's traceback for every message."""

    failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        if self.failed:
            return
        self.failed = True
        print(f"log {self.baseFilename}: not written from here on ({sys.exc_info()[1]})", file=sys.stderr)

    def close(self) -> None:
        try:
            super().close()
        except OSError:  # what a full disk did not take
            pass


def cell_logger(run_dir: Path, cell: Cell, rank: int, stem: str = "train") -> logging.Logger:
    """The cell's log: ``<run dir>/log/<stem>-rank<rank>.log``, and stderr on rank 0."""
    log = logging.getLogger(f"harness.cell.{cell.cell_id}.{stem}.{rank}")
    log.setLevel(logging.INFO)
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    fmt = logging.Formatter(f"%(asctime)s [{cell.name} {cell.cell_id} r{rank}] %(levelname)s %(message)s")
    (run_dir / "log").mkdir(parents=True, exist_ok=True)
    fh = _LogFile(run_dir / "log" / f"{stem}-rank{rank}.log")
    fh.setFormatter(fmt)
    log.addHandler(fh)
    if rank == 0:
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(fmt)
        log.addHandler(sh)
    return log
