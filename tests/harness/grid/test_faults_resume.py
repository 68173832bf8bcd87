"""Exact resume: a run restarted from any of its checkpoints repeats the uninterrupted run's
losses bit for bit (CPU, one thread, no data workers), with every default switch of the variant
on (Balancer, Whitener, Bypass, ...): everything a step depends on is in the checkpoint, the
Whiteners' probabilities, which their backward pass changes, included.
"""
import shutil
from pathlib import Path

from harness.grid.cells import load_cells
from harness.store import ResultsStore
from harness.evaluate import checkpoint
from harness.train.cell_runner import run_cell

# 10 cuts in 8 s batches: 2 optimizer steps an epoch, a checkpoint after each
TRAIN = "epochs: 2, save_every_n: 1, keep_last_k: 20, keep_optimizer_k: 20, average_period: 1"


def _epochs(store_path: Path, cell_id: str) -> dict[int, tuple]:
    rows = ResultsStore(store_path, readonly=True).rows("epochs", cell_id=cell_id)
    return {r["epoch"]: (r["step"], r["train_loss"], r["valid_loss"]) for r in rows}


def test_resume_from_any_checkpoint_repeats_the_uninterrupted_losses(tiny_grid, tmp_path, one_thread):
    path = tiny_grid(name="exact", train=TRAIN)
    grid, (cell,) = load_cells(path)
    assert not cell.config.overrides  # the variant's defaults: every switch on
    from variants import get_spec

    switches = get_spec(cell.config.variant).encoder
    assert all(getattr(switches, s) for s in ("balancer", "whitener", "bypass", "nla",
                                               "share_attention_weights")), switches
    assert run_cell(cell, grid.store_path, grid.run_root) == "done"
    reference = _epochs(grid.store_path, cell.cell_id)
    ckpts = grid.run_root / cell.cell_id / "checkpoints"
    steps = sorted(int(p.stem.split("-")[1]) for p in ckpts.glob("checkpoint-*.pt"))
    per_epoch = reference[1][0]
    assert per_epoch >= 2 and steps[-1] == reference[2][0]
    # mid first epoch, and mid second epoch (its train loss must cover the steps before too)
    for k in (1, per_epoch + 1):
        root = tmp_path / f"resume-{k}"
        (root / cell.cell_id / "checkpoints").mkdir(parents=True)
        shutil.copy(checkpoint.step_path(ckpts, k), root / cell.cell_id / "checkpoints")
        store = tmp_path / f"resume-{k}.sqlite"
        assert run_cell(cell, store, root) == "done"
        log = (root / cell.cell_id / "log" / "train-rank0.log").read_text()
        assert f"resumed from checkpoint-{k}.pt: step {k}" in log
        resumed = _epochs(store, cell.cell_id)
        for epoch, (step, train_loss, valid_loss) in resumed.items():
            ref_step, ref_train, ref_valid = reference[epoch]
            assert step == ref_step
            assert (train_loss, valid_loss) == (ref_train, ref_valid), (k, epoch)
        assert sorted(resumed) == [e for e in (1, 2) if e >= (1 if k <= per_epoch else 2)]
