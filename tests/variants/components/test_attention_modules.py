"""Relative positional encoding, MHAW, SA, NLA, feed-forward, convolution module,
Conv-Embed: shapes, formulas and padding masks on small tensors."""
import math

import pytest
import torch

from variants.components.activation import create_activation
from variants.components.attention_weights import (MultiHeadAttentionWeights, add_relative_in_blocks, gather_relative,
                                                   relative_to_absolute)
from variants.components.conv_embed import ConvEmbed, conv_embed_lengths
from variants.components.convolution_module import ConvolutionModule
from variants.components.feed_forward import FeedForward
from variants.components.nonlinear_attention import NonlinearAttention
from variants.components.rel_pos_encoding import RelPositionalEncoding, compact_rel_pos_encoding
from variants.components.self_attention import SelfAttention
from variants.components.swoosh import SwooshL, SwooshR


def test_rel_pos_encoding_shape_and_values():
    pe = RelPositionalEncoding(16).eval()(torch.zeros(2, 5, 8))
    assert pe.shape == (1, 9, 16)
    table = compact_rel_pos_encoding(5, 16)
    assert torch.equal(pe[0], table)
    # offset 0 sits in the middle: angle 0 -> cos 1, sin 0; last channel is the constant 1
    mid = table[4]
    assert torch.allclose(mid[0:-1:2], torch.ones(8)) and torch.allclose(mid[1:-1:2], torch.zeros(7))
    assert torch.all(table[:, -1] == 1.0)
    # formula for offset d = 2, frequency 1
    L = 4.0
    d = L * (math.log(2 + L) - math.log(L))
    angle = math.atan(d / (16 / (2 * math.pi)))
    assert table[6, 0].item() == pytest.approx(math.cos(angle), abs=1e-6)
    assert table[6, 1].item() == pytest.approx(math.sin(angle), abs=1e-6)
    # the sines are odd in the offset, the cosines even
    assert torch.allclose(table[2, 1:-1:2], -table[6, 1:-1:2], atol=1e-6)
    with pytest.raises(ValueError, match="even"):
        RelPositionalEncoding(15)


def test_relative_to_absolute_indexing():
    t = 4
    rel = torch.arange(2 * t - 1, dtype=torch.float32).expand(2, 1, t, 2 * t - 1)
    abs_ = relative_to_absolute(rel)
    # entry [i, j] takes relative offset j - i, stored at column (t - 1) + j - i
    for i in range(t):
        for j in range(t):
            assert abs_[0, 0, i, j].item() == (t - 1) + j - i


def test_the_exported_gather_shift_equals_the_strided_one():
    """What a traced (exported) graph computes is the eager shift, value for value."""
    from variants.components.rel_pos_multihead_attention import rel_shift

    g = torch.Generator().manual_seed(0)
    for shape in ((3, 2, 1, 1), (2, 4, 7, 13), (1, 3, 50, 99)):
        rel = torch.randn(*shape, generator=g)
        assert torch.equal(gather_relative(rel), relative_to_absolute(rel))
        assert torch.equal(gather_relative(rel), rel_shift(rel))


def test_mhaw_rows_sum_to_one_and_mask_padding():
    torch.manual_seed(0)
    m = MultiHeadAttentionWeights(16, pos_dim=8, num_heads=2, query_head_dim=4, pos_head_dim=2).eval()
    x = torch.randn(2, 6, 16)
    pos = RelPositionalEncoding(8)(x)
    mask = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    w = m(x, pos, mask)
    assert w.shape == (2, 2, 6, 6)
    assert torch.allclose(w.sum(-1), torch.ones(2, 2, 6), atol=1e-6)
    assert torch.all(w[:, 1, :, 4:] == 0)
    # params: in_proj (16 -> (2*4+2)*2 with bias) and linear_pos (8 -> 4, no bias)
    assert sum(p.numel() for p in m.parameters()) == 16 * 20 + 20 + 8 * 4
    with pytest.raises(ValueError, match="key_padding_mask"):
        m(x, pos, mask[:, :3])


def test_self_attention_uses_given_weights():
    torch.manual_seed(0)
    sa = SelfAttention(8, num_heads=2, value_head_dim=3).eval()
    x = torch.randn(1, 5, 8)
    w = torch.softmax(torch.randn(2, 1, 5, 5), -1)
    v = sa.in_proj(x).reshape(1, 5, 2, 3)
    heads = [w[h, 0] @ v[0, :, h] for h in range(2)]
    expected = sa.out_proj(torch.cat(heads, -1)).unsqueeze(0)
    assert torch.allclose(sa(x, w), expected, atol=1e-6)
    with pytest.raises(ValueError, match="attention weights"):
        sa(x, w[:1])


def test_nonlinear_attention_formula():
    torch.manual_seed(0)
    nla = NonlinearAttention(8).eval()
    assert nla.hidden_dim == 6
    x = torch.randn(1, 5, 8)
    w = torch.softmax(torch.randn(3, 1, 5, 5), -1)
    b, c, a = nla.in_proj(x).chunk(3, -1)
    expected = nla.out_proj(a * (w[0, 0] @ (torch.tanh(b) * c)[0]).unsqueeze(0))
    assert torch.allclose(nla(x, w), expected, atol=1e-6)


def test_feed_forward_and_activation_positions():
    ff = FeedForward(8, 12).eval()
    assert isinstance(ff.activation, SwooshL)
    x = torch.randn(2, 3, 8)
    assert torch.allclose(ff(x), ff.out_proj(SwooshL()(ff.in_proj(x))), atol=1e-6)
    assert isinstance(ConvolutionModule(8, 3).activation, SwooshR)      # paper: SwooshR in conv modules
    assert isinstance(create_activation("swoosh", "convnext"), SwooshL)
    assert isinstance(create_activation("swoosh", "conv_embed"), SwooshR)


def test_convolution_module_masks_padding():
    torch.manual_seed(0)
    conv = ConvolutionModule(6, 5).eval()
    x = torch.randn(2, 7, 6)
    mask = torch.tensor([[False] * 7, [False] * 4 + [True] * 3])
    y = conv(x, mask)
    x2 = x.clone()
    x2[1, 4:] = 1e4
    assert torch.allclose(conv(x2, mask)[1, :4], y[1, :4], atol=1e-5)
    # without the mask the padding would leak
    assert not torch.allclose(conv(x2)[1, :4], y[1, :4], atol=1e-3)
    with pytest.raises(ValueError, match="odd"):
        ConvolutionModule(6, 4)
    with pytest.raises(NotImplementedError, match="causal"):
        ConvolutionModule(6, 5, causal=True)


def test_conv_embed_shapes_lengths_and_params():
    torch.manual_seed(0)
    embed = ConvEmbed(80, 192).eval()
    assert sum(p.numel() for p in embed.parameters()) == 611_953   # the authors' count
    x = torch.randn(2, 40, 80)
    y, lens = embed(x, torch.tensor([40, 25]))
    assert y.shape == (2, (40 - 7) // 2, 192) and lens.tolist() == [16, 9]
    assert conv_embed_lengths(torch.tensor([3000])).item() == 1496
    embed4 = ConvEmbed(80, 16, time_stride=4).eval()
    y4, l4 = embed4(x, torch.tensor([40, 25]))
    assert y4.shape[1] == l4[0].item() == ((40 - 3) // 2 - 1) // 2
    assert conv_embed_lengths(torch.tensor([3000]), 4).item() == 748
    with pytest.raises(ValueError, match="80"):
        embed(torch.randn(1, 40, 40), torch.tensor([40]))
    with pytest.raises(ValueError, match="at least 7"):
        embed(torch.randn(1, 6, 80), torch.tensor([6]))
    with pytest.raises(ValueError, match="2 or 4"):
        ConvEmbed(80, 16, time_stride=3)


@pytest.mark.parametrize("t,rows", [(1, 64), (7, 3), (37, 8), (40, 64)])
def test_relative_scores_added_in_blocks_equal_the_whole_matrix(t, rows):
    """The CPU inference path of MHAW: row blocks of the positional scores, added in place."""
    torch.manual_seed(0)
    h, b, pd = 3, 2, 4
    scores = torch.randn(h, b, t, t)
    p = torch.randn(b, t, h, pd).permute(2, 0, 1, 3)       # (h, B, T, pd), a strided view
    pos = torch.randn(h, 1, pd, 2 * t - 1)
    expected = scores + relative_to_absolute(torch.matmul(p, pos))
    out = add_relative_in_blocks(scores.clone(), p, pos, rows=rows)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
