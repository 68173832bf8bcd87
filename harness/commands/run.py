"""`harness run GRID`: train, decode and record every cell that is not done yet.

Cells that are done are skipped, and so are failed and diverged ones unless
``--retry-failed`` / ``--retry-diverged``; interrupted ones resume from their
newest readable checkpoint; a failing cell is recorded with its error and the
grid goes on. Each runner reads a cell's state again once it holds the cell's
lock, so two runners on one grid never redo each other's cells. Under
``torchrun`` every rank runs this command; rank 0 decides what to run and
writes the store.

Exit status: 0 every selected cell is done; 1 some failed, diverged or were
interrupted (the summary line names them); 2 bad input (grid, store,
run_root); 130 / 143 stopped by SIGINT / SIGTERM, with a checkpoint at the
step it stopped (one line says which).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .common import UserError, add_grid_argument, legacy_store_hint, load_grid_cells, positive_int, store_path

#: exit status when some cell failed, diverged or was interrupted
SOME_FAILED = 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_grid_argument(p)
    p.add_argument("--executor", default="local",
                   choices=["local", "submitit-local", "slurm", "submitit-debug"],
                   help="local: in this process (or --workers subprocesses, one GPU each); "
                        "submitit-local / slurm: one submitit job per cell")
    p.add_argument("--workers", type=positive_int, default=1, help="local executor: cells in parallel, one GPU each")
    p.add_argument("--array", action="store_true", help="submitit: one job array instead of one job per cell")
    p.add_argument("--slurm", default="{}", metavar="JSON",
                   help='submitit parameters, e.g. \'{"slurm_partition": "gpu", "gpus_per_node": 4}\'')
    p.add_argument("--retry-failed", action="store_true", help="also rerun cells that failed")
    p.add_argument("--retry-diverged", action="store_true", help="also rerun cells that diverged")
    p.add_argument("--start-over-if-unreadable", action="store_true",
                   help="a cell whose checkpoints all fail to load trains again from step 0 "
                        "(they are kept as *.unreadable) instead of failing")
    p.add_argument("--run-root", help="run directories (default: the grid's, else runs/<grid name>)")


def writable_run_root(run_root: Path) -> str | None:
    """Why ``run_root`` cannot hold run directories (None if it can)."""
    try:
        run_root.mkdir(parents=True, exist_ok=True)
        probe = run_root / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        return f"run_root {run_root}: not writable ({e.strerror or e}); pass --run-root with a writable folder"
    return None


def executor_problem(executor: str) -> str | None:
    """Why ``executor`` cannot run on this machine (None if it can): submitit must be
    installed, and Slurm's ``sbatch`` (which submits) and ``srun`` (which starts each task) on
    PATH for ``slurm``."""
    import importlib.util
    import shutil

    if executor == "local":
        return None
    if importlib.util.find_spec("submitit") is None:
        return f"--executor {executor}: needs the submitit package (pip install submitit); allowed here: local"
    if executor == "slurm":
        missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
        if missing:
            return (f"--executor slurm: no {' or '.join(missing)} on this machine's PATH (Slurm is not "
                    f"installed here); allowed here: local, submitit-local (run it on a Slurm login node)")
    return None


def run(args: argparse.Namespace) -> int:
    from harness.store import ResultsStore
    from harness.store.results_store import StoreError
    from harness.train import distributed, interrupt
    from harness.train.cell_runner import RunOptions

    grid, cells = load_grid_cells(args)
    try:
        params = json.loads(args.slurm)
    except json.JSONDecodeError as e:
        raise UserError(f"--slurm: not valid JSON: {e}")
    problem = executor_problem(args.executor)
    if problem:
        raise UserError(problem)
    from harness.grid.validate import averaging_notes, device_errors

    if args.executor != "slurm":  # a Slurm job's machine is not this one
        errors = device_errors(grid, cells)
        if errors:
            raise UserError("\n".join(str(e) for e in errors))
    dist = distributed.from_env()
    for note in averaging_notes(cells) if dist.is_main else []:
        print(f"note: {note}", file=sys.stderr)
    spath = store_path(args, grid)
    hint = legacy_store_hint(args, grid, spath)
    if hint:
        raise UserError(hint)
    run_root = Path(args.run_root) if args.run_root else grid.run_root
    options = RunOptions(retry_failed=args.retry_failed, retry_diverged=args.retry_diverged,
                         start_over_if_unreadable=args.start_over_if_unreadable)
    todo = cells
    if dist.enabled:
        if args.executor != "local" or args.workers > 1:
            raise UserError("under torchrun use the local executor with one worker")
        from harness.devices import select_device

        distributed.init(dist, select_device(cells[0].config.train.device, dist.local_rank).type)
    settled: dict[str, str] = {}
    if dist.is_main:
        problem = writable_run_root(run_root)
        if problem:
            raise UserError(problem)
        from harness.store.journal import replay_cells

        try:
            store = ResultsStore(spath)
            # results an earlier run kept in a cell's journal because the store refused them
            replay_cells(store, [run_root / c.cell_id for c in cells], lambda m: print(m, file=sys.stderr))
            todo = _todo(grid, cells, store, run_root, options, settled)
        except StoreError as e:
            raise UserError(str(e))
    ids = distributed.broadcast_object([c.cell_id for c in todo], dist)
    todo = [c for c in cells if c.cell_id in ids]
    if dist.is_main:
        print(f"grid {grid.name}: {len(cells)} cell(s), {len(todo)} to run, store {spath}", file=sys.stderr)
    results: dict[str, str] = dict(settled)

    def report(cell, status: str) -> None:
        results[cell.cell_id] = status
        if dist.is_main:
            print(f"cell {cell.cell_id} {cell.name}: {status}", file=sys.stderr)

    from harness.grid.executors import make_executor

    executor = make_executor(args.executor, workers=args.workers, array=args.array, parameters=params,
                             options=options)
    try:
        with interrupt.handling():
            executor.run(todo, spath, run_root, report)
    except interrupt.Interrupted as e:
        distributed.shutdown(dist)
        if dist.is_main:
            # workers report their cells interrupted; in this process the cell raised instead
            left = [c for c in cells if results.get(c.cell_id) in (None, "interrupted")]
            print(f"grid {grid.name}: {e.describe()}; {len(left)} cell(s) not finished; "
                  f"rerun `{resume_command(args)}` to resume", file=sys.stderr)
        return e.exit_status
    distributed.shutdown(dist)
    if not dist.is_main:
        return 0
    return _summary(grid.name, cells, results, resume_command(args))


def resume_command(args: argparse.Namespace) -> str:
    """The `harness run` command line that goes on where this one stopped: the same grid, store,
    run root, cells, --set and runner options."""
    import shlex

    words = ["harness", "run", args.grid]
    if getattr(args, "store", None):
        words += ["--store", args.store]
    if args.run_root:
        words += ["--run-root", args.run_root]
    if getattr(args, "cells", None):
        words += ["--cells", *args.cells]
    for o in getattr(args, "overrides", None) or []:
        words += ["--set", o]
    if args.executor != "local":
        words += ["--executor", args.executor]
    if args.workers > 1:
        words += ["--workers", str(args.workers)]
    if args.array:
        words.append("--array")
    if args.slurm.strip() not in ("", "{}"):
        words += ["--slurm", args.slurm]
    for flag in ("retry_failed", "retry_diverged", "start_over_if_unreadable"):
        if getattr(args, flag):
            words.append("--" + flag.replace("_", "-"))
    return shlex.join(words)


def _todo(grid, cells, store, run_root: Path, options, settled: dict[str, str]) -> list:
    """The cells to run; the others' statuses go into ``settled``."""
    todo = []
    for c in cells:
        row = store.cell(c.cell_id)
        if row is None:
            store.set_cell(c.cell_id, grid=grid.name, name=c.name, variant=c.variant,
                           objective=c.objective, config=c.resolved(), status="pending",
                           run_dir=str(run_root / c.cell_id))
        elif options.leaves_alone(row["status"]):
            why = "" if row["status"] == "done" else (
                f" (--retry-{row['status']} reruns it)" + (f": {row['error']}" if row.get("error") else ""))
            print(f"skip {c.cell_id} {c.name}: {row['status']}{why}", file=sys.stderr)
            settled[c.cell_id] = row["status"]
            continue
        else:
            store.set_cell(c.cell_id, grid=grid.name, name=c.name)
        todo.append(c)
    return todo


def _summary(grid_name: str, cells, results: dict[str, str], resume: str = "") -> int:
    """The one summary line; the exit status (0 all done or running elsewhere, else 1)."""
    names = {c.cell_id: c.name for c in cells}
    done = [k for k, v in results.items() if v == "done"]
    busy = [k for k, v in results.items() if v == "busy"]
    bad = {k: v for k, v in results.items() if v not in ("done", "busy")}
    parts = [f"{len(done)} done"]
    if busy:
        parts.append(f"{len(busy)} busy in another runner")
    by_status: dict[str, list[str]] = {}
    for k, v in bad.items():
        by_status.setdefault(v.split()[0], []).append(f"{k} {names.get(k, '')}".strip())
    parts += [f"{len(v)} {s}: {', '.join(v)}" for s, v in sorted(by_status.items())]
    if "interrupted" in by_status and resume:  # (a full disk, say): they resume from a checkpoint
        parts.append(f"rerun `{resume}` to resume")
    print(f"grid {grid_name}: " + "; ".join(parts), file=sys.stderr)
    return SOME_FAILED if bad else 0
