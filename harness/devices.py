"""The device a cell trains, decodes or transcribes on (``train.device``, ``--device``)."""
from __future__ import annotations

import torch


def select_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: ``cuda:<local_rank>`` when a GPU is present, else CPU."""
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("train.device is 'cuda' but no CUDA GPU is visible")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")
