"""The training objective of a model: any combination of the transducer, CTC and
attention-decoder heads, weighted as the authors weight them."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from .attention_loss import attention_decoder_loss
from .config import LossConfig
from .ctc_loss import ctc_loss
from .errors import (LossInputError, check_ctc_lengths, check_frames, check_transcripts,
                     utterance_names)
from .rnnt_backend import resolve_rnnt_backend
from .transducer_loss import transducer_losses


def pad_labels(tokens: Sequence[Sequence[int]], pad_value: int,
               device: torch.device | str) -> tuple[Tensor, Tensor]:
    """(B, S_max) int64 labels padded with ``pad_value`` and their (B,) lengths."""
    lens = torch.tensor([len(t) for t in tokens], dtype=torch.int64)
    y = torch.full((len(tokens), int(lens.max()) if len(tokens) else 0), pad_value, dtype=torch.int64)
    for i, seq in enumerate(tokens):
        y[i, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.int64)
    return y.to(device), lens.to(device)


def reserved_ids(model: nn.Module) -> dict[int, str]:
    """Ids that may not appear in a transcript: blank, and <sos/eos> with an attention decoder."""
    reserved = {int(model.blank_id): "blank"}
    if "attention" in model.head_names:
        reserved.setdefault(int(model.attention_decoder.eos_id), "<sos/eos>")
    return reserved


def compute_loss(model: nn.Module, feats: Tensor, feat_lens: Tensor, tokens: Sequence[Sequence[int]],
                 batch_count: float, cfg: LossConfig | None = None,
                 utt_ids: Sequence[str] | None = None) -> tuple[Tensor, dict[str, Any]]:
    """Total loss of a batch (summed over utterances, as the authors do) and an info dict.

    Args:
      model: an ``AsrModel`` (``head_names`` any of transducer, ctc, attention).
      feats: (B, T, 80) fbank; feat_lens: (B,) valid frames.
      tokens: B label-id lists (no blank; no <sos/eos> when the model has an
        attention decoder).
      batch_count: training batches so far (drives the simple/pruned warm-up).
      cfg: :class:`LossConfig` (defaults: the authors').
      utt_ids: names used in error messages.

    Returns ``(loss, info)``; ``info`` has the unweighted per-head sums
    ("simple_loss", "pruned_loss", "ctc_loss", "attention_loss" for the heads
    the model has), "loss", "frames" (encoder frames), "utterances" and
    "rnnt_backend" ("torch", "triton", "k2", or None without a transducer head).
    Raises :class:`LossInputError` naming the utterance for an empty
    transcript, an out-of-vocabulary or reserved id, too few frames, or a
    transcript too long for CTC.
    """
    cfg = cfg or LossConfig()
    heads = tuple(model.head_names)
    scales = cfg.head_scales(heads)
    B = len(tokens)
    if B == 0:
        raise LossInputError("empty batch: no transcripts given")
    if feats.ndim != 3 or feats.shape[0] != B or tuple(feat_lens.shape) != (B,):
        raise LossInputError(f"feats {tuple(feats.shape)} and feat_lens {tuple(feat_lens.shape)} do not "
                             f"match {B} transcripts; expected (B, T, F) and (B,)")
    names = utterance_names(utt_ids, B)
    check_transcripts(tokens, names, model.vocab_size, reserved_ids(model))

    enc, enc_lens = model.forward_encoder(feats, feat_lens)
    frames = [int(n) for n in enc_lens.tolist()]
    check_frames(frames, names)
    if "ctc" in heads:
        check_ctc_lengths(tokens, frames, names)
    y, y_lens = pad_labels(tokens, model.blank_id, enc.device)

    total = enc.new_zeros((), dtype=torch.float32)
    info: dict[str, Any] = {"frames": sum(frames), "utterances": B, "rnnt_backend": None}
    if "transducer" in heads:
        backend = resolve_rnnt_backend(cfg.rnnt_backend, enc.device)
        simple, pruned = transducer_losses(model, enc, enc_lens, y, y_lens, cfg.prune_range,
                                           cfg.lm_scale, cfg.am_scale, backend)
        simple_scale, pruned_scale = cfg.transducer_scales(batch_count)
        total = total + simple_scale * simple + pruned_scale * pruned
        info.update(simple_loss=float(simple.detach()), pruned_loss=float(pruned.detach()), rnnt_backend=backend.name)
    if "ctc" in heads:
        loss = ctc_loss(model.ctc_output(enc), enc_lens, y, y_lens, model.blank_id)
        total = total + scales["ctc"] * loss
        info["ctc_loss"] = float(loss.detach())
    if "attention" in heads:
        loss = attention_decoder_loss(model.attention_decoder, enc, enc_lens, tokens, cfg.label_smoothing)
        total = total + scales["attention"] * loss
        info["attention_loss"] = float(loss.detach())
    info["loss"] = float(total.detach())
    return total, info
