"""What the grid commands share: loading a grid with one-line errors."""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from .cells import Cell, expand
from .errors import GridError
from .loader import Grid, load_grid


def add_grid_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("grid", help="grid file, e.g. experiments/default.yaml")
    p.add_argument("--store", help="results store (default: the grid's, else runs/results.sqlite)")
    p.add_argument("--cells", nargs="*", metavar="ID_OR_NAME",
                   help="only these cells (ids, id prefixes or names)")


def load_or_report(args: argparse.Namespace) -> Optional[tuple[Grid, list[Cell]]]:
    """Load the grid; on a malformed file print its one-line error and return None."""
    try:
        grid = load_grid(args.grid)
        cells = expand(grid)
    except GridError as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    wanted = getattr(args, "cells", None)
    if wanted:
        cells = [c for c in cells if any(c.cell_id.startswith(w) or c.name == w for w in wanted)]
        if not cells:
            print(f"error: {args.grid}: --cells: no cell matches {' '.join(wanted)}", file=sys.stderr)
            return None
    return grid, cells


def store_path(args: argparse.Namespace, grid: Grid):
    from pathlib import Path

    return Path(args.store) if getattr(args, "store", None) else grid.store_path
