"""train.recompute reaches the modules' switch for the whole training run, and is not part of the cell id."""
from __future__ import annotations

from harness.config.cell_id import NON_SEMANTIC
from harness.train import trainer as trainer_mod
from variants.components import lean_autograd


def test_recompute_switch_is_set_for_the_run_and_restored(monkeypatch):
    seen = []

    class Cfg:
        class train:
            recompute = False

    fake = trainer_mod.Trainer.__new__(trainer_mod.Trainer)
    fake.cfg = Cfg
    monkeypatch.setattr(trainer_mod.Trainer, "_run", lambda self: seen.append(
        lean_autograd.recompute_enabled()) or "done")
    assert lean_autograd.recompute_enabled()
    assert trainer_mod.Trainer.run(fake) == "done"
    Cfg.train.recompute = True
    trainer_mod.Trainer.run(fake)
    assert seen == [False, True] and lean_autograd.recompute_enabled()


def test_recompute_keeps_the_cell_id():
    assert "recompute" in NON_SEMANTIC["train"]
