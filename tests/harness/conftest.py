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


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread (restored afterwards)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)
