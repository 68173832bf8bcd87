"""Failing cells are recorded with the reason and the grid goes on; a locked cell is left alone."""
import fcntl

from support.gridtext import BASE

from harness.cli import main
from harness.grid.cells import load_cells
from harness.store import ResultsStore
from harness.train.cell_runner import BUSY, run_cell


def _grid(write_grid, tmp_path):
    text = BASE.replace("name: t", f"name: t\nstore: {tmp_path / 'r.sqlite'}\nrun_root: {tmp_path / 'runs'}")
    text = text.replace("corpus: synthetic, dir: DATA", f"corpus: librispeech, dir: {tmp_path / 'ls'}, "
                        f"src_dir: {tmp_path / 'nowhere'}")
    return write_grid(text + "ablations:\n  - {name: other, set: {data.max_duration: 30}}\n")


def test_every_failing_cell_is_recorded_and_the_grid_goes_on(write_grid, tmp_path, capsys):
    path = _grid(write_grid, tmp_path)
    grid, cells = load_cells(path)
    # a source folder that does not exist is refused before any cell starts
    assert main(["run", path]) == 2
    assert "base.data.src_dir: no such directory" in capsys.readouterr().err
    assert not grid.store_path.exists()
    # one whose parts hold no utterances passes the checks and fails when the corpus is prepared
    for part in ("train-clean-100", "dev-clean", "test-clean", "test-other"):
        (tmp_path / "nowhere" / part).mkdir(parents=True)
    assert main(["run", path]) == 1  # the cell failed
    err = capsys.readouterr().err
    store = ResultsStore(grid.spec.store)
    for c in cells:
        row = store.cell(c.cell_id)
        assert row["status"] == "failed", row
        assert "EmptySplitError" in row["error"] and "no transcribed utterances" in row["error"]
        assert f"cell {c.cell_id} {c.name}: failed" in err
    names = ", ".join(f"{c.cell_id} {c.name}" for c in cells)
    assert err.strip().splitlines()[-1] == f"grid t: 0 done; 2 failed: {names}"
    # a rerun leaves failed cells alone unless asked (the cause may have been fixed)
    assert main(["run", path, "--cells", cells[0].cell_id]) == 1
    err = capsys.readouterr().err
    assert f"skip {cells[0].cell_id} base: failed (--retry-failed reruns it)" in err
    assert f"cell {cells[0].cell_id}" not in err
    assert main(["run", path, "--cells", cells[0].cell_id, "--retry-failed"]) == 1
    assert f"cell {cells[0].cell_id} base: failed" in capsys.readouterr().err


def test_a_cell_locked_by_another_runner_is_not_touched(write_grid, tmp_path):
    path = _grid(write_grid, tmp_path)
    grid, (cell, _) = load_cells(path)
    run_dir = grid.run_root / cell.cell_id
    run_dir.mkdir(parents=True)
    with open(run_dir / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert run_cell(cell, grid.store_path, grid.run_root) == BUSY
    assert ResultsStore(grid.spec.store).cell(cell.cell_id) is None
