"""Store, disk and checkpoint faults: one line naming the file and what to do, exit 2 for a bad
store or run_root, the grid goes on (exit 1) when cells fail, nothing finished is redone."""
import sqlite3

import pytest
from support.faultkit import read_only, small_filesystem

from harness.cli import main
from harness.grid.cells import load_cells
from harness.store import ResultsStore
from harness.evaluate import checkpoint
from harness.train.cell_runner import RunOptions, run_cell

ONE_EPOCH = "epochs: 1, save_every_n: 1, average_period: 1"


def _err_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    return lines[-1]


@pytest.fixture
def grid_with_store(tiny_grid):
    path = tiny_grid(name="st", train=ONE_EPOCH)
    grid, (cell,) = load_cells(path)
    return path, grid, cell


@pytest.mark.parametrize("content, says", [
    (b"", "the results store is empty (0 bytes)"),
    (b"SQLite format 3\x00" + b"\x13" * 2000, "not a readable results store"),
    (b"this is not sqlite at all" * 100, "not a readable results store"),
], ids=["empty", "torn-header", "not-sqlite"])
def test_status_and_run_name_an_empty_or_corrupt_store(grid_with_store, capsys, content, says):
    path, grid, _ = grid_with_store
    grid.store_path.parent.mkdir(parents=True, exist_ok=True)
    grid.store_path.write_bytes(content)
    for command in ("status", "run"):
        assert main([command, path]) == 2
        line = _err_line(capsys)
        assert line.startswith(f"error: {grid.store_path}: ") and says in line, line
    assert grid.store_path.read_bytes() == content  # never re-created or changed


def test_status_opens_read_only_and_a_deleted_store_is_an_error_once_cells_ran(grid_with_store, capsys):
    path, grid, cell = grid_with_store
    assert main(["status", path]) == 0  # nothing ran: every cell pending, no store created
    assert "pending" in capsys.readouterr().out and not grid.store_path.exists()
    store = ResultsStore(grid.store_path)
    store.set_cell(cell.cell_id, status="done", step=3)
    (grid.run_root / cell.cell_id).mkdir(parents=True)
    (grid.run_root / cell.cell_id / "config.yaml").write_text("cell_id: x\n")
    wal = grid.store_path.with_name(grid.store_path.name + "-wal")
    before = (grid.store_path.stat().st_mtime_ns, wal.exists() and wal.stat().st_size)
    assert main(["status", path]) == 0
    assert " done " in capsys.readouterr().out
    assert (grid.store_path.stat().st_mtime_ns, wal.exists() and wal.stat().st_size) == before
    grid.store_path.unlink()
    assert main(["status", path]) == 2
    line = _err_line(capsys)
    assert line.startswith(f"error: {grid.store_path}: no results store, although 1 cell(s)")


def test_a_locked_store_is_retried_then_named(grid_with_store, capsys, monkeypatch):
    path, grid, _ = grid_with_store
    ResultsStore(grid.store_path)
    monkeypatch.setenv("HARNESS_STORE_WAIT_S", "1")
    holder = sqlite3.connect(grid.store_path)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert main(["run", path]) == 2
        line = _err_line(capsys)
        assert line.startswith(f"error: {grid.store_path}: results store locked by another process")
    finally:
        holder.rollback()
        holder.close()


def test_a_read_only_store_and_run_root_are_one_line(grid_with_store, capsys, tmp_path):
    path, grid, cell = grid_with_store
    ResultsStore(grid.store_path).set_cell(cell.cell_id, status="pending")
    undo = read_only(grid.store_path.parent)
    if undo is None:
        pytest.skip("cannot make a folder read-only here")
    try:
        assert main(["status", path]) == 0  # reading needs no write access
        capsys.readouterr()
        assert main(["run", path, "--run-root", str(tmp_path / "elsewhere")]) == 2
        line = _err_line(capsys)
        assert line.startswith(f"error: {grid.store_path}: cannot write the results store"), line
        assert main(["run", path]) == 2  # the run_root (same read-only folder)
        line = _err_line(capsys)
        assert line.startswith(f"error: run_root {grid.run_root}: not writable"), line
    finally:
        undo()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["run", path, "--run-root", str(blocker / "runs")]) == 2
    assert _err_line(capsys).startswith(f"error: run_root {blocker / 'runs'}: not writable")


def test_no_space_for_a_checkpoint_interrupts_the_cell_with_the_path_and_bytes(grid_with_store, capsys,
                                                                               monkeypatch):
    path, grid, cell = grid_with_store
    monkeypatch.setattr(checkpoint, "free_bytes", lambda folder: 1000)
    assert main(["run", path]) == 1
    row = ResultsStore(grid.store_path).cell(cell.cell_id)
    ckpts = grid.run_root / cell.cell_id / "checkpoints"
    assert row["status"] == "interrupted"  # resumable once there is room
    assert row["error"].startswith(f"no space left on {ckpts} for a checkpoint: needs about ")
    assert row["error"].endswith(" bytes, 1000 free")
    assert _err_line(capsys) == (f"grid st: 0 done; 1 interrupted: {cell.cell_id} base; "
                                 f"rerun `harness run {path}` to resume")


def test_a_full_disk_as_run_root_interrupts_the_cells_in_one_line_each_and_they_resume(grid_with_store,
                                                                                       capsys, tmp_path):
    path, grid, cell = grid_with_store
    root = tmp_path / "full"
    undo = small_filesystem(root, "64m")
    if undo is None:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        filler = root / "filler"
        with open(filler, "wb") as f:  # every byte taken
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        assert checkpoint.free_bytes(root) == 0
        capsys.readouterr()
        assert main(["run", path, "--run-root", str(root)]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and "Logging error" not in err, err
        row = ResultsStore(grid.store_path).cell(cell.cell_id)
        assert row["status"] == "interrupted"
        assert row["error"].startswith(f"no space left on {root / cell.cell_id}") and "0 bytes free" in row["error"]
        assert err.strip().splitlines()[-1] == (f"grid st: 0 done; 1 interrupted: {cell.cell_id} base; "
                                                f"rerun `harness run {path} --run-root {root}` to resume")
        filler.unlink()  # room again: the rerun trains it
        assert main(["run", path, "--run-root", str(root)]) == 0
        assert ResultsStore(grid.store_path).cell(cell.cell_id)["status"] == "done"
    finally:
        undo()


def test_a_disk_that_fills_while_writing_is_named(grid_with_store, monkeypatch):
    _, grid, cell = grid_with_store
    undo = small_filesystem(grid.run_root / cell.cell_id / "checkpoints", "1m")
    if undo is None:
        pytest.skip("needs root to mount a small tmpfs")
    try:  # the free-space check is fooled: the write itself hits ENOSPC
        monkeypatch.setattr(checkpoint, "free_bytes", lambda folder: 1 << 40)
        assert run_cell(cell, grid.store_path, grid.run_root) == "interrupted"
        error = ResultsStore(grid.store_path).cell(cell.cell_id)["error"]
        assert error.startswith(f"no space left on {grid.run_root / cell.cell_id / 'checkpoints'} "
                                f"while writing checkpoint-1.pt: needs about ")
        assert not [p for p in (grid.run_root / cell.cell_id / "checkpoints").iterdir()]
    finally:
        undo()


def test_unreadable_checkpoints_are_named_and_fail_the_cell_unless_asked(grid_with_store, capsys):
    path, grid, cell = grid_with_store
    ckpts = grid.run_root / cell.cell_id / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "checkpoint-3.pt").write_bytes(b"PK\x03\x04 cut short")
    (ckpts / "epoch-1.pt").write_bytes(b"")
    assert main(["run", path]) == 1
    row = ResultsStore(grid.store_path).cell(cell.cell_id)
    assert row["status"] == "failed" and row["error"].startswith(f"no readable checkpoint in {ckpts} (")
    assert "checkpoint-3.pt: " in row["error"] and "epoch-1.pt: " in row["error"]
    assert row["error"].endswith("rerun `harness run` with --retry-failed --start-over-if-unreadable "
                                 "to train this cell from step 0")
    log = (grid.run_root / cell.cell_id / "log" / "train-rank0.log").read_text()
    assert f"skipped checkpoint {ckpts / 'checkpoint-3.pt'}: unreadable (" in log
    capsys.readouterr()
    # the skip line carries the whole reason, the hint included
    assert main(["run", path, "--start-over-if-unreadable"]) == 1
    assert f"skip {cell.cell_id} base: failed (--retry-failed reruns it): {row['error']}\n" in capsys.readouterr().err
    assert main(["run", path, "--retry-failed", "--start-over-if-unreadable"]) == 0
    assert ResultsStore(grid.store_path).cell(cell.cell_id)["status"] == "done"
    assert (ckpts / "checkpoint-3.pt.unreadable").exists() and (ckpts / "epoch-1.pt").stat().st_size > 0


@pytest.mark.parametrize("status", ["done", "diverged", "failed"])
def test_a_runner_leaves_a_cell_another_runner_settled_alone(grid_with_store, status):
    """The grid's to-do list was made before another runner finished the cell: the runner that
    takes the cell's lock reads its state again and does not redo it."""
    _, grid, cell = grid_with_store
    ResultsStore(grid.store_path).set_cell(cell.cell_id, status=status, step=14, error="x")
    assert run_cell(cell, grid.store_path, grid.run_root) == status
    assert not (grid.run_root / cell.cell_id / "checkpoints").exists()
    assert not (grid.run_root / cell.cell_id / "log").exists()
    row = ResultsStore(grid.store_path).cell(cell.cell_id)
    assert (row["status"], row["step"]) == (status, 14)
    if status != "done":  # unless asked: then it runs (and here fails fast on missing data)
        retry = RunOptions(retry_failed=True, retry_diverged=True)
        grid_dir = grid.run_root / cell.cell_id
        cell.config.data.dir = str(grid_dir / "no-corpus")
        cell.config.data.corpus = "librispeech"
        assert run_cell(cell, grid.store_path, grid.run_root, options=retry) == "failed"
