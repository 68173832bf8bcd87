"""Attention-decoder (AED) loss: label-smoothed cross entropy with teacher forcing."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn


def attention_decoder_loss(attention_decoder: nn.Module, enc: Tensor, enc_lens: Tensor,
                           tokens: Sequence[Sequence[int]], label_smoothing: float = 0.1) -> Tensor:
    """Summed loss of predicting ``[y..., eos]`` from ``[sos, y...]`` and the encoder output.

    Label smoothing spreads ``label_smoothing`` of each target's mass evenly over
    the vocabulary (the authors' LabelSmoothingLoss, equal to torch's
    ``cross_entropy(label_smoothing=...)``); padded targets are ignored.
    """
    tokens_in, tokens_in_lens, targets = attention_decoder.make_inputs_and_targets(tokens, device=enc.device)
    logits = attention_decoder(enc, enc_lens, tokens_in, tokens_in_lens)  # (B, U, V)
    return nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1),
        ignore_index=attention_decoder.ignore_id, label_smoothing=label_smoothing, reduction="sum")
