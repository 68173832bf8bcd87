"""Expand a grid into cells: base and ablation rows x axes x seeds.

Each cell's config is fully resolved (every default filled in), its model spec is
resolved once here (``Cell.spec``, passed down to training, decoding and the checks),
and it gets a stable id (:func:`harness.config.cell_id.cell_id`): a hash of what changes
its trained weights (the config less its decoding settings, and the model spec it
resolves to), so a cell is retrained
only when its training changes. Decoding settings (``decode.*``,
``data.test_sets``) make a separate decode key
(:meth:`harness.decoding.settings.DecodeSettings.key`): changing them decodes the
saved checkpoints again.
"""
from __future__ import annotations

import copy
import itertools
from typing import Any

from pydantic import ValidationError

from harness.config import Cell, CellConfig, Row
from harness.config.cell_id import cell_id
from variants import VariantError, get_spec
from variants.registry import resolve_objective
from variants.spec import ModelSpec

from .errors import GridError, GridErrors, from_validation_error
from .loader import Grid, load_grid

#: dict-valued keys whose sub-keys are free-form (a dotted rest is one key)
FREE_DICTS = ("overrides", "loss", "optimizer.options", "optimizer.schedule_options", "data.options")


def set_path(data: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` in nested ``data`` (free-form dicts take the rest as one key)."""
    for free in FREE_DICTS:
        if key.startswith(free + "."):
            node = data
            for part in free.split("."):
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise KeyError(f"{free} is not a mapping")
            node[key[len(free) + 1:]] = copy.deepcopy(value)
            return
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise KeyError(f"{part!r} is not a mapping")
        node = nxt
    node[parts[-1]] = copy.deepcopy(value)


def _axis_rows(grid: Grid) -> list[list[tuple[str, str, dict[str, Any]]]]:
    """Per axis: (label, origin, changes) for each value."""
    out = []
    for axis, values in grid.spec.axes.items():
        rows = []
        for i, v in enumerate(values):
            origin = f"axes.{axis}[{i}]"
            if isinstance(v, dict):
                try:
                    row = Row.model_validate(v)
                except ValidationError as err:
                    raise from_validation_error(str(grid.path), err, Row, prefix=origin) from None
                rows.append((row.name, origin, row.set))
            else:
                rows.append((str(v) if not isinstance(v, list) else "+".join(map(str, v)),
                             origin, {axis: v}))
        out.append(rows)
    return out


#: the origin of the command line's ``--set KEY=VALUE`` changes (applied after every row)
COMMAND_LINE = "--set"


def _set_prefix(origin: str) -> str:
    return "--set " if origin == COMMAND_LINE else f"{origin}.set."


def blame(loc_parts: tuple[Any, ...], changes: list[tuple[str, dict[str, Any]]]) -> str:
    """Key-path prefix for an error at ``loc_parts``: the row (or ``--set``) that set the
    failing key, else the base."""
    loc = ".".join(str(p) for p in loc_parts)
    for origin, sets in reversed(changes):
        for key in sets:
            if loc == key or loc.startswith(key + ".") or key.startswith(loc + "."):
                return "--set " if origin == COMMAND_LINE else f"{origin}.set: "
    return "base."


def _resolve(grid: Grid, base: dict[str, Any],
             changes: list[tuple[str, dict[str, Any]]]) -> tuple[CellConfig, ModelSpec]:
    """The cell's config after ``changes`` and the model spec it resolves to (once per cell)."""
    data = copy.deepcopy(base)
    for origin, sets in changes:
        for key, value in sets.items():
            try:
                set_path(data, key, value)
            except KeyError as e:
                raise GridError(str(grid.path), f"{_set_prefix(origin)}{key}", f"cannot set: {e.args[0]}") from None
    try:
        config = CellConfig.model_validate(data)
    except ValidationError as err:
        raise from_validation_error(str(grid.path), err, CellConfig,
                                    prefix=lambda loc: blame(loc, changes)) from None
    origin = changes[-1][0] if changes else "base"
    try:
        spec = get_spec(config.variant, config.overrides)
        resolve_objective(config.objective if isinstance(config.objective, str)
                          else tuple(config.objective))
    except VariantError as e:
        raise GridError(str(grid.path), f"{origin} -> overrides", str(e)) from None
    return config, spec


def expand(grid: Grid, overrides: dict[str, Any] | None = None) -> list[Cell]:
    """All cells of ``grid`` in a stable order (rows, then axes, then seeds); every cell
    that does not resolve is reported at once (:class:`GridErrors`).

    ``overrides`` (the command line's ``--set key.path=value``) change every
    cell after its row and axes, validated like the file's own keys.
    """
    cells, errors = expand_all(grid, overrides)
    if errors:
        raise GridErrors(errors)
    return cells


def expand_all(grid: Grid, overrides: dict[str, Any] | None = None) -> tuple[list[Cell], list[GridError]]:
    """The cells of ``grid`` that resolve, and the errors of those that do not."""
    spec = grid.spec
    base = spec.base.model_dump(mode="json", exclude={"seeds"}, exclude_unset=False)
    rows: list[tuple[str, str, dict[str, Any]]] = []
    if spec.include_base:
        rows.append(("base", "base", {}))
    rows += [(r.name, f"ablations[{i}]", r.set) for i, r in enumerate(spec.ablations)]
    seeds = spec.base.seeds or [None]
    try:
        axes = _axis_rows(grid)
    except GridError as e:
        return [], [e]
    axis_names = list(spec.axes)
    cells: list[Cell] = []
    errors: list[GridError] = []
    seen: dict[str, str] = {}
    for row_name, row_origin, row_set in rows:
        for combo in itertools.product(*axes) if axes else [()]:
            for seed in seeds:
                changes = [(row_origin, row_set)] + [(o, s) for _, o, s in combo]
                if spec.base.seeds:
                    changes.append(("base.seeds", {"seed": seed}))
                if overrides:
                    changes.append((COMMAND_LINE, overrides))
                try:
                    config, model_spec = _resolve(grid, base, changes)
                except GridError as e:
                    errors.append(e)
                    continue
                labels = {a: lab for a, (lab, _, _) in zip(axis_names, combo)}
                parts = [] if (row_name == "base" and combo and not spec.ablations) else [row_name]
                parts += [lab for lab, _, _ in combo]
                if len(seeds) > 1:
                    parts.append(f"seed{seed}")
                    labels["seed"] = str(seed)
                name = "/".join(parts)
                cid = cell_id(config, model_spec)
                if cid in seen:
                    errors.append(GridError(str(grid.path), row_origin,
                                            f"cells {seen[cid]!r} and {name!r} resolve to the same "
                                            "config; every row must change something"))
                    continue
                seen[cid] = name
                cells.append(Cell(cell_id=cid, grid=grid.name, name=name, config=config,
                                  labels={"row": row_name, **labels}, spec=model_spec))
    return cells, errors


def load_cells(path: str, overrides: dict[str, Any] | None = None) -> tuple[Grid, list[Cell]]:
    """Load and expand a grid file in one call."""
    grid = load_grid(path)
    return grid, expand(grid, overrides)

