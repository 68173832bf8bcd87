"""Fixtures shared by the harness tests: a tiny real Zipformer per objective."""
from __future__ import annotations

import pytest
import torch

#: Zipformer-S with one layer per stack and tiny dims (keeps each build well under a second)
TINY_OVERRIDES = dict(
    num_encoder_layers=(1,) * 6, encoder_dim=(32,) * 6, feedforward_dim=(32,) * 6,
    encoder_unmasked_dim=(16,) * 6, num_heads=(2,) * 6, vocab_size=20, decoder_dim=16,
    joiner_dim=16, attention_decoder_dim=16, attention_decoder_layers=1,
    attention_decoder_heads=2, attention_decoder_ff_dim=16,
)


@pytest.fixture(scope="module")
def tiny_model():
    """Factory: tiny_model(objective) -> AsrModel (cached per objective within a module)."""
    import variants

    cache: dict = {}

    def build(objective="transducer"):
        key = objective if isinstance(objective, str) else tuple(objective)
        if key not in cache:
            torch.manual_seed(0)
            cache[key] = variants.build_model("zipformer-s", objective=objective, **TINY_OVERRIDES)
        return cache[key]

    return build


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread (restored afterwards)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)
