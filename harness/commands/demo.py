"""`harness demo`: the main job on the built-in data.

1. prepare the synthetic corpus the default grid names (skipped when it is there),
2. ``harness run experiments/default.yaml`` (every cell trained, decoded, recorded),
3. ``harness compare`` (each row vs the baseline row: WER and difference with 95 % CIs,
   verdicts), ``harness profile``, ``harness bench`` and ``harness report`` (with the
   verdicts and forest plots) on the same store.

A stage whose module is not installed yet is skipped with a message; a stage
that fails is reported and the demo goes on to the next one.
"""
from __future__ import annotations

import argparse
import importlib
import os
import time
from pathlib import Path
from typing import Callable

from .common import positive_int

REPO = Path(__file__).resolve().parents[2]
DEFAULT_GRID = "experiments/default.yaml"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grid", default=DEFAULT_GRID, help="grid to run (default: %(default)s)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="cells trained at once (default: one per GPU, else one per CPU core)")
    p.add_argument("--store", default=None, help="results store (default: the grid's)")
    p.add_argument("--out", default="reports/demo",
                   help="report folder (default: %(default)s; reports/ keeps the full profile of every variant)")
    p.add_argument("--skip", nargs="*", default=[], choices=["compare", "profile", "bench", "report"],
                   help="stages to leave out")


def _grid_path(name: str) -> Path:
    p = Path(name)
    if not p.exists() and (REPO / name).exists():
        return REPO / name
    return p


def default_workers() -> int:
    """One worker per GPU; on CPU one single-threaded worker per core."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return max(1, os.cpu_count() or 1)


def _stage(name: str, fn: Callable[[], int], results: dict[str, str]) -> int:
    """Run one stage; its exit status (1 when it raised), recorded in ``results``."""
    t0 = time.time()
    rc = 1
    print(f"\n=== {name} ===", flush=True)
    try:
        rc = fn()
        results[name] = "ok" if rc == 0 else f"exit {rc}"
    except ModuleNotFoundError as e:
        results[name] = f"skipped ({e.name} is not available yet)"
    except Exception as e:  # report and go on: the later stages still have something to show
        results[name] = f"failed: {type(e).__name__}: {e}"
    print(f"=== {name}: {results[name]} ({time.time() - t0:.0f} s) ===", flush=True)
    return rc


def _command(module: str, argv: list[str]) -> int:
    """Run another harness command's ``run(args)`` with its own parser's defaults."""
    mod = importlib.import_module(module)
    parser = argparse.ArgumentParser(prog=module)
    mod.add_arguments(parser)
    return int(mod.run(parser.parse_args(argv)) or 0)


def run(args: argparse.Namespace) -> int:
    from harness.grid.errors import GridError
    from harness.grid.loader import load_grid
    from harness.grid.validate import check_grid

    from .common import UserError, store_path

    started = time.time()
    grid_file = _grid_path(args.grid)
    try:
        grid = load_grid(grid_file)
        cells = check_grid(grid)
    except GridError as e:
        raise UserError("\n".join(e.lines()))
    store = str(store_path(args, grid))
    results: dict[str, str] = {}

    def prepare() -> int:
        from harness.evaluate.data_setup import ensure_prepared

        seen = set()
        for c in cells:
            d = c.config.data
            if d.dir not in seen:
                seen.add(d.dir)
                prepared = ensure_prepared(d)
                print(f"corpus {d.corpus} ready in {prepared.out_dir}: splits {', '.join(prepared.splits)}")
        return 0

    _stage("data", prepare, results)
    workers = args.workers or default_workers()
    rc = _stage("run", lambda: _command("harness.commands.run",
                                        [str(grid_file), "--store", store, "--workers", str(workers)]), results)
    if rc in (130, 143):  # stopped by SIGINT/SIGTERM: the later stages would only report a half-run grid
        print(f"demo stopped: the run stage was interrupted (exit {rc}); rerun `harness demo` to resume")
        return rc
    variants = sorted({c.variant for c in cells})
    if "compare" not in args.skip:
        _stage("compare", lambda: _command("harness.commands.compare", [str(grid_file), "--store", store]),
               results)
    if "profile" not in args.skip:
        # the grid's variants only: all 18 registered variants took ~8 CPU-min here, the two of
        # the default grid 50 CPU-s (bench: S/M/L of both encoders by default)
        _stage("profile", lambda: _command("harness.commands.profile",
                                           [*variants, "--store", store, "--out", args.out]), results)
    if "bench" not in args.skip:
        _stage("bench", lambda: _command("harness.commands.bench", [*variants, "--store", store]),
               results)
    if "report" not in args.skip:
        _stage("report", lambda: _command("harness.commands.report", ["--store", store, "--out", args.out,
                                                                       "--compare", str(grid_file)]),
               results)
    _stage("status", lambda: _command("harness.commands.status", [str(grid_file), "--store", store,
                                                                        "--profile"]), results)
    print(f"\ndemo finished in {(time.time() - started) / 60:.1f} min (grid {grid.name}, "
          f"{len(cells)} cells, variants {', '.join(variants)}):")
    for k, v in results.items():
        print(f"  {k:<8} {v}")
    return 0 if all(v == "ok" or v.startswith("skipped") for v in results.values()) else 1
