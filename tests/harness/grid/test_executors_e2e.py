"""The same tiny grid through submitit's local executor and through torchrun (2 processes, gloo)."""
import os
import shutil
import subprocess
import sys

import pytest

from harness.grid.cells import load_cells
from harness.store import ResultsStore

ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def _kinds(store: ResultsStore, cell_id: str) -> dict:
    """What a finished cell left in the store, independent of the numbers."""
    row = store.cell(cell_id)
    return {
        "status": row["status"],
        "has_params": row["params"] > 0,
        "epochs": sorted(e["epoch"] for e in store.rows("epochs", cell_id=cell_id)),
        "losses_finite": all(e["train_loss"] == e["train_loss"] and e["valid_loss"] == e["valid_loss"]
                             for e in store.rows("epochs", cell_id=cell_id)),
        "wers": sorted((w["test_set"], w["method"]) for w in store.rows("wers", cell_id=cell_id)),
    }


LOCAL_KINDS = {"status": "done", "has_params": True, "epochs": [1], "losses_finite": True,
               "wers": [("test", "ctc_greedy_search"), ("test_held_out", "ctc_greedy_search")]}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("tasks", [1, 2])
def test_submitit_local_executor(tiny_grid, tasks):
    """One job per cell; with 2 tasks the job is a 2-rank DistributedDataParallel run (gloo)."""
    path = tiny_grid(name=f"sub{tasks}")
    grid, (cell,) = load_cells(path)
    out = subprocess.run([sys.executable, "-m", "harness.cli", "run", path, "--executor", "submitit-local",
                          "--slurm", f'{{"tasks_per_node": {tasks}}}'],
                         env=ENV, capture_output=True, text=True, timeout=220)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"cell {cell.cell_id} base: done" in out.stderr
    store = ResultsStore(grid.spec.store)
    assert _kinds(store, cell.cell_id) == LOCAL_KINDS
    assert list((grid.run_root / "submitit").glob("*_result.pkl"))
    import json

    assert json.loads(store.rows("epochs", cell_id=cell.cell_id)[0]["extra"])["world_size"] == tasks


@pytest.mark.timeout(240)
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not installed")
def test_torchrun_two_processes_gloo(tiny_grid):
    path = tiny_grid(name="ddp")
    grid, (cell,) = load_cells(path)
    out = subprocess.run(["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "harness.cli", "run", path],
                         env=ENV, capture_output=True, text=True, timeout=220)
    assert out.returncode == 0, out.stderr[-3000:]
    store = ResultsStore(grid.spec.store)
    assert _kinds(store, cell.cell_id) == LOCAL_KINDS
    import json

    extra = json.loads(store.rows("epochs", cell_id=cell.cell_id)[0]["extra"])
    assert extra["world_size"] == 2
    logs = grid.run_root / cell.cell_id / "log"
    assert (logs / "train-rank0.log").exists() and (logs / "train-rank1.log").exists()
