"""What the commands share: one error style, grid loading, variant names and ``--set``.

A user's mistake (a bad grid key, an unknown variant, a missing corpus) is one
line on stderr, ``error: ...``, and exit status 2; never a traceback."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from harness.config import Cell
from harness.grid.cells import expand
from harness.grid.errors import GridError
from harness.grid.loader import Grid, load_grid
from harness.grid.validate import check_grid


class UserError(Exception):
    """A user's mistake found inside a command: the one way a command reports one.
    ``harness.cli`` prints ``error: <line>`` for each line of the message and exits with
    ``status``: 2 for a user's mistake, 1 for a failure that is not the user's."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


def print_error(message: str) -> None:
    """``error: message`` on stderr, one such line per line of ``message`` (``harness.cli``'s)."""
    for line in str(message).splitlines() or [""]:
        print(f"error: {line}", file=sys.stderr)


def file_error(path: object, error: object, status: int = 2) -> UserError:
    """The :class:`UserError` for a problem with the file ``path``: the message names it once."""
    msg = str(error)
    return UserError(msg if msg.startswith(str(path)) else f"{path}: {msg}", status)


def out_path_problem(path: str | Path, folder: bool, option: str = "--out") -> str | None:
    """Why ``path`` cannot be written (None if it can, as far as a check before any work can
    tell): a folder on its way is an existing file, or ``path`` is a folder where a file is
    to be written (``folder=False``) or a file where a folder is (``folder=True``)."""
    path = Path(path)
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return (f"{option} {path}: {parent} is a file, not a folder; allowed: a path whose folders "
                    f"are folders or do not exist yet")
    if folder and path.exists() and not path.is_dir():
        return f"{option} {path}: is a file, not a folder; allowed: a folder, or a path that does not exist yet"
    if not folder and path.is_dir():
        return f"{option} {path}: is a folder; allowed: a file path, e.g. {path / 'model.pt'}"
    return None


def _number(kind: type, low: float, inclusive: bool) -> Any:
    """An argparse ``type`` for numbers above ``low``: a bad value is argparse's one-line error."""
    word = f">= {low:g}" if inclusive else f"> {low:g}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'} "
                                             f"{word}, got {text!r}") from None
        if not (value >= low if inclusive else value > low):
            raise argparse.ArgumentTypeError(f"must be {word}, got {text!r}")
        return value

    parse.__name__ = f"{kind.__name__} {word}"
    return parse


#: argparse types: integers >= 1, integers >= 0, numbers > 0
positive_int = _number(int, 1, True)
count = _number(int, 0, True)
positive_float = _number(float, 0, False)


def add_grid_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("grid", help="grid file, e.g. experiments/default.yaml")
    add_grid_options(p)


def add_grid_options(p: argparse.ArgumentParser) -> None:
    """``--store``, ``--cells`` and ``--set`` of the commands that read a grid."""
    p.add_argument("--store", help="results store (default: the grid's store:, else $HARNESS_STORE, "
                                   "else results.sqlite in the run root, runs/<grid name>/)")
    p.add_argument("--cells", nargs="*", metavar="ID_OR_NAME",
                   help="only these cells (ids, id prefixes or names)")
    p.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", dest="overrides",
                   help="change a key of every cell, e.g. train.max_steps=40 or "
                        "overrides.norm=layer_norm (repeatable; validated like the grid file; "
                        "give the same --set to status/decode to find those cells)")


def load_grid_cells(args: argparse.Namespace, check: bool = True, disk: bool = True,
                    missing_data_hint: str = "") -> tuple[Grid, list[Cell]]:
    """The grid (with any ``--set``) and its chosen cells (``--cells``); a mistake is a
    :class:`UserError` listing every problem (one line each). ``check``: every cell is
    checked completely (``harness.grid.validate``: decoding methods, data options and the
    prepared corpus, optimizer and loss options), as ``plan`` and ``run`` do before any
    training; without it only the schema is. ``disk``: also the source folders and prepared
    corpora here; ``missing_data_hint`` ends the line of a corpus that is not here
    (``data.src_dir``)."""
    try:
        overrides = parse_overrides(getattr(args, "overrides", None))
    except ValueError as e:
        raise UserError(f"{args.grid}: {e}") from None
    try:
        grid = load_grid(args.grid)
        cells = check_grid(grid, disk, overrides) if check else expand(grid, overrides)
    except GridError as e:
        raise UserError("\n".join(line + missing_data_hint if "data.src_dir: " in line else line
                                  for line in e.lines())) from None
    wanted = getattr(args, "cells", None)
    if wanted:
        cells = [c for c in cells if any(c.cell_id.startswith(w) or c.name == w for w in wanted)]
        if not cells:
            raise UserError(f"{args.grid}: --cells: no cell matches {' '.join(wanted)}")
    return grid, cells


def store_path(args: argparse.Namespace, grid: Grid) -> Path:
    """``--store``, else the grid's (:attr:`Grid.store_path`, in ``--run-root`` if given)."""
    if getattr(args, "store", None):
        return Path(args.store)
    run_root = getattr(args, "run_root", None)
    return grid.store_in(Path(run_root)) if run_root else grid.store_path


#: where grids without ``store:`` kept their results before each grid had its own store
LEGACY_STORE = Path("runs/results.sqlite")


def legacy_store_hint(args: argparse.Namespace, grid: Grid, path: Path) -> str | None:
    """If ``path`` (the default store of a grid without ``store:``) does not exist but the old
    shared default ``runs/results.sqlite`` holds cells of this grid: what to pass to keep them."""
    if getattr(args, "store", None) or grid.spec.store or path.exists() or path == LEGACY_STORE \
            or not LEGACY_STORE.is_file():
        return None
    from harness.store import ResultsStore
    from harness.store.results_store import StoreError

    try:
        n = len(ResultsStore(LEGACY_STORE, readonly=True).rows("cells", grid=grid.name))
    except StoreError:  # an unreadable old store: no hint
        return None
    if not n:
        return None
    return (f"{path}: no results store yet, but {LEGACY_STORE} (the shared default before each grid got "
            f"its own store) holds {n} cell(s) of grid {grid.name!r}; pass --store {LEGACY_STORE} (or "
            f"add `store: {LEGACY_STORE}` to the grid) to keep using it, or move it to {path}")


def open_store(path: str | Path | None) -> Any:
    """The results store at ``path`` (None: the default); a file that is not one (or is
    empty, locked, read-only) is a :class:`UserError` naming it (the store's own
    :class:`StoreError` message)."""
    from harness.store import ResultsStore
    from harness.store.results_store import StoreError

    try:
        return ResultsStore(path)
    except StoreError as e:
        raise UserError(str(e)) from None


def existing_store(args: argparse.Namespace, grid: Grid) -> tuple[Path, Any]:
    """The grid's results store path and the store opened read-only (None if there is none
    and no cell has run yet: reading commands never create or change a store).

    Raises :class:`UserError` (one line naming the file) if the store is empty, corrupt or
    locked, or missing although cells of the grid have run.
    """
    from harness.store import ResultsStore
    from harness.store.results_store import StoreError

    path = store_path(args, grid)
    hint = legacy_store_hint(args, grid, path)
    if hint:
        raise UserError(hint)
    if not path.exists():
        ran = [p for p in (Path(grid.run_root).iterdir() if Path(grid.run_root).is_dir() else [])
               if (p / "config.yaml").exists()]
        if ran:
            raise UserError(f"{path}: no results store, although {len(ran)} cell(s) of this grid ran in "
                            f"{grid.run_root}; it was moved or deleted: restore it, or pass --store")
        return path, None
    try:
        return path, ResultsStore(path, readonly=True)
    except StoreError as e:
        raise UserError(str(e)) from None


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` pairs, values parsed as YAML (``encoder.num_encoder_layers=[1,1]``)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ValueError(f"--set {key.strip()}: value is not valid YAML: "
                             f"{getattr(e, 'problem', None) or e}") from None
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
                f"unknown variant {n!r}; allowed: {', '.join(list_variants())}")
        out += [m for m in matched if m not in out]
    return out
