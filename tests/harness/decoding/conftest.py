"""Shared fixtures for the decoding tests: a tiny real Zipformer model per objective."""
from __future__ import annotations

import pytest
import torch

TINY_OVERRIDES = dict(
    num_encoder_layers=(1,) * 6, encoder_dim=(32,) * 6, feedforward_dim=(32,) * 6,
    encoder_unmasked_dim=(16,) * 6, num_heads=(2,) * 6, vocab_size=20, decoder_dim=16,
    joiner_dim=16, attention_decoder_dim=16, attention_decoder_layers=1,
    attention_decoder_heads=2, attention_decoder_ff_dim=16,
)


@pytest.fixture(scope="module")
def tiny_model():
    """Factory: tiny_model(objective) -> AsrModel in eval mode (cached per objective)."""
    import variants

    cache: dict = {}

    def build(objective="transducer"):
        key = objective if isinstance(objective, str) else tuple(objective)
        if key not in cache:
            torch.manual_seed(0)
            cache[key] = variants.build_model("zipformer-s", objective=objective, **TINY_OVERRIDES).eval()
        return cache[key]

    return build


@pytest.fixture(autouse=True)
def _one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)
