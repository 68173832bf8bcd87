"""A trained cell is never failed over averaging: when the running average holds nothing of
the decoded epoch (max_steps 7, average_period 3, 2 steps per epoch: epochs end at steps
6 and 7, no multiple of 3 between), the cell decodes its plain checkpoint and says so;
`run` names the risk before training with what to change."""
from harness.cli import main
from harness.grid.cells import load_cells
from harness.store import ResultsStore


def test_impossible_running_average_falls_back_to_the_plain_checkpoint(tiny_grid, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path = tiny_grid(name="avgfall", train="max_steps: 7, save_every_n: 3, average_period: 3")
    assert main(["run", path]) == 0
    err = capsys.readouterr().err
    assert "note: train.max_steps 7 is not a multiple of train.average_period 3" in err
    grid, (cell,) = load_cells(path)
    store = ResultsStore(grid.spec.store)
    assert store.cell(cell.cell_id)["status"] == "done"
    epochs = {e["epoch"]: e["step"] for e in store.rows("epochs", cell_id=cell.cell_id)}
    assert epochs[max(epochs)] == 7 and epochs[max(epochs) - 1] == 6, epochs  # the case under test
    wers = store.rows("wers", cell_id=cell.cell_id)
    assert wers and {w["decode_key"] for w in wers} == {"avg1"}
    assert all(w["averaged"].startswith(f"epoch {max(epochs)} (its own weights; not the running average: no "
                                        "multiple of train.average_period 3 lies between") for w in wers)
    assert "asked for avg1-averaged-model, decoded as avg1" in err
