"""`harness run GRID`: train, decode and record every cell that is not done yet.

Cells that are done (or diverged, unless ``--retry-diverged``) are skipped;
interrupted ones resume from their newest valid checkpoint; a failing cell is
recorded with its error and the grid goes on. Under ``torchrun`` every rank
runs this command; rank 0 decides what to run and writes the store.
"""
from __future__ import annotations

import argparse
import json
import sys

from .common import add_grid_argument, load_or_report, open_store, positive_int, store_path, user_error

SKIP = {"done"}


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
    p.add_argument("--retry-diverged", action="store_true", help="also rerun cells that diverged")
    p.add_argument("--run-root", help="run directories (default: the grid's, else runs/<grid name>)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.train import distributed

    loaded = load_or_report(args)
    if loaded is None:
        return 2
    grid, cells = loaded
    try:
        params = json.loads(args.slurm)
    except json.JSONDecodeError as e:
        return user_error(f"--slurm: not valid JSON: {e}")
    dist = distributed.from_env()
    spath = store_path(args, grid)
    run_root = Path(args.run_root) if args.run_root else grid.run_root
    todo = cells
    if dist.enabled:
        if args.executor != "local" or args.workers > 1:
            return user_error("under torchrun use the local executor with one worker")
        from harness.train.precision import select_device

        distributed.init(dist, select_device(cells[0].config.train.device, dist.local_rank).type)
    if dist.is_main:
        from harness.grid.cells import adopt_legacy_cells

        store = open_store(spath)
        for note in adopt_legacy_cells(cells, store, run_root):
            print(note, file=sys.stderr)
        skip = SKIP | ({"diverged"} if not args.retry_diverged else set())
        todo = []
        for c in cells:
            row = store.cell(c.cell_id)
            if row is None:
                store.set_cell(c.cell_id, grid=grid.name, name=c.name, variant=c.variant,
                               objective=c.objective, config=c.resolved(), status="pending",
                               run_dir=str(run_root / c.cell_id))
            elif row["status"] in skip:
                print(f"skip {c.cell_id} {c.name}: {row['status']}", file=sys.stderr)
                continue
            else:
                store.set_cell(c.cell_id, grid=grid.name, name=c.name)
            todo.append(c)
    ids = distributed.broadcast_object([c.cell_id for c in todo], dist)
    todo = [c for c in cells if c.cell_id in ids]
    if dist.is_main:
        print(f"grid {grid.name}: {len(cells)} cell(s), {len(todo)} to run, store {spath}", file=sys.stderr)

    def report(cell, status: str) -> None:
        if dist.is_main:
            print(f"cell {cell.cell_id} {cell.name}: {status}", file=sys.stderr)

    from harness.grid.executors import make_executor

    executor = make_executor(args.executor, workers=args.workers, array=args.array, parameters=params)
    results = executor.run(todo, spath, run_root, report)
    distributed.shutdown(dist)
    if dist.is_main:
        bad = {k: v for k, v in results.items() if v not in ("done", "busy")}
        print(f"grid {grid.name}: {sum(v == 'done' for v in results.values())} done, "
              f"{len(bad)} not done this run" + (f" ({', '.join(sorted(set(bad.values())))})" if bad else ""),
              file=sys.stderr)
    return 0
