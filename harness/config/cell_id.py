"""A cell's stable id: a hash of what changes its trained weights.

The grid gives each expanded cell this id; the results store's migrations use it to
move the rows of a store written under an older id rule (``harness.store.migrations``).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from variants.spec import ModelSpec

from .schema import CellConfig

#: keys that do not change a cell's trained weights, left out of its id (the ``decode``
#: section and ``data.test_sets`` are decoding settings: they make the decode key)
NON_SEMANTIC = {"train": {"log_interval", "oom_check", "max_minutes", "keep_last_k",
                          "keep_optimizer_k", "recompute"},
                "data": {"num_workers", "test_sets"}}
NOT_TRAINING_SECTIONS = ("decode",)
#: spec fields that are labels, not model structure
SPEC_LABELS = {"description", "paper_params_m", "paper_gflops"}


def cell_id(config: CellConfig, spec: ModelSpec) -> str:
    """12 hex digits of SHA-256 over the cell's training config and the model spec it resolves to.

    The decoding settings are left out (see :data:`NON_SEMANTIC`), so changing
    ``decode.avg`` or a beam keeps the id and decodes the saved checkpoints again.

    Values left at their schema defaults are left out of the hash, so adding a
    field with a default (the schema growing) keeps every existing id; any value
    that differs from a default, in the grid or in a variant preset, changes it.
    The store keeps the fully resolved config and the code version beside the id.
    """
    cfg = config.model_dump(mode="json", exclude_defaults=True)
    for section in NOT_TRAINING_SECTIONS:
        cfg.pop(section, None)
    for section, keys in NON_SEMANTIC.items():
        for k in keys:
            cfg.get(section, {}).pop(k, None)
    return config_hash(cfg, spec)


def config_hash(cfg: dict[str, Any], spec: ModelSpec) -> str:
    """12 hex digits of SHA-256 over a config (as dumped, defaults left out) and a spec's structure."""
    model = {k: v for k, v in spec.model_dump(mode="json", exclude_defaults=True).items()
             if k not in SPEC_LABELS}
    blob = json.dumps({"config": cfg, "model": model}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
