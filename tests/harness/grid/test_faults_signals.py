"""Signals: SIGTERM / SIGINT stop a run at a step with a checkpoint, mark the cell interrupted,
print one line and exit 143 / 130; a rerun resumes from that checkpoint; a killed runner or data
preparation leaves no process behind and no lock held."""
import signal
import sys

import pytest
from support.faultkit import children, gone_within, harness, wait_for

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


def _wait_trained(root, cells, proc, past: dict | None = None) -> dict:
    """Wait until every cell's worker wrote progress past ``past`` (its step by cell id)."""
    import json

    def step(c):
        try:
            return json.loads((root / c.cell_id / "progress.json").read_text())["step"]
        except (OSError, ValueError, KeyError):
            return -1

    wait_for(lambda: all(step(c) > (past or {}).get(c.cell_id, 0) for c in cells), proc,
             "every worker's progress")
    return {c.cell_id: step(c) for c in cells}


# a checkpoint only when stopped (or at an epoch's end)
LONG = "epochs: 3, save_every_n: 1000, average_period: 1, log_interval: 1"


def test_workers_stop_once_with_a_checkpoint_on_sigterm_and_when_their_runner_is_killed(tiny_grid, tmp_path):
    import shlex

    from harness.evaluate import checkpoint

    path = tiny_grid(name="pool", train=LONG, rows="  - {name: other, set: {overrides.norm: layer_norm}}\n")
    path_text = open(path).read().replace("max_duration: 8", "max_duration: 4")
    open(path, "w").write(path_text)
    store, root = tmp_path / "elsewhere.sqlite", tmp_path / "elsewhere"
    args = ["run", path, "--store", str(store), "--run-root", str(root), "--set", "train.keep_last_k=5",
            "--workers", "2"]
    _, cells = load_cells(path)
    proc = harness(*args)
    _wait_trained(root, cells, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(120) == 143
    err = proc.stderr.read()
    line = _one_line(err)
    assert line.startswith("grid pool: interrupted by SIGTERM; 2 cell(s) not finished; rerun `"), line
    resume = line.split("`")[1]  # the command that resumes: the same store, run root and --set
    assert shlex.split(resume) == ["harness", *args], resume
    steps = {c.cell_id: ResultsStore(store, readonly=True).cell(c.cell_id)["step"] for c in cells}

    # the printed command resumes both; SIGKILL of that runner: its workers stop once, at a step,
    # with a checkpoint (the kernel's parent-death signal comes once per thread of the runner)
    proc = harness(*shlex.split(resume)[1:])
    _wait_trained(root, cells, proc, past=steps)
    workers = children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert gone_within(workers, 60) == set()
    err = proc.stderr.read()
    assert "Traceback" not in err and "second signal" not in err, err[-3000:]
    assert err.count("its runner died") == 2, err[-3000:]
    for c in cells:
        row = ResultsStore(store, readonly=True).cell(c.cell_id)
        assert row["status"] == "interrupted" and row["step"] > steps[c.cell_id], row
        assert row["error"].endswith(".pt written"), row["error"]
        _, saved = checkpoint.latest_valid(root / c.cell_id / "checkpoints")
        assert saved["step"] == row["step"]  # nothing trained is lost
        lock = FileLock(root / c.cell_id / ".lock")
        assert lock.acquire(wait=False)  # and no lock is left held
        lock.release()


WRITER = """
import sys, time
from harness.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as f:
        f.write(b"half a file")
        f.flush()
        print("writing", flush=True)
        time.sleep(120)
"""


def _writer(target):
    """A process writing ``target`` the harness's way (temporary name, then rename), stopped halfway."""
    import subprocess

    p = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    return p


def test_temporary_files_of_writers_killed_mid_write_are_removed_later(tiny_grid, tmp_path):
    """A SIGKILL while a checkpoint or a synthetic FLAC is written leaves a `.tmp-*` file; the next
    run of the cell (or synthesis of the corpus) removes it, and leaves a live writer's alone."""
    from harness.data.synthetic.corpus import SPLITS, synthesize
    from harness.train.cell_runner import run_cell

    path = tiny_grid(name="tmp")
    grid, (cell,) = load_cells(path)
    ckpts = grid.run_root / cell.cell_id / "checkpoints"
    flac = tmp_path / "audio" / "train" / "19" / "198" / "19-198-0001.flac"
    killed = [_writer(ckpts / "checkpoint-3.pt"), _writer(flac)]
    live = _writer(ckpts / "epoch-1.pt")
    try:
        for p in killed:
            p.send_signal(signal.SIGKILL)
            p.wait()
        left = {p.name.split("-", 3)[-1]: p for p in [*ckpts.glob(".tmp-*"), *flac.parent.glob(".tmp-*")]}
        assert sorted(left) == ["19-198-0001.flac", "checkpoint-3.pt", "epoch-1.pt"]
        ResultsStore(grid.store_path).set_cell(cell.cell_id, status="done")  # the run only cleans up
        assert run_cell(cell, grid.store_path, grid.run_root) == "done"
        assert [p.name.split("-", 3)[-1] for p in ckpts.glob(".tmp-*")] == ["epoch-1.pt"]  # the live one
        synthesize({s: [] for s in SPLITS}, tmp_path / "audio", {s: s for s in SPLITS})
        assert not list(flac.parent.glob(".tmp-*"))
    finally:
        live.kill()
        live.wait()


def test_the_parent_death_signal_is_one_stop_request_however_often_it_comes():
    """The kernel sends a worker's parent-death signal once per exiting thread of its runner:
    taken once, it asks for a stop at the next step (a second SIGTERM would stop at once)."""
    import os

    from harness.grid.executors import RUNNER_DIED
    from harness.train import interrupt

    previous = signal.getsignal(RUNNER_DIED)
    try:
        with interrupt.handling():
            interrupt.stop_once_on(RUNNER_DIED, "runner died")
            with pytest.raises(interrupt.Interrupted) as stopped:
                with interrupt.deferred():
                    for _ in range(3):
                        os.kill(os.getpid(), RUNNER_DIED)
                    assert interrupt.requested() == signal.SIGTERM  # still running: stops at a step
        assert stopped.value.signum == signal.SIGTERM and not stopped.value.at_once
    finally:
        signal.signal(RUNNER_DIED, previous)
