"""A grid of tiny models on the built-in data, end to end: kill, resume, diverge, record."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.grid.cells import load_cells
from harness.store import ResultsStore

THREE_ROWS = ("  - {name: layernorm, set: {overrides.norm: layer_norm}}\n"
              "  - {name: swish, set: {overrides.activation: swish}}\n")
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def _harness(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness.cli", *args]


def _log(run_root: Path, cell_id: str) -> str:
    return (run_root / cell_id / "log" / "train-rank0.log").read_text()


def test_sigkill_mid_grid_then_rerun_resumes_and_retrains_nothing_finished(tiny_grid):
    path = tiny_grid(rows=THREE_ROWS)
    grid, cells = load_cells(path)
    store, run_root = ResultsStore(grid.spec.store), Path(grid.spec.run_root)
    first, second, third = cells
    proc = subprocess.Popen(_harness("run", path), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpts = run_root / second.cell_id / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and not any(ckpts.glob("checkpoint-*.pt")):
        assert proc.poll() is None, "the run ended before the second cell wrote a checkpoint"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert store.cell(first.cell_id)["status"] == "done"
    assert store.cell(second.cell_id)["status"] == "running"
    assert store.cell(third.cell_id)["status"] == "pending"
    finished = {p: p.stat().st_mtime_ns for p in (run_root / first.cell_id / "checkpoints").iterdir()}
    st = subprocess.run(_harness("status", path), env=ENV, capture_output=True, text=True, timeout=60)
    assert f"{second.cell_id}  {second.name}" in st.stdout and " interrupted " in st.stdout

    out = subprocess.run(_harness("run", path), env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"skip {first.cell_id}" in out.stderr
    # nothing finished was retrained: its checkpoints are untouched and it trained once
    assert {p: p.stat().st_mtime_ns for p in (run_root / first.cell_id / "checkpoints").iterdir()} == finished
    assert _log(run_root, first.cell_id).count("cell done") == 1
    # the interrupted cell resumed from its last checkpoint instead of starting over
    assert "resumed from checkpoint-" in _log(run_root, second.cell_id)
    for c in cells:
        row = store.cell(c.cell_id)
        assert row["status"] == "done" and row["params"] > 0 and row["config"], row
        assert [e["epoch"] for e in store.rows("epochs", cell_id=c.cell_id)] == [1]
        wers = store.rows("wers", cell_id=c.cell_id)
        assert {w["test_set"] for w in wers} == {"test", "test_held_out"}
        assert all(w["method"] == "ctc_greedy_search" and w["ref_words"] > 0 for w in wers)
    st = subprocess.run(_harness("status", path, "--profile"), env=ENV, capture_output=True, text=True,
                        timeout=60)
    assert st.returncode == 0 and st.stdout.count(" done ") == 3
    assert "outside forward/backward/optimizer" in st.stdout


def test_nan_loss_marks_the_cell_diverged_with_its_step_and_the_grid_goes_on(tiny_grid):
    # Adam at lr 1e30 blows the weights up after the first update: the next loss is NaN
    path = tiny_grid(name="div", rows="  - {name: blowup, set: {optimizer.name: adam, optimizer.lr: 1.0e+30}}\n"
                                      "  - {name: after, set: {overrides.norm: layer_norm}}\n")
    grid, (base, blowup, after) = load_cells(path)
    # two local workers: the cells train at the same time in their own processes
    out = subprocess.run(_harness("run", path, "--workers", "2", "--cells", blowup.cell_id, after.cell_id), env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr[-2000:]  # a cell diverged
    assert out.stderr.strip().splitlines()[-1] == f"grid div: 1 done; 1 diverged: {blowup.cell_id} blowup"
    assert f"cell {blowup.cell_id} blowup: diverged" in out.stderr
    store = ResultsStore(grid.spec.store)
    row = store.cell(blowup.cell_id)
    assert row["status"] == "diverged" and row["step"] == 2
    assert row["error"].startswith("diverged at step 2: loss is nan")
    assert store.cell(after.cell_id)["status"] == "done"
    assert store.cell(base.cell_id) is None  # not selected
    # a rerun leaves a diverged cell alone unless asked
    again = subprocess.run(_harness("run", path, "--cells", blowup.cell_id), env=ENV,
                           capture_output=True, text=True, timeout=120)
    assert f"skip {blowup.cell_id} blowup: diverged" in again.stderr
