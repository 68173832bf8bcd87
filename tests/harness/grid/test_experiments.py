"""Every grid under experiments/ loads and passes every check (this machine's data aside);
the default grid's cells build with their optimizers."""
from pathlib import Path

import pytest

from harness.grid.cells import load_cells

EXPERIMENTS = sorted((Path(__file__).resolve().parents[3] / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_grid_loads_with_distinct_cells(path):
    from harness.grid.loader import load_grid
    from harness.grid.validate import check_grid

    cells = check_grid(load_grid(path), disk=False)
    assert cells and len({c.cell_id for c in cells}) == len(cells)
    assert len({c.name for c in cells}) == len(cells)


def test_default_grid_cells_build_with_their_optimizer_and_schedule():
    from types import SimpleNamespace

    from harness.train.trainer import build_cell_model, build_loss_config, build_optimization

    grid, cells = load_cells(str(next(p for p in EXPERIMENTS if p.stem == "default")))
    assert {"zipformer", "conformer"} <= {c.labels["row"] for c in cells} and len(cells) >= 4
    for cell in cells:
        model = build_cell_model(cell, SimpleNamespace(vocab_size=100, blank_id=0))
        build_loss_config(cell)
        optimizer, scheduler, name = build_optimization(cell, model)
        assert name == (cell.config.optimizer.name or model.spec.optimizer)
        assert scheduler.get_last_lr()[0] > 0
