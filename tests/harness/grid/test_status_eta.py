"""`harness status`: ETA of a running cell and disk use per cell."""
import fcntl
import json
import time

from support.gridtext import BASE

from harness.cli import main
from harness.grid.cells import expand
from harness.grid.loader import load_grid
from harness.store import ResultsStore


def test_status_shows_eta_of_a_running_cell_and_disk_use(write_grid, tmp_path, capsys):
    path = write_grid(BASE)
    (cell,) = expand(load_grid(path))
    run_dir = tmp_path / "runs" / cell.cell_id
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "epoch-1.pt").write_bytes(b"\0" * 2_000_000)
    (run_dir / "progress.json").write_text(json.dumps({"step": 5, "total": 10, "eta_s": 3600.0,
                                                      "updated_at": time.time()}))
    store = ResultsStore(tmp_path / "s.sqlite")
    store.set_cell(cell.cell_id, status="running", step=5, run_dir=str(run_dir))
    with open(run_dir / ".lock", "w") as lock:  # a runner holds the cell
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert main(["status", path, "--store", str(tmp_path / "s.sqlite")]) == 0
        fcntl.flock(lock, fcntl.LOCK_UN)
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(cell.cell_id))
    assert " running " in line and (" 59m59s " in line or " 1h00m " in line) and " 2.0 MB " in line, line
    # no runner: interrupted, no ETA
    assert main(["status", path, "--store", str(tmp_path / "s.sqlite")]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(cell.cell_id))
    assert " interrupted " in line and " - " in line and " 2.0 MB " in line, line
