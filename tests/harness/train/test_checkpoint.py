import os

import torch

from harness.evaluate import checkpoint


def _state(step: int) -> dict:
    return {"model": {"w": torch.full((2,), float(step))}, "step": step,
            "optimizer": {"state": {0: {"exp_avg": torch.zeros(1000)}}}}


def test_atomic_save_leaves_no_temporary_files(tmp_path):
    checkpoint.atomic_save(_state(3), tmp_path / "checkpoint-3.pt")
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-3.pt"]
    assert checkpoint.load(tmp_path / "checkpoint-3.pt")["step"] == 3


def test_latest_valid_skips_truncated_and_foreign_files(tmp_path):
    checkpoint.atomic_save(_state(4), tmp_path / "checkpoint-4.pt")
    checkpoint.atomic_save(_state(8), tmp_path / "epoch-1.pt")
    good = (tmp_path / "epoch-1.pt").read_bytes()
    # a newer file cut short, as a crash during a non-atomic write would leave it
    (tmp_path / "checkpoint-12.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "notes.pt").write_bytes(b"x")
    path, state = checkpoint.latest_valid(tmp_path)
    assert path.name == "epoch-1.pt" and state["step"] == 8


def test_latest_valid_none_and_epoch_listing(tmp_path):
    assert checkpoint.latest_valid(tmp_path / "missing") is None
    assert checkpoint.latest_valid(tmp_path) is None
    for e in (1, 2):
        checkpoint.atomic_save(_state(e), checkpoint.epoch_path(tmp_path, e))
    assert sorted(checkpoint.epoch_checkpoints(tmp_path)) == [1, 2]


def test_prune_keeps_newest_step_checkpoints_and_all_epochs(tmp_path):
    for s in (2, 4, 6, 8):
        checkpoint.atomic_save(_state(s), checkpoint.step_path(tmp_path, s))
    checkpoint.atomic_save(_state(8), checkpoint.epoch_path(tmp_path, 1))
    checkpoint.prune_step_checkpoints(tmp_path, keep_last_k=2)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-6.pt", "checkpoint-8.pt", "epoch-1.pt"]


def test_retain_bounds_step_checkpoints_and_keeps_optimizer_state_only_in_the_newest(tmp_path):
    for i, s in enumerate((2, 4, 6, 8)):
        checkpoint.atomic_save(_state(s), checkpoint.step_path(tmp_path, s))
        os.utime(checkpoint.step_path(tmp_path, s), ns=(10**18 + i * 10**9,) * 2)
    checkpoint.atomic_save(_state(5), checkpoint.epoch_path(tmp_path, 1))
    os.utime(checkpoint.epoch_path(tmp_path, 1), ns=(10**18 + int(1.5 * 10**9),) * 2)
    big = checkpoint.disk_use(tmp_path)
    times = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    checkpoint.retain(tmp_path, keep_last_k=3, keep_optimizer_k=2)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-4.pt", "checkpoint-6.pt", "checkpoint-8.pt",
                                            "epoch-1.pt"]
    has_opt = {p.name: checkpoint.load(p)["optimizer"] is not None for p in tmp_path.iterdir()}
    assert has_opt == {"checkpoint-8.pt": True, "checkpoint-6.pt": True, "checkpoint-4.pt": False,
                       "epoch-1.pt": False}
    # the stripped files keep their weights and their place in the newest-first order
    assert checkpoint.load(tmp_path / "epoch-1.pt")["model"]["w"].tolist() == [5.0, 5.0]
    assert all(p.stat().st_mtime_ns == times[p.name] for p in tmp_path.iterdir())
    assert checkpoint.disk_use(tmp_path) < big
    # resuming never picks a checkpoint without the optimizer state
    (tmp_path / "checkpoint-8.pt").write_bytes(b"cut")
    (tmp_path / "checkpoint-6.pt").unlink()
    assert checkpoint.latest_valid(tmp_path) is None
