"""Signals: SIGTERM / SIGINT stop a run at a step with a checkpoint, mark the cell interrupted,
print one line and exit 143 / 130; a rerun resumes from that checkpoint; a killed runner or data
preparation leaves no process behind and no lock held."""
import signal
import sys

import pytest
from faultkit import children, gone_within, harness, wait_for

from harness.grid.cells import load_cells
from harness.locks import FileLock
from harness.store import ResultsStore

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and prctl")

TRAIN = "epochs: 2, save_every_n: 1, average_period: 1"


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    return err.strip().splitlines()[-1]


def test_sigterm_then_sigint_checkpoint_mark_interrupted_and_resume(tiny_grid):
    path = tiny_grid(name="sig", train=TRAIN)
    grid, (cell,) = load_cells(path)
    ckpts = grid.run_root / cell.cell_id / "checkpoints"
    proc = harness("run", path)
    wait_for(lambda: (ckpts / "checkpoint-1.pt").exists(), proc, "the first checkpoint")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(120) == 143
    line = _one_line(proc.stderr.read())
    row = ResultsStore(grid.store_path, readonly=True).cell(cell.cell_id)
    assert row["status"] == "interrupted" and row["step"] >= 1
    step = row["step"]
    assert (ckpts / f"checkpoint-{step}.pt").exists()  # nothing trained is lost
    assert line == (f"grid sig: interrupted by SIGTERM at step {step}, checkpoint-{step}.pt written; "
                    f"1 cell(s) not finished; rerun `harness run {path}` to resume")
    # the rerun resumes from it; Ctrl-C there stops at the next step the same way
    proc = harness("run", path)
    wait_for(lambda: (ckpts / f"checkpoint-{step + 1}.pt").exists(), proc, "a step after the resume")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(120) == 130
    assert "interrupted by SIGINT at step" in _one_line(proc.stderr.read())
    log = (grid.run_root / cell.cell_id / "log" / "train-rank0.log").read_text()
    assert f"resumed from checkpoint-{step}.pt: step {step}" in log
    row = ResultsStore(grid.store_path, readonly=True).cell(cell.cell_id)
    assert row["status"] == "interrupted" and row["step"] > step
    assert (ckpts / f"checkpoint-{row['step']}.pt").exists()


def test_sigkill_of_the_runner_takes_its_workers_along_and_they_checkpoint(tiny_grid):
    path = tiny_grid(name="orphans", train=TRAIN,
                     rows="  - {name: other, set: {overrides.norm: layer_norm}}\n")
    grid, cells = load_cells(path)
    proc = harness("run", path, "--workers", "2")
    first = [grid.run_root / c.cell_id / "checkpoints" / "checkpoint-1.pt" for c in cells]
    wait_for(lambda: any(p.exists() for p in first), proc, "a worker's first checkpoint")
    workers = children(proc.pid)
    assert workers
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert gone_within(workers, 60) == set()  # none outlives its runner
    store = ResultsStore(grid.store_path, readonly=True)
    for c in cells:  # each got SIGTERM from the kernel: it checkpointed and said so
        row = store.cell(c.cell_id)
        assert row["status"] in ("interrupted", "pending", "done"), row
        if row["status"] == "interrupted" and row["step"]:  # (no step: stopped before its first)
            assert (grid.run_root / c.cell_id / "checkpoints" / f"checkpoint-{row['step']}.pt").exists()
        lock = FileLock(grid.run_root / c.cell_id / ".lock")
        assert not (grid.run_root / c.cell_id).exists() or lock.acquire(wait=False)
        lock.release()
    assert any(store.cell(c.cell_id)["status"] == "interrupted" for c in cells)


def test_sigkill_during_data_preparation_leaves_no_worker_and_no_lock(tmp_path, tiny_corpus):
    out = tmp_path / "corpus"
    proc = harness("data", "prepare", "--corpus", "synthetic", "--tier", "tiny", "--num-jobs", "2",
                   "--out", str(out), "--quiet")
    wait_for(lambda: len(children(proc.pid)) >= 2, proc, "the preparation's worker pool")
    workers = children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert gone_within(workers, 30) == set()


def test_a_stale_lock_held_by_an_orphan_of_a_dead_runner_is_taken_over(tmp_path, capsys):
    import fcntl
    import os
    import socket
    import subprocess

    path = tmp_path / ".lock"
    with open(path, "w") as f:  # a runner that died while a child kept the lock's descriptor
        fcntl.flock(f, fcntl.LOCK_EX)
        orphan = subprocess.Popen(["sleep", "60"], pass_fds=[f.fileno()])
        dead = subprocess.Popen(["true"])
        dead.wait()
        f.write(f"{dead.pid}@{socket.gethostname()}\n")
    try:
        lock = FileLock(path, warn=lambda m: print(m, file=sys.stderr))
        assert lock.acquire(wait=False)
        assert f"held although its holder {dead.pid}@" in capsys.readouterr().err
        assert lock.holder() == f"{os.getpid()}@{socket.gethostname()}"
        # a live holder is respected
        assert not FileLock(path).acquire(wait=False)
        lock.release()
    finally:
        orphan.kill()
        orphan.wait()


def test_forked_children_do_not_keep_a_lock(tmp_path):
    import os

    lock = FileLock(tmp_path / ".lock")
    assert lock.acquire(wait=False)
    pid = os.fork()
    if pid == 0:  # the child: its copy of the descriptor was closed at fork
        import time

        time.sleep(3)
        os._exit(0)
    try:
        lock.release()
        other = FileLock(tmp_path / ".lock")
        assert other.acquire(wait=False)  # the live child does not hold it
        other.release()
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
