"""The authors' original Conformer: sizes, lengths, masking, switches."""
from __future__ import annotations

import pytest
import torch

from variants.components.bias_norm import BiasNorm
from variants.components.conv2d_subsampling import Conv2dSubsampling, subsampled_size
from variants.components.rel_pos_multihead_attention import rel_shift
from variants.components.rel_sinusoidal_positional_encoding import RelSinusoidalPositionalEncoding, relative_sinusoids
from variants.components.swoosh import Swish, SwooshL, SwooshR
from variants.encoders.conformer import ConformerEncoder, build
from variants.spec import ConformerConfig

torch.set_num_threads(1)

TINY = dict(num_encoder_layers=2, d_model=32, dim_feedforward=64, nhead=4, cnn_module_kernel=5)


def n_params(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def tiny(**kw) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    return build(ConformerConfig(**{**TINY, **kw}))


def run(embed, encoder, x, x_lens):
    return encoder(*embed(x, x_lens))


# (layers, d_model, ff, heads) of conformer-s/m/l; our count and the authors' encoder count,
# which also holds their output layer Linear(d_model, 500) (ours lives in the heads)
SIZES = {
    "s": ((16, 144, 576, 4), 8_690_400, 8.763),
    "m": ((16, 256, 1024, 4), 27_262_464, 27.391),
    "l": ((18, 512, 2048, 8), 121_174_016, 121.431),
}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_conformer_param_counts_match_the_authors(name):
    (layers, d, ff, h), ours, authors_m = SIZES[name]
    with torch.device("meta"):
        embed, encoder = build(ConformerConfig(num_encoder_layers=layers, d_model=d,
                                               dim_feedforward=ff, nhead=h))
    assert n_params(embed, encoder) == ours
    assert round((ours + d * 500 + 500) / 1e6, 3) == authors_m


def test_front_end_is_19d_linear_and_one_quarter_rate():
    embed = Conv2dSubsampling(80, 16)
    assert embed.out.in_features == 19 * 16
    assert subsampled_size(3000) == 749
    for t in range(7, 40):
        y, y_lens = embed(torch.randn(1, t, 80), torch.tensor([t]))
        assert y.shape == (1, ((t - 1) // 2 - 1) // 2, 16) == (1, int(y_lens), 16)


def test_forward_backward_on_padded_batch():
    embed, encoder = tiny()
    x, x_lens = torch.randn(2, 67, 80), torch.tensor([67, 41])
    out, out_lens = run(embed, encoder, x, x_lens)
    assert out.shape == (2, 16, 32)
    assert out_lens.tolist() == [16, 9]
    out[0].sum().backward()
    for name, p in [*embed.named_parameters(), *encoder.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert encoder.layers[0].self_attn.pos_bias_u.grad.abs().sum() > 0


def test_padding_does_not_change_valid_frames():
    embed, encoder = tiny()
    embed.eval(), encoder.eval()
    short = torch.randn(1, 41, 80)
    alone, alone_lens = run(embed, encoder, short, torch.tensor([41]))
    batch = torch.randn(2, 67, 80) * 3.0
    batch[1, :41] = short[0]
    padded, lens = run(embed, encoder, batch, torch.tensor([67, 41]))
    n = int(alone_lens)
    assert int(lens[1]) == n
    torch.testing.assert_close(padded[1, :n], alone[0], atol=2e-5, rtol=1e-4)


def test_eval_is_deterministic_and_train_uses_dropout():
    embed, encoder = tiny()
    x, x_lens = torch.randn(2, 50, 80), torch.tensor([50, 30])
    embed.eval(), encoder.eval()
    a, _ = run(embed, encoder, x, x_lens)
    b, _ = run(embed, encoder, x, x_lens)
    assert torch.equal(a, b)
    encoder.train()
    c, _ = run(embed, encoder, x, x_lens)
    assert not torch.allclose(a, c)


def test_layer_structure_default_is_layernorm_and_swish():
    _, encoder = tiny()
    layer = encoder.layers[0]
    norms = [m for m in encoder.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2 * (5 + 1) + 1  # 5 per layer + conv-module norm, + after_norm
    assert isinstance(layer.feed_forward.activation, Swish)
    assert isinstance(layer.conv_module.activation, Swish)
    assert layer.ff_scale == 0.5
    assert layer.self_attn.pos_bias_u.shape == layer.self_attn.pos_bias_v.shape == (4, 8)


def test_bias_norm_and_swoosh_switches_build_and_train():
    embed, encoder = tiny(norm="bias_norm", activation="swoosh")
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in encoder.modules())
    assert sum(isinstance(m, BiasNorm) for m in encoder.modules()) == 13
    layer = encoder.layers[0]
    assert isinstance(layer.feed_forward.activation, SwooshL)
    assert isinstance(layer.conv_module.activation, SwooshR)
    out, _ = run(embed, encoder, torch.randn(2, 40, 80), torch.tensor([40, 23]))
    out.pow(2).mean().backward()
    assert torch.isfinite(layer.norm_final.log_scale.grad)
    _, enc_r = tiny(activation="swoosh_r")
    assert isinstance(enc_r.layers[0].feed_forward.activation, SwooshR)


def test_autocast_runs():
    embed, encoder = tiny()
    x, x_lens = torch.randn(2, 40, 80), torch.tensor([40, 30])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = run(embed, encoder, x, x_lens)
    assert out.dtype in (torch.bfloat16, torch.float32)
    assert torch.isfinite(out.float()).all()


def test_rel_shift_picks_relative_position_i_minus_j():
    t = 5
    pos = torch.arange(t - 1, -t, -1, dtype=torch.float32)  # column k holds position t-1-k
    scores = pos.expand(1, 1, t, 2 * t - 1).clone()
    shifted = rel_shift(scores)[0, 0]
    i, j = torch.meshgrid(torch.arange(t), torch.arange(t), indexing="ij")
    assert torch.equal(shifted, (i - j).float())


def test_rel_positional_encoding_table():
    pe = RelSinusoidalPositionalEncoding(6, dropout=0.0, initial_max_len=4)
    x, pos_emb = pe(torch.ones(1, 3, 6))
    assert torch.allclose(x, torch.full((1, 3, 6), 6 ** 0.5))
    assert pos_emb.shape == (1, 5, 6)
    assert torch.allclose(pos_emb[0, 2], torch.tensor([0.0, 1.0] * 3))  # relative position 0
    torch.testing.assert_close(pos_emb[0, 0, 0], torch.sin(torch.tensor(2.0)))  # position +2
    _, long_emb = pe(torch.ones(1, 9, 6))  # grows the cached table
    _, again = pe(torch.ones(1, 3, 6))
    torch.testing.assert_close(again, pos_emb)
    torch.testing.assert_close(long_emb[0], relative_sinusoids(8, 6))


@pytest.mark.parametrize("x, lens, match", [
    (torch.randn(1, 6, 80), torch.tensor([6]), "at least 7 frames"),
    (torch.randn(1, 20, 40), torch.tensor([20]), "num_features|80"),
    (torch.randn(2, 20, 80), torch.tensor([20, 5]), "x_lens"),
    (torch.randn(2, 20, 80), torch.tensor([20]), "x_lens"),
])
def test_bad_input_is_named(x, lens, match):
    embed, _ = tiny()
    with pytest.raises(ValueError, match=match):
        embed(x, lens)


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="nhead"):
        ConformerConfig(d_model=30, nhead=4)
    with pytest.raises(ValueError, match="num_features"):
        build(ConformerConfig(num_features=5))
    with pytest.raises(ValueError, match="ConformerEncoder"):
        ConformerEncoder(ConformerConfig(**TINY))(torch.randn(1, 5, 16), torch.tensor([5]))


def test_training_after_inference_mode():
    embed, encoder = tiny(dropout=0.0)  # no dropout copy between the cached table and autograd
    x, x_lens = torch.randn(2, 40, 80), torch.tensor([40, 30])
    with torch.inference_mode():
        run(embed, encoder, x, x_lens)
    out, _ = run(embed, encoder, x, x_lens)
    out.sum().backward()
    assert encoder.layers[0].self_attn.linear_pos.weight.grad is not None


def test_tiny_conformer_with_ctc_head_fits_a_batch():
    from variants.heads.ctc import CtcHead

    embed, encoder = tiny(dropout=0.0)
    head = CtcHead(32, 6, dropout=0.0)
    params = [*embed.parameters(), *encoder.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)
    x, x_lens = torch.randn(2, 40, 80), torch.tensor([40, 31])
    y, y_lens = torch.tensor([[1, 2, 3, 4], [5, 3, 0, 0]]), torch.tensor([4, 2])
    losses = []
    for _ in range(20):
        out, out_lens = run(embed, encoder, x, x_lens)
        loss = torch.nn.functional.ctc_loss(head(out).transpose(0, 1), y, out_lens, y_lens, blank=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
