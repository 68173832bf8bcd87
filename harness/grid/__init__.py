"""Experiment grids: YAML files under ``experiments/`` -> validated cells with stable ids.

    >>> from harness.grid import load_cells
    >>> grid, cells = load_cells("experiments/table5.yaml")
    >>> [(c.cell_id, c.name, c.variant) for c in cells]

Modules: ``loader`` (YAML -> Grid, validated by ``harness.config.schema``),
``cells`` (rows x axes x seeds, each with its model spec and stable id), ``validate`` (every cell checked against the
code that uses its keys before training: ``check_grid``), ``defaults`` (the defaults table of
experiments/README.md), ``cost`` (params, GFLOPs, GPU-hours),
``executors`` (local, submitit). The ``plan`` / ``run`` / ``status`` commands are in
``harness/commands/``.
"""
from harness.config.cell_id import cell_id  # noqa: F401

from .cells import Cell, expand, load_cells  # noqa: F401
from .errors import GridError  # noqa: F401
from .loader import Grid, load_grid  # noqa: F401
