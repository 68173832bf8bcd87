"""Zipformer-S encoder speed on this machine (pytest-benchmark; no target asserted
here: the paper's Figure 3 timings are ``harness bench``'s job).

    python3 -m pytest benchmarks/test_zipformer_speed.py --benchmark-enable
"""
from __future__ import annotations

import pytest
import torch

from variants import get_spec
from variants.encoders.zipformer import build


@pytest.fixture(scope="module")
def zipformer_s():
    torch.manual_seed(0)
    embed, enc = build(get_spec("zipformer-s").encoder)
    return embed, enc


def test_zipformer_s_inference_10s(benchmark, zipformer_s):
    embed, enc = (m.eval() for m in zipformer_s)
    x, lens = torch.randn(1, 1000, 80), torch.tensor([1000])

    def run():
        with torch.inference_mode():
            return enc(*embed(x, lens))

    out, out_lens = benchmark(run)
    assert out.shape == (1, ((1000 - 7) // 2 + 1) // 2, 256) and out_lens.item() == out.shape[1]


def test_zipformer_s_train_step_4x5s(benchmark, zipformer_s):
    embed, enc = (m.train() for m in zipformer_s)
    x, lens = torch.randn(4, 500, 80), torch.tensor([500, 480, 450, 300])

    def step():
        out, _ = enc(*embed(x, lens))
        out.pow(2).mean().backward()
        return out

    out = benchmark(step)
    assert torch.isfinite(out).all()
