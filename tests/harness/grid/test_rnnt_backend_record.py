"""The transducer loss's backend is logged once per run and recorded with each epoch."""
import json

from harness.grid.cells import load_cells
from harness.store import ResultsStore
from harness.train.cell_runner import run_cell


def test_the_rnnt_backend_is_logged_once_and_stored(tiny_grid, one_thread):
    path = tiny_grid(name="rnnt", train="max_steps: 2, save_every_n: 1, average_period: 1",
                     decode="methods: [greedy_search]")
    text = open(path).read().replace("objective: ctc", "objective: transducer")
    open(path, "w").write(text)
    grid, (cell,) = load_cells(path)
    assert run_cell(cell, grid.store_path, grid.run_root) == "done"
    log = (grid.run_root / cell.cell_id / "log" / "train-rank0.log").read_text()
    assert log.count("transducer loss backend: ") == 1
    backend = log.split("transducer loss backend: ")[1].split()[0]
    assert backend in ("torch", "triton", "k2")
    extras = [json.loads(r["extra"]) for r in ResultsStore(grid.store_path).rows("epochs", cell_id=cell.cell_id)]
    assert extras and all(e["rnnt_backend"] == backend for e in extras)
