"""The padding mask every encoder and head uses: which frames of a padded batch are padding."""
from __future__ import annotations

import torch


def padding_mask(lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B,) lengths -> (B, num_frames) bool, True at padded frames (t >= length)."""
    return torch.arange(num_frames, device=lengths.device).unsqueeze(0) >= lengths.unsqueeze(1)
