"""Fixtures shared by the harness tests: the registered ``zipformer-tiny`` per objective."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def tiny_model():
    """Factory: tiny_model(objective) -> AsrModel (cached per objective within a module)."""
    import variants

    cache: dict = {}

    def build(objective="transducer"):
        key = objective if isinstance(objective, str) else tuple(objective)
        if key not in cache:
            torch.manual_seed(0)
            cache[key] = variants.build_model("zipformer-tiny", objective=objective)
        return cache[key]

    return build
