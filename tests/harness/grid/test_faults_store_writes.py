"""Store faults while a cell trains: no epoch or WER row is lost, training never waits on the
store, and a trained and decoded cell is ``done`` whatever the store did meanwhile.

What the store refuses is kept in the cell's ``store-journal.jsonl`` and written into the store
by the next write, ``harness run`` or ``harness status``; a store locked by another process
holds up only the background writer; a store deleted mid-run is made again."""
import json
import subprocess
import sys

import pytest
from support.faultkit import read_only

from harness.cli import main
from harness.evaluate import checkpoint
from harness.grid.cells import load_cells
from harness.store import ResultsStore
from harness.store.journal import JOURNAL
from harness.train import cell_runner
from harness.train.cell_runner import run_cell

TWO_EPOCHS = "epochs: 2, save_every_n: 1, average_period: 1"


@pytest.fixture
def cell_and_store(tiny_grid, tmp_path):
    """A one-cell grid whose store lives in its own folder (so that folder can fail alone)."""
    path = tiny_grid(name="sw", train=TWO_EPOCHS)
    grid, (cell,) = load_cells(path)
    store = tmp_path / "store" / "results.sqlite"
    ResultsStore(store).set_cell(cell.cell_id, grid="sw", name=cell.name, status="pending")
    return path, grid, cell, store


def _on_first(monkeypatch, cls, name, before):
    """Run ``before()`` once, just before the first call of ``cls.name``."""
    original = getattr(cls, name)
    seen = []

    def wrapper(*a, **k):
        if not seen:
            seen.append(before())
        return original(*a, **k)

    monkeypatch.setattr(cls, name, wrapper)
    return seen


def _epochs(store, cell_id):
    return sorted(r["epoch"] for r in ResultsStore(store, readonly=True).rows("epochs", cell_id=cell_id))


def test_a_store_that_turns_read_only_mid_run_loses_no_row_and_the_cell_is_done(cell_and_store,
                                                                                 monkeypatch, capsys):
    path, grid, cell, store = cell_and_store
    undo = []
    _on_first(monkeypatch, ResultsStore, "add_epoch", lambda: undo.append(read_only(store.parent)))
    try:
        assert run_cell(cell, store, grid.run_root) == "done"
    finally:
        if undo and undo[0]:
            undo[0]()
    if not undo or undo[0] is None:
        pytest.skip("cannot make a folder read-only here")
    journal = grid.run_root / cell.cell_id / JOURNAL
    ops = [json.loads(line)["op"] for line in journal.read_text().splitlines()]
    assert ops.count("add_epoch") == 2 and "add_wer" in ops and ops[-1] == "set_cell"
    assert ResultsStore(store, readonly=True).cell(cell.cell_id)["status"] == "running"
    log = (grid.run_root / cell.cell_id / "log" / "train-rank0.log").read_text()
    assert f"the cell's results are kept in {journal}" in log
    # the next run writes them into the store (and finds the cell done)
    capsys.readouterr()
    assert main(["run", path, "--store", str(store)]) == 0
    err = capsys.readouterr().err
    assert f"wrote the {len(ops)} result(s) kept in {journal} into the results store" in err
    row = ResultsStore(store, readonly=True).cell(cell.cell_id)
    assert row["status"] == "done" and row["name"] == cell.name and not journal.exists()
    assert _epochs(store, cell.cell_id) == [1, 2]
    wers = ResultsStore(store, readonly=True).rows("wers", cell_id=cell.cell_id)
    utts = ResultsStore(store, readonly=True).utterances(cell_id=cell.cell_id)
    assert wers and len(utts) == len(wers)  # with each WER its utterances' counts


def test_status_writes_a_journal_into_the_store(tiny_grid, capsys):
    path = tiny_grid(name="js")
    grid, (cell,) = load_cells(path)
    ResultsStore(grid.store_path).set_cell(cell.cell_id, status="running", name=cell.name)
    journal = grid.run_root / cell.cell_id / JOURNAL
    journal.parent.mkdir(parents=True)
    rows = [{"op": "add_epoch", "args": {"cell_id": cell.cell_id, "epoch": 1, "step": 2, "valid_loss": 0.5}},
            {"op": "set_cell", "args": {"cell_id": cell.cell_id, "status": "done", "step": 2}}]
    journal.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"op": "add_ep')  # a torn last line
    assert main(["status", path]) == 0
    assert f"wrote the 2 result(s) kept in {journal}" in capsys.readouterr().err
    row = ResultsStore(grid.store_path, readonly=True).cell(cell.cell_id)
    assert (row["status"], row["step"]) == ("done", 2) and _epochs(grid.store_path, cell.cell_id) == [1]
    assert not journal.exists()


def test_a_store_deleted_mid_run_is_made_again_with_the_cell_whole(cell_and_store, monkeypatch):
    _, grid, cell, store = cell_and_store

    def delete():
        for p in store.parent.glob("results.sqlite*"):
            p.unlink()

    _on_first(monkeypatch, ResultsStore, "add_epoch", delete)
    assert run_cell(cell, store, grid.run_root) == "done"
    row = ResultsStore(store, readonly=True).cell(cell.cell_id)
    assert row["status"] == "done" and row["name"] == cell.name and json.loads(row["config"])
    assert _epochs(store, cell.cell_id) == [1, 2]
    log = (grid.run_root / cell.cell_id / "log" / "train-rank0.log").read_text()
    assert log.count("the results store was deleted while in use: made a new one") == 1
    assert "no such table" not in log and not (grid.run_root / cell.cell_id / JOURNAL).exists()


LOCKER = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
con.execute("INSERT INTO profile (variant, objective) VALUES ('lock', 'held')")
print("locked", flush=True)
start = time.time()
import pathlib
while (not pathlib.Path(sys.argv[2]).exists() or time.time() < start + 4) and time.time() < start + 90:
    time.sleep(0.05)
print("saw it" if pathlib.Path(sys.argv[2]).exists() else "timed out", flush=True)
con.execute("ROLLBACK")
"""


def test_a_store_locked_by_another_process_does_not_hold_training_up(cell_and_store, monkeypatch):
    _, grid, cell, store = cell_and_store
    last = checkpoint.epoch_path(grid.run_root / cell.cell_id / "checkpoints", 2)
    lockers = []

    def lock():  # from the first checkpoint until training wrote its last one, 4 s at least
        p = subprocess.Popen([sys.executable, "-c", LOCKER, str(store), str(last)], stdout=subprocess.PIPE,
                             text=True)
        assert p.stdout.readline().strip() == "locked"
        lockers.append(p)

    _on_first(monkeypatch, checkpoint, "atomic_save", lock)
    monkeypatch.setattr(cell_runner, "LOCK_NOTICE_S", 1.0)  # the message after 1 s of waiting, not 5
    try:
        assert run_cell(cell, store, grid.run_root) == "done"
    finally:
        for p in lockers:
            p.kill()
    out, _ = lockers[0].communicate(timeout=30)
    assert out.strip() == "saw it"  # training finished its epochs while the store was locked
    log = (grid.run_root / cell.cell_id / "log" / "train-rank0.log").read_text()
    assert log.count("locked by another process for over 1 s; the cell's writes wait in a queue") == 1
    assert ResultsStore(store, readonly=True).cell(cell.cell_id)["status"] == "done"
    assert _epochs(store, cell.cell_id) == [1, 2]


def test_two_real_runners_on_one_grid_train_each_cell_once_and_lose_no_row(tiny_grid):
    """Two `harness run` processes started together on one grid (one store): each cell is
    trained by one of them, the other reports it busy or done, and every row reaches the store."""
    from support.faultkit import harness

    path = tiny_grid(name="two", rows="  - {name: other, set: {overrides.norm: layer_norm}}\n")
    grid, cells = load_cells(path)
    procs = [harness("run", path) for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    for err in errs:
        assert "Traceback" not in err, err[-3000:]
    store = ResultsStore(grid.store_path, readonly=True)
    for c in cells:
        assert store.cell(c.cell_id)["status"] == "done"
        assert _epochs(grid.store_path, c.cell_id) == [1]
        assert store.rows("wers", cell_id=c.cell_id)
        log = (grid.run_root / c.cell_id / "log" / "train-rank0.log").read_text()
        assert log.count("model zipformer-tiny (ctc)") == 1  # trained once, by one runner
    finals = sorted(e.strip().splitlines()[-1].split(": ", 1)[1] for e in errs)
    assert finals in (["1 done; 1 busy in another runner", "1 done; 1 busy in another runner"],
                      ["1 done; 1 busy in another runner", "2 done"], ["2 done", "2 done"]), finals
