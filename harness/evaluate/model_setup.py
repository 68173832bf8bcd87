"""A cell's model, loss and optimization from its config: what training, decoding and the
benchmarks build alike."""
from __future__ import annotations

from typing import Any

from torch import nn

from harness.config import Cell
from harness.losses import LossConfig, compute_loss
from variants import apply_overrides, model_from_spec
from variants.spec import ModelSpec
from variants.optim import build_optimizer, build_scheduler, default_scheduler_for


class LossModule(nn.Module):
    """Model + loss in one forward, so DistributedDataParallel sees the whole computation."""

    def __init__(self, model: nn.Module, loss_cfg: Any):
        super().__init__()
        self.model = model
        self.loss_cfg = loss_cfg

    def forward(self, feats, feat_lens, tokens, batch_count, utt_ids=None):
        return compute_loss(self.model, feats, feat_lens, tokens, batch_count, self.loss_cfg,
                            utt_ids=utt_ids)


def build_cell_model(cell: Cell, tokenizer: Any) -> nn.Module:
    """The cell's AsrModel (its spec, resolved when the cell was made) with its vocabulary
    taken from the tokenizer."""
    return build_asr_model(cell.spec, cell.config.objective, tokenizer)


def with_vocabulary(spec: ModelSpec, tokenizer: Any) -> ModelSpec:
    """``spec`` with the tokenizer's vocabulary size and blank id."""
    return apply_overrides(spec, {"heads.vocab_size": int(tokenizer.vocab_size),
                                  "heads.blank_id": int(tokenizer.blank_id)},
                           context="the tokenizer's vocabulary")


def build_asr_model(spec: ModelSpec, objective: Any, tokenizer: Any) -> nn.Module:
    """The AsrModel of ``spec`` for ``objective`` with its vocabulary taken from the tokenizer."""
    return model_from_spec(with_vocabulary(spec, tokenizer), objective)


def build_loss_config(cell: Cell) -> Any:
    """``harness.losses.LossConfig`` from the cell's ``loss`` section."""
    return LossConfig(**cell.config.loss)


def build_optimization(cell: Cell, model: nn.Module) -> tuple[Any, Any, str]:
    """Optimizer and LR scheduler from the cell's optimizer section (defaults: the spec's)."""
    opt_cfg = cell.config.optimizer
    name = opt_cfg.name or model.spec.optimizer
    optimizer = build_optimizer(name, model, lr=opt_cfg.lr, **opt_cfg.options)
    sched_name = opt_cfg.schedule or default_scheduler_for(name)
    scheduler = build_scheduler(sched_name, optimizer, **opt_cfg.schedule_options)
    return optimizer, scheduler, name
