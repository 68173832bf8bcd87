"""The validation loss per frame, and the frames a loss was summed over."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harness.data import batch_cut_ids, batch_lengths, batch_texts

from . import distributed
from .distributed import DistInfo
from .precision import Precision


@torch.no_grad()
def validation_loss(module: nn.Module, valid_dl: Any, batches: int, tokenizer: Any, precision: Precision,
                    device: torch.device, dist: DistInfo) -> float:
    """Validation loss per frame (summed over ranks); ``batches`` drives the model's schedules."""
    # the bare module: DDP's forward would need every rank to run the same number of batches
    module = module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module
    module.eval()
    total, frames = 0.0, 0.0
    for batch in valid_dl:
        feats = batch["inputs"].to(device)
        feat_lens = batch_lengths(batch).to(device)
        tokens = tokenizer.encode(batch_texts(batch))
        with precision.context():
            loss, info = module(feats, feat_lens, tokens, float(batches), batch_cut_ids(batch))
        total += float(loss)
        frames += float(loss_frames(info, feat_lens))
    total, frames = distributed.all_reduce_sum([total, frames], dist, device)
    module.train()
    return total / frames if frames else float("nan")


def loss_frames(info: Any, feat_lens: torch.Tensor) -> float:
    """Frames the loss was summed over (the loss's own count if it reports one)."""
    if isinstance(info, dict):
        for key in ("frames", "num_frames"):
            if key in info:
                return float(info[key])
    return float(feat_lens.sum())
