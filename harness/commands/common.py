"""What the commands share: one error style, grid loading, variant names and ``--set``.

A user's mistake (a bad grid key, an unknown variant, a missing corpus) is one
line on stderr, ``error: ...``, and exit status 2; never a traceback."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

import yaml

from harness.config import Cell
from harness.grid.cells import expand
from harness.grid.errors import GridError
from harness.grid.loader import Grid, load_grid
from harness.grid.validate import check_grid


def user_error(message: str) -> int:
    """Print ``error: message`` on stderr (one such line per line of ``message``); the exit
    status for a user's mistake (2)."""
    for line in str(message).splitlines() or [""]:
        print(f"error: {line}", file=sys.stderr)
    return 2


def add_grid_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("grid", help="grid file, e.g. experiments/default.yaml")
    p.add_argument("--store", help="results store (default: the grid's, else runs/results.sqlite)")
    p.add_argument("--cells", nargs="*", metavar="ID_OR_NAME",
                   help="only these cells (ids, id prefixes or names)")


def load_or_report(args: argparse.Namespace, check: bool = True,
                   disk: bool = True) -> Optional[tuple[Grid, list[Cell]]]:
    """Load the grid; on a malformed file print every problem (one ``error:`` line each) and
    return None. ``check``: every cell is checked completely (``harness.grid.validate``:
    decoding methods, data options and the prepared corpus, optimizer and loss options), as
    ``plan`` and ``run`` do before any training; without it only the schema is. ``disk``:
    also the source folders and prepared corpora on this machine."""
    try:
        grid = load_grid(args.grid)
        cells = check_grid(grid, disk) if check else expand(grid)
    except GridError as e:
        user_error("\n".join(e.lines()))
        return None
    wanted = getattr(args, "cells", None)
    if wanted:
        cells = [c for c in cells if any(c.cell_id.startswith(w) or c.name == w for w in wanted)]
        if not cells:
            user_error(f"{args.grid}: --cells: no cell matches {' '.join(wanted)}")
            return None
    return grid, cells


def store_path(args: argparse.Namespace, grid: Grid) -> Path:
    return Path(args.store) if getattr(args, "store", None) else grid.store_path


def existing_store(args: argparse.Namespace, grid: Grid) -> tuple[Path, Any]:
    """The grid's results store path and the store opened if it exists (None if not:
    reading commands never create one)."""
    from harness.store import ResultsStore

    path = store_path(args, grid)
    return path, (ResultsStore(path) if path.exists() else None)


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` pairs, values parsed as YAML (``encoder.num_encoder_layers=[1,1]``)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def resolve_variants(names: list[str]) -> list[str]:
    """Names or patterns to registered names; an unknown one is an error naming it."""
    from variants import list_variants
    from variants.registry import UnknownVariantError

    if not names:  # every paper variant (the tiny test variants have no paper figures)
        return list_variants(include_tiny=False)
    out: list[str] = []
    for n in names:
        matched = list_variants(n)
        if not matched:
            raise UnknownVariantError(
                f"unknown variant {n!r}; registered variants: {', '.join(list_variants())}")
        out += [m for m in matched if m not in out]
    return out
