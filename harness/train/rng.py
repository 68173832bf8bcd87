"""Seeding and the random generators' states a checkpoint keeps, so a resumed run draws
what an uninterrupted one would (SpecAugment, dropout, layer skip)."""
from __future__ import annotations

import random
from typing import Any

import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass


def rng_states(device: torch.device) -> dict[str, Any]:
    """Every random generator a step draws from (SpecAugment, dropout, layer skip)."""
    import numpy as np

    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def set_rng_states(states: dict[str, Any], device: torch.device) -> None:
    import numpy as np

    torch.set_rng_state(states["torch"])
    if states.get("python") is not None:
        random.setstate(states["python"])
    if states.get("numpy") is not None:
        np.random.set_state(states["numpy"])
    if states.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)
