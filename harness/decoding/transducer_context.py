"""Decoder-context helpers shared by the transducer searches."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


def initial_context(model: nn.Module) -> tuple[int, ...]:
    """The history before any label: ``context_size - 1`` padding ids (-1) then blank.

    The decoder embeds negative ids to zero, which is exactly the left padding
    it sees in training (``need_pad=True``), so the first decoding step matches
    the first training position.
    """
    return (-1,) * (model.decoder.context_size - 1) + (model.blank_id,)


def projected_decoder_out(model: nn.Module, histories: Sequence[Sequence[int]],
                          device: torch.device) -> Tensor:
    """Joiner-projected decoder outputs (N, 1, joiner_dim) for the last tokens of each history."""
    c = model.decoder.context_size
    contexts = torch.tensor([list(h[-c:]) for h in histories], dtype=torch.int64, device=device)
    return model.joiner.decoder_proj(model.decoder(contexts, need_pad=False))
