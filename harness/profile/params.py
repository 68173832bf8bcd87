"""Parameter counts per part and per objective, without allocating weights.

The model is built once per variant with every head (transducer, CTC and
attention decoder) on PyTorch's ``meta`` device, so even the 24 M-parameter
attention decoder costs no memory or initialisation time. The total of an
objective is the sum of the parts its heads use; parts shared by objectives
(Conv-Embed, encoder, CTC output) are counted once.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch

from variants.spec import OBJECTIVE_HEADS

#: parts of :meth:`variants.model.AsrModel.param_counts`, in the order of the authors' per-part parameter table
PARTS: tuple[str, ...] = ("encoder_embed", "encoder", "decoder", "joiner", "simple_proj",
                          "ctc_output", "attention_decoder")
#: parts every objective has
ENCODER_PARTS: tuple[str, ...] = ("encoder_embed", "encoder")
#: parts each head adds (heads as in ``variants.spec.OBJECTIVE_HEADS``)
HEAD_PARTS: dict[str, tuple[str, ...]] = {
    "transducer": ("decoder", "joiner", "simple_proj"),
    "ctc": ("ctc_output",),
    "attention": ("attention_decoder",),
}
ALL_HEADS: tuple[str, ...] = ("transducer", "ctc", "attention")


def check_objectives(objectives: Iterable[str]) -> tuple[str, ...]:
    """Validate objective names; raise a ValueError naming the bad ones."""
    objs = tuple(objectives)
    bad = [o for o in objs if o not in OBJECTIVE_HEADS]
    if bad or not objs:
        raise ValueError(f"unknown objective(s) {bad or objs!r}; allowed: {', '.join(OBJECTIVE_HEADS)}")
    return objs


def objective_parts(objective: str) -> tuple[str, ...]:
    """The parts a model trained with ``objective`` has."""
    check_objectives([objective])
    parts = list(ENCODER_PARTS)
    for head in OBJECTIVE_HEADS[objective]:
        parts += HEAD_PARTS[head]
    return tuple(parts)


def count_parts(variant: str, overrides: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Parameters per part of ``variant`` with all heads, built on the meta device.

    Raises a RuntimeError if the parts do not add up to the model's total (a
    parameter outside every named part would make the objective totals wrong).
    """
    from variants import build_model

    with torch.device("meta"):
        model = build_model(variant, objective=ALL_HEADS, **dict(overrides or {}))
    counts = model.param_counts()
    parts = {p: int(counts[p]) for p in PARTS}
    if sum(parts.values()) != counts["total"]:
        raise RuntimeError(
            f"{variant}: parts add up to {sum(parts.values())} but the model has "
            f"{counts['total']} parameters; some parameters belong to no part of {PARTS}")
    return parts


def objective_total(parts: Mapping[str, int], objective: str) -> int:
    """Total parameters of the model trained with ``objective``."""
    return sum(int(parts[p]) for p in objective_parts(objective))


def objective_part_counts(parts: Mapping[str, int], objective: str) -> dict[str, int]:
    """All parts, zero for those the objective's model does not have."""
    used = set(objective_parts(objective))
    return {p: (int(parts[p]) if p in used else 0) for p in PARTS}
