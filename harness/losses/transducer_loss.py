"""The pruned transducer objective of a model: simple loss, pruning, pruned loss."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .rnnt_backend import RnntBackend
from .rnnt_loss import make_boundary


def transducer_losses(model: nn.Module, enc: Tensor, enc_lens: Tensor, y: Tensor, y_lens: Tensor,
                      prune_range: int, lm_scale: float, am_scale: float,
                      backend: RnntBackend) -> tuple[Tensor, Tensor]:
    """(simple_loss, pruned_loss), each summed over the batch.

    Args:
      model: has ``decoder``, ``joiner``, ``simple_am_proj``, ``simple_lm_proj``, ``blank_id``.
      enc: encoder output (B, T, D); enc_lens: (B,) frames.
      y: (B, S) labels padded with blank; y_lens: (B,) label counts.

    The decoder sees the labels with blank prepended; the simple loss (additive
    joiner of the two linear projections, smoothed by ``lm_scale`` /
    ``am_scale``) gives the arc occupations that choose ``prune_range`` symbols
    per frame; the full joiner runs only on that slice. Losses are computed in
    float32 with autocast off, as in the authors' recipe.
    """
    blank = model.blank_id
    decoder_in = nn.functional.pad(y, (1, 0), value=blank)
    decoder_out = model.decoder(decoder_in)  # (B, S+1, decoder_dim)
    boundary = make_boundary(y_lens, enc_lens)
    lm = model.simple_lm_proj(decoder_out)
    am = model.simple_am_proj(enc)
    with torch.autocast(device_type=enc.device.type, enabled=False):
        simple_loss, (px_grad, py_grad) = backend.rnnt_loss_smoothed(
            lm=lm.float(), am=am.float(), symbols=y, termination_symbol=blank,
            lm_only_scale=lm_scale, am_only_scale=am_scale, boundary=boundary,
            reduction="sum", return_grad=True)
    ranges = backend.get_prune_ranges(px_grad, py_grad, boundary, prune_range)
    am_pruned, lm_pruned = backend.do_rnnt_pruning(
        am=model.joiner.encoder_proj(enc), lm=model.joiner.decoder_proj(decoder_out), ranges=ranges)
    logits = model.joiner(am_pruned, lm_pruned, project_input=False)  # (B, T, prune_range, V)
    with torch.autocast(device_type=enc.device.type, enabled=False):
        pruned_loss = backend.rnnt_loss_pruned(
            logits=logits.float(), symbols=y, ranges=ranges, termination_symbol=blank,
            boundary=boundary, reduction="sum")
    return simple_loss, pruned_loss
