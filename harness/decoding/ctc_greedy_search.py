"""CTC greedy search: best token per frame, repeats merged, blanks removed."""
from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def ctc_greedy_search(log_probs: Tensor, lens: Tensor, blank_id: int) -> list[list[int]]:
    """log_probs (B, T, V) and valid lengths (B,) -> label sequences."""
    best = log_probs.argmax(dim=-1)  # (B, T)
    out = []
    for b, n in enumerate(lens.tolist()):
        path = torch.unique_consecutive(best[b, :n])
        out.append([int(x) for x in path.tolist() if x != blank_id])
    return out
