"""CTC loss of a model's CTC head (torch's ctc_loss, summed over utterances)."""
from __future__ import annotations

import torch
from torch import Tensor


def ctc_loss(log_probs: Tensor, log_prob_lens: Tensor, y: Tensor, y_lens: Tensor, blank_id: int) -> Tensor:
    """Summed CTC loss.

    Args:
      log_probs: (B, T, V) log-probabilities (the CTC head's output).
      log_prob_lens: (B,) valid frames.
      y: (B, S) padded labels; y_lens: (B,) label counts.
    """
    targets = torch.cat([y[i, : int(n)] for i, n in enumerate(y_lens.tolist())])
    return torch.nn.functional.ctc_loss(
        log_probs=log_probs.transpose(0, 1).float(),
        targets=targets.cpu(), input_lengths=log_prob_lens.cpu(), target_lengths=y_lens.cpu(),
        blank=blank_id, reduction="sum", zero_infinity=False)
