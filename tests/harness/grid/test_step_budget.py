"""A budget in optimizer steps (with gradient accumulation) instead of epochs."""
import json

from harness.cli import main
from harness.grid.cells import load_cells
from harness.store import ResultsStore
from harness.evaluate import checkpoint


def test_max_steps_with_accumulation_stops_mid_epoch_and_is_recorded(tiny_grid, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path = tiny_grid(name="steps", train="max_steps: 2, accum_grad: 2, save_every_n: 1, average_period: 1")
    grid, (cell,) = load_cells(path)
    assert main(["run", path]) == 0
    store = ResultsStore(grid.spec.store)
    row = store.cell(cell.cell_id)
    assert row["status"] == "done" and row["step"] == 2
    epochs = sorted(store.rows("epochs", cell_id=cell.cell_id), key=lambda e: e["epoch"])
    last = epochs[-1]
    assert last["step"] == 2 and json.loads(last["extra"])["partial"] is True
    state = checkpoint.load(checkpoint.epoch_path(grid.run_root / cell.cell_id / "checkpoints", last["epoch"]))
    # two optimizer steps of two batches each; the last epoch was cut short and would resume mid-way
    assert state["step"] == 2 and state["batches"] >= 4 and state["epoch_done"] is False
    assert state["batch_in_epoch"] % 2 == 0
    assert {w["test_set"] for w in store.rows("wers", cell_id=cell.cell_id)} == {"test", "test_held_out"}
