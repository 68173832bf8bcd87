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

    from harness.evaluate.model_setup import build_cell_model, build_loss_config, build_optimization

    grid, cells = load_cells(str(next(p for p in EXPERIMENTS if p.stem == "default")))
    assert {"zipformer", "conformer"} <= {c.labels["row"] for c in cells} and len(cells) >= 4
    for cell in {c.labels["row"]: c for c in cells}.values():  # seeds change neither model nor optimizer
        model = build_cell_model(cell, SimpleNamespace(vocab_size=100, blank_id=0))
        build_loss_config(cell)
        optimizer, scheduler, name = build_optimization(cell, model)
        assert name == (cell.config.optimizer.name or model.spec.optimizer)
        assert scheduler.get_last_lr()[0] > 0


def test_default_grid_runs_three_seeds_and_its_rows_repeat_the_papers_comparisons():
    from harness.report.verdicts import baseline_label, grid_rows, paper_claim

    grid, cells = load_cells(str(next(p for p in EXPERIMENTS if p.stem == "default")))
    rows = grid_rows(cells)
    assert all(len(r.cells) == 3 and 42 in {c.config.seed for c in r.cells} for r in rows)
    base = next(r for r in rows if r.name == baseline_label(grid))
    assert base.name == "zipformer"
    claims = {r.name: paper_claim(r.cells[0], base.cells[0]) for r in rows if r is not base}
    assert claims["layernorm"].label == "Table 5: LayerNorm"
    assert claims["adam"].label == "Table 5: Adam"
    assert claims["conformer"].label == "Table 2: Conformer-S vs Zipformer-S"
    # the paper's differences, row - baseline: every one of these rows is worse in the paper
    assert claims["layernorm"].deltas == pytest.approx({"test-clean": 0.08, "test-other": 0.18})
    assert claims["conformer"].deltas == pytest.approx({"test-clean": 1.33, "test-other": 3.51})
    assert all(d > 0 for c in claims.values() for d in c.deltas.values())


def test_paper_grids_rows_find_their_paper_comparisons():
    from harness.report.verdicts import baseline_label, grid_rows, paper_claim

    def claims(stem):
        grid, cells = load_cells(str(next(p for p in EXPERIMENTS if p.stem == stem)))
        rows = grid_rows(cells)
        base = next(r for r in rows if r.name == baseline_label(grid))
        return {r.name: paper_claim(r.cells[0], base.cells[0]) for r in rows if r is not base}

    t5 = claims("table5")
    assert t5["layernorm"].label == "Table 5: LayerNorm" and t5["adam"].label == "Table 5: Adam"
    assert t5["no-nla"].deltas == pytest.approx({"test-clean": -0.05, "test-other": 0.18})
    assert all(c is not None and c.label.startswith("Table 5: ") for c in t5.values())
    t6 = claims("table6")
    assert {k: c.label for k, c in t6.items()} == {
        "no-balancer": "Table 6: No Balancer", "no-whitener": "Table 6: No Whitener",
        "no-balancer-no-whitener": "Table 6: No Balancer, No Whitener"}
    assert t6["no-whitener"].deltas == pytest.approx({"test-clean": 0.04, "test-other": 0.24})
    # Table 2: only a Conformer against the Zipformer of its own scale and objective
    t2 = claims("table2")
    assert t2["conformer-s-transducer"].label == "Table 2: Conformer-S vs Zipformer-S"
    assert t2["conformer-m-transducer"] is None and t2["zipformer-m-transducer"] is None
    assert t2["zipformer-s-ctc"] is None
