"""Component speed on this machine (pytest-benchmark): BiasNorm vs LayerNorm,
SwooshR/SwooshL vs Swish, a Zipformer block with and without attention-weight
sharing, and the Zipformer-M vs Conformer-M encoders. No speed target is
asserted (timings depend on the machine); each test checks its output so a
broken component cannot be "fast".

    python3 -m pytest benchmarks/test_components.py --benchmark-enable
    python3 -m pytest benchmarks/test_components.py --benchmark-enable --benchmark-group-by=group

Inputs are small so the file runs in about a minute on one CPU core; the
paper's protocol (30 utterances x 30 s on a GPU) is ``harness bench``'s job.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from variants.components.bias_norm import BiasNorm
from variants.components.rel_pos_encoding import RelPositionalEncoding
from variants.components.swoosh import Swish, SwooshL, SwooshR
from variants.components.zipformer_block import BlockSwitches, ZipformerBlock

torch.set_num_threads(1)

#: (batch, frames, channels) of a Zipformer-M middle stack for ~10 s at 12.5 Hz
NORM_SHAPE = (4, 250, 512)


@pytest.fixture(scope="module")
def x_norm() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(*NORM_SHAPE)


@pytest.mark.benchmark(group="norm")
@pytest.mark.parametrize("norm", ["bias_norm", "layer_norm"])
def test_norm(benchmark, x_norm, norm):
    mod = BiasNorm(NORM_SHAPE[-1]) if norm == "bias_norm" else nn.LayerNorm(NORM_SHAPE[-1])
    mod.eval()
    with torch.inference_mode():
        y = benchmark(mod, x_norm)
    assert y.shape == x_norm.shape and torch.isfinite(y).all()
    if norm == "bias_norm":  # y = x / RMS[x - b] * exp(gamma)  (paper eq. 2)
        with torch.no_grad():
            rms = ((x_norm - mod.bias) ** 2).mean(-1, keepdim=True).sqrt()
            torch.testing.assert_close(y * rms / mod.log_scale.exp(), x_norm)


@pytest.mark.benchmark(group="activation")
@pytest.mark.parametrize("cls", [SwooshR, SwooshL, Swish], ids=lambda c: c.__name__)
def test_activation(benchmark, x_norm, cls):
    mod = cls()
    with torch.inference_mode():
        y = benchmark(mod, x_norm)
    assert y.shape == x_norm.shape and torch.isfinite(y).all()


def _block(share: bool) -> ZipformerBlock:
    """A Zipformer-M stack-4 block (dim 512, 8 heads, ff 1536, kernel 15)."""
    torch.manual_seed(0)
    return ZipformerBlock(embed_dim=512, pos_dim=48, num_heads=8, query_head_dim=32, pos_head_dim=4,
                          value_head_dim=12, feedforward_dim=1536, kernel_size=15,
                          switches=BlockSwitches(share_attention_weights=share)).eval()


@pytest.mark.benchmark(group="zipformer-block")
@pytest.mark.parametrize("share", [True, False], ids=["shared-weights", "no-sharing"])
def test_zipformer_block_attention_weight_sharing(benchmark, share):
    block = _block(share)
    x = torch.randn(2, 125, 512)            # 10 s at the middle stack's 12.5 Hz
    pos_emb = RelPositionalEncoding(48, dropout=0.0).eval()(x)
    with torch.inference_mode():
        y = benchmark(block, x, pos_emb, None)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert (block.self_attn_weights2 is None) == share


@pytest.mark.benchmark(group="encoder-m")
@pytest.mark.parametrize("variant", ["zipformer-m", "conformer-m"])
def test_encoder_m(benchmark, variant):
    from variants import build_model

    torch.manual_seed(0)
    model = build_model(variant, objective="ctc").eval()
    x, lens = torch.randn(1, 500, 80), torch.tensor([500])   # one 5 s utterance
    with torch.inference_mode():
        out, out_lens = benchmark.pedantic(model, args=(x, lens), rounds=3, warmup_rounds=1)
    assert out.shape[0] == 1 and int(out_lens[0]) == out.shape[1] and torch.isfinite(out).all()
