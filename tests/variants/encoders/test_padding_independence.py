"""An utterance's encoder output does not depend on its padding or its batch.

Tiny Zipformer and Conformer (through Conv-Embed / Conv2dSubsampling, in
float64, so that only rounding separates the runs): the same utterance alone,
padded with different values, and batched with a longer utterance. Before
Conv-Embed masked padded frames, Zipformer-S differed by 1.3e-4 (alone vs
padded with 0) and 2.9e-3 (padding 0 vs -23) in float32.
"""
from __future__ import annotations

import pytest
import torch

from variants import build_model
from variants.components.conv_embed import ConvEmbed
from variants.spec import ZipformerConfig

#: rounding only: batched matmuls of other shapes sum in another order
BOUND = 1e-12

TINY = {
    "zipformer-s": dict(downsampling_factor=(1, 2, 4, 2), num_encoder_layers=(1,) * 4,
                        encoder_dim=(16, 24, 32, 24), feedforward_dim=(32,) * 4,
                        encoder_unmasked_dim=(8,) * 4, num_heads=(2,) * 4,
                        cnn_module_kernel=(5, 5, 3, 5), query_head_dim=4, value_head_dim=4,
                        pos_dim=8, pos_head_dim=2, embed_channels=(4, 8, 16)),
    "conformer-s": dict(num_encoder_layers=2, d_model=32, dim_feedforward=64, nhead=4,
                        cnn_module_kernel=5),
}


def encode(model, x: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model.forward_encoder(x, torch.tensor(lengths))[0]


@pytest.mark.parametrize("name", ["zipformer-s", "conformer-s"])
def test_output_does_not_depend_on_padding_or_batch(name):
    torch.manual_seed(0)
    model = build_model(name, encoder=TINY[name]).eval().double()
    g = torch.Generator().manual_seed(1)
    utt = torch.randn(1, 83, 80, generator=g, dtype=torch.float64)
    longer = torch.randn(1, 131, 80, generator=g, dtype=torch.float64)
    alone = encode(model, utt, [83])[0]
    n = alone.shape[0]
    for value in (0.0, -23.0, 1e3):
        x = torch.full((1, 131, 80), value, dtype=torch.float64)
        x[:, :83] = utt
        padded = encode(model, x, [83])[0, :n]
        assert (padded - alone).abs().max() < BOUND, value
    batch = torch.cat([longer, torch.full_like(longer, -23.0)])
    batch[1, :83] = utt[0]
    batched = encode(model, batch, [131, 83])
    assert (batched[1, :n] - alone).abs().max() < BOUND
    # the longer utterance is not changed by its short batch-mate either
    assert (batched[0] - encode(model, longer, [131])[0]).abs().max() < BOUND


def test_zipformer_output_ignores_nan_and_inf_padding():
    torch.manual_seed(0)
    model = build_model("zipformer-s", encoder=TINY["zipformer-s"]).eval()
    x = torch.randn(2, 60, 80)
    alone = encode(model, x[1:, :41], [41])[0]
    x[1, 41:] = float("nan")
    x[1, -1] = float("inf")
    out = encode(model, x, [60, 41])
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1, : alone.shape[0]], alone, atol=1e-5, rtol=1e-5)


def test_conv_embed_unpadded_output_is_unchanged_by_the_masks():
    """With no padding the masks are no-ops: the authors' Conv2dSubsampling output."""
    cfg = ZipformerConfig(**TINY["zipformer-s"])
    torch.manual_seed(0)
    embed = ConvEmbed(80, cfg.encoder_dim[0], channels=tuple(cfg.embed_channels)).eval()
    x = torch.randn(2, 50, 80)
    with torch.no_grad():
        got, lens = embed(x, torch.tensor([50, 50]))
        y = embed.convnext(embed.conv(x.unsqueeze(1)))      # the unmasked path, by hand
        b, c, t, f = y.shape
        ref = embed.out_norm(embed.out(y.transpose(1, 2).reshape(b, t, c * f)))
    assert lens.tolist() == [21, 21]
    assert torch.equal(got, ref)
