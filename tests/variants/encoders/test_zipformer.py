"""The Zipformer encoder: tiny configs, real forward/backward; exact parameter
counts of zipformer-s/m/l against the authors' implementation; Table 5 rows."""
import copy

import pytest
import torch

from variants import build_model, get_spec, list_variants
from variants.components.conv_embed import conv_embed_lengths
from variants.components.scheduled_float import ScheduledFloat
from variants.encoders.zipformer import build, combine_outputs, convert_num_channels, encoder_output_lengths
from variants.model import counted_numel
from variants.spec import ZipformerConfig

TINY = dict(downsampling_factor=(1, 2, 4), num_encoder_layers=(1, 1, 1), encoder_dim=(16, 24, 16),
            feedforward_dim=(32, 48, 32), encoder_unmasked_dim=(8, 8, 8), num_heads=(2, 2, 2),
            cnn_module_kernel=(5, 5, 3), query_head_dim=4, value_head_dim=4, pos_dim=8, pos_head_dim=2)


def tiny(**switches) -> ZipformerConfig:
    return ZipformerConfig(**{**TINY, **switches})


def set_batch_count(modules, n: float) -> None:
    for mod in modules:
        for m in mod.modules():
            if hasattr(m, "batch_count"):
                m.batch_count = n


def padded_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 45, 80, generator=g), torch.tensor([45, 30])


def test_output_length_rule_100hz_to_25hz():
    cfg = tiny()
    for t in (7, 8, 9, 10, 45, 101, 3000):
        t_embed = conv_embed_lengths(torch.tensor([t]))
        expected = ((t - 7) // 2 + 1) // 2
        assert encoder_output_lengths(t_embed, cfg).item() == expected
    assert encoder_output_lengths(conv_embed_lengths(torch.tensor([3000])), cfg).item() == 748


@pytest.mark.parametrize("batch_count", [0.0, 6000.0, 30000.0])
def test_forward_backward_on_padded_batch(batch_count):
    torch.manual_seed(0)
    embed, enc = build(tiny())
    embed.train(), enc.train()
    set_batch_count((embed, enc), batch_count)
    x, lens = padded_batch()
    y, y_lens = embed(x, lens)
    assert y.shape == (2, 19, 16) and y_lens.tolist() == [19, 11]
    out, out_lens = enc(y, y_lens)
    assert out.shape == (2, 10, 24) and out_lens.tolist() == [10, 6]
    mask = (torch.arange(10)[None, :] < out_lens[:, None]).unsqueeze(-1)
    (out * mask).pow(2).sum().backward()
    grads = {n: p.grad for n, p in list(embed.named_parameters()) + list(enc.named_parameters())}
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)
    got = [n for n, g in grads.items() if g is not None and g.abs().sum() > 0]
    assert any("self_attn_weights.in_proj" in n for n in got)
    assert any("nonlinear_attention" in n for n in got) and any("out.weight" in n for n in got)


def test_padding_invariance_and_batch_consistency():
    torch.manual_seed(0)
    embed, enc = build(tiny())
    embed.eval(), enc.eval()
    x, lens = padded_batch()
    with torch.no_grad():
        y, y_lens = embed(x, lens)
        out, out_lens = enc(y, y_lens)
        y2 = y.clone()
        y2[1, y_lens[1]:] = 1e3 * torch.randn_like(y2[1, y_lens[1]:])
        out2, _ = enc(y2, y_lens)
        n = out_lens[1]
        assert torch.allclose(out2[1, :n], out[1, :n], atol=1e-5)
        y2[1, y_lens[1]:] = float("nan")
        y2[1, -1] = float("inf")
        out3, _ = enc(y2, y_lens)
        assert torch.allclose(out3[1, :n], out[1, :n], atol=1e-5)
        alone, alone_lens = enc(y[1:, : y_lens[1]], y_lens[1:])
        assert alone_lens.item() == n
        assert torch.allclose(alone[0], out[1, :n], atol=1e-5)


def test_eval_is_deterministic_and_train_is_not():
    torch.manual_seed(0)
    embed, enc = build(tiny())
    set_batch_count((embed, enc), 1000.0)
    x, lens = padded_batch()
    embed.eval(), enc.eval()
    with torch.no_grad():
        a = enc(*embed(x, lens))[0]
        b = enc(*embed(x, lens))[0]
    assert torch.equal(a, b)
    embed.train(), enc.train()
    with torch.no_grad():
        torch.manual_seed(1)
        c = enc(*embed(x, lens))[0]
        torch.manual_seed(2)
        d = enc(*embed(x, lens))[0]
    assert not torch.equal(c, d)


def test_autocast_bfloat16():
    torch.manual_seed(0)
    embed, enc = build(tiny())
    embed.train(), enc.train()
    x, lens = padded_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, out_lens = enc(*embed(x, lens))
    out.float().sum().backward()
    assert torch.isfinite(out.float()).all()
    embed.eval(), enc.eval()
    with torch.no_grad():
        ref = enc(*embed(x, lens))[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = enc(*embed(x, lens))[0]
    assert (low.float() - ref).abs().max() < 0.1 * ref.abs().max()


SWITCHES = [
    dict(nla=False), dict(nla=False, share_attention_weights=False), dict(bypass=False),
    dict(norm="layer_norm"), dict(activation="swoosh_r"), dict(activation="swish"),
    dict(balancer=False, whitener=False), dict(block_style="double_conformer"),
    dict(norm_on_every_module=True),
    dict(embed_time_stride=4, downsampling_factor=(1,), num_encoder_layers=(2,), encoder_dim=(16,),
         feedforward_dim=(32,), encoder_unmasked_dim=(8,), num_heads=(2,), cnn_module_kernel=(5,),
         output_downsampling_factor=1),
]


@pytest.mark.parametrize("switches", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in list(s.items())[:2]))
def test_every_switch_builds_and_trains(switches):
    torch.manual_seed(0)
    cfg = tiny(**switches)
    embed, enc = build(cfg)
    embed.train(), enc.train()
    x, lens = padded_batch()
    out, out_lens = enc(*embed(x, lens))
    assert out.shape == (2, 10, cfg.output_dim)
    assert out_lens.tolist() == [10, 6]
    out.sum().backward()


def test_switches_change_the_structure():
    def n_params(**s):
        return sum(p.numel() for m in build(tiny(**s)) for p in m.parameters())

    base = n_params()
    assert n_params(nla=False) < base
    assert n_params(nla=False, share_attention_weights=False) > n_params(nla=False)
    assert n_params(bypass=False) < base
    assert n_params(norm="layer_norm") > base            # LayerNorm: 2D vs D + 1
    assert n_params(balancer=False, whitener=False) == base  # no parameters of their own
    _, enc = build(tiny(balancer=False, whitener=False))
    names = {type(m).__name__ for m in enc.modules()}
    assert "Balancer" not in names and "Whitener" not in names
    _, enc = build(tiny(block_style="double_conformer"))
    assert sum(type(m).__name__ == "ConformerStyleBlock" for m in enc.modules()) == 6
    _, enc = build(tiny(activation="swish"))
    assert not any(type(m).__name__.startswith("Swoosh") for m in enc.modules())


def test_causal_is_rejected():
    with pytest.raises(NotImplementedError, match="causal"):
        build(tiny(causal=True))


def test_helpers():
    x = torch.randn(1, 2, 3)
    assert torch.equal(convert_num_channels(x, 2), x[..., :2])
    padded = convert_num_channels(x, 5)
    assert padded.shape == (1, 2, 5) and torch.equal(padded[..., 3:], torch.zeros(1, 2, 2))
    outs = [torch.full((1, 1, d), float(i)) for i, d in enumerate((4, 8, 6))]
    full = combine_outputs(outs, (4, 8, 6))
    assert full[0, 0].tolist() == [2.0] * 6 + [1.0] * 2


# the authors' counts (their implementation, counted part by part; counted_numel adds the
# unused_bypass_scale vectors they hold as parameters and we hold as buffers)
AUTHORS = {"zipformer-s": 21_377_826, "zipformer-m": 63_382_150, "zipformer-l": 146_013_641}


@pytest.mark.parametrize("variant", sorted(AUTHORS))
def test_param_counts_equal_the_authors(variant):
    with torch.device("meta"):
        embed, enc = build(get_spec(variant).encoder)
    assert sum(p.numel() for p in embed.parameters()) == 611_953
    assert counted_numel(enc) == AUTHORS[variant]
    cfg = get_spec(variant).encoder  # one D-vector per block
    assert counted_numel(enc) - sum(p.numel() for p in enc.parameters()) == sum(
        n * d for n, d in zip(cfg.num_encoder_layers, cfg.encoder_dim))


HEADS_M = 260_096 + 781_812 + 513_000  # transducer decoder, joiner, simple projections (dim 512)


@pytest.mark.parametrize("variant", [v for v in list_variants("zipformer-m-*")])
def test_table5_params_within_one_percent(variant):
    spec = get_spec(variant)
    with torch.device("meta"):
        parts = build(spec.encoder)
    total = sum(p.numel() for m in parts for p in m.parameters()) + HEADS_M
    paper = spec.paper_params_m["transducer"] * 1e6
    assert abs(total - paper) / paper < 0.01, (variant, total, paper)


def test_build_model_and_set_batch_count():
    model = build_model("zipformer-s", objective="transducer", **TINY)
    parts = model.param_counts()
    assert parts["encoder_embed"] == sum(p.numel() for p in model.encoder_embed.parameters())
    model.set_batch_count(12345)
    scheds = [m for m in model.modules() if isinstance(m, ScheduledFloat)]
    assert scheds and all(s.batch_count == 12345.0 for s in scheds)
    model.eval()
    x, lens = padded_batch()
    with torch.no_grad():
        out, out_lens = model(x, lens)
    assert out.shape == (2, 10, 24) and out_lens.tolist() == [10, 6]


def test_set_batch_count_reaches_modules_replaced_after_the_first_call():
    # set_batch_count caches its walk of the module tree; registering a submodule anywhere
    # (here deep inside the encoder) must make the next call find the new schedules
    model = build_model("zipformer-s", objective="ctc", **TINY)
    model.set_batch_count(100.0)
    block = model.encoder.encoders[0].layers[0]
    block.bypass.skip_rate = ScheduledFloat((0.0, 0.5), (1000.0, 0.0))
    block.feed_forward1.dropout.p = ScheduledFloat((0.0, 0.3), (1000.0, 0.1))
    model.set_batch_count(500.0)
    assert block.bypass.skip_rate.batch_count == 500.0
    assert float(block.feed_forward1.dropout.p) == pytest.approx(0.2)
    scheds = [m for m in model.modules() if isinstance(m, ScheduledFloat)]
    assert all(s.batch_count == 500.0 for s in scheds)
    # a copy has its own modules: its first call finds them, and edits to it are seen
    twin = copy.deepcopy(model)
    twin.encoder.encoders[0].layers[0].bypass.skip_rate = ScheduledFloat((0.0, 0.5), (1000.0, 0.0))
    twin.set_batch_count(700.0)
    assert all(s.batch_count == 700.0 for s in twin.modules() if isinstance(s, ScheduledFloat))
    assert block.bypass.skip_rate.batch_count == 500.0


def test_set_batch_count_walks_the_module_tree_once_across_training_steps(monkeypatch):
    model = build_model("zipformer-s", objective="ctc", **TINY).train()
    walks = []
    modules = model.modules
    monkeypatch.setattr(model, "modules", lambda: walks.append(1) or modules())
    x, lens = padded_batch()
    for step in range(3):
        model.set_batch_count(100.0 * step)
        model(x, lens)[0].sum().backward()     # (a forward may build containers of its own)
    assert len(walks) == 1


def test_batch_count_drives_the_schedules():
    _, enc = build(tiny())
    enc.train()
    first_block = enc.encoders[0].layers[0]
    set_batch_count([enc], 0.0)
    assert float(first_block.bypass.skip_rate) == pytest.approx(0.5)       # layer skip at first
    assert float(first_block.bypass.scale_min) == pytest.approx(0.9)       # Bypass minimum
    assert float(first_block.attention_skip_rate) == pytest.approx(0.2)
    set_batch_count([enc], 1e6)
    assert float(first_block.bypass.skip_rate) == pytest.approx(0.035)     # 0.035 * sqrt(1)
    assert float(enc.encoders[2].encoder.layers[0].bypass.skip_rate) == pytest.approx(0.07)  # sqrt(4)
    assert float(first_block.bypass.scale_min) == pytest.approx(0.2)
    assert float(first_block.attention_skip_rate) == 0.0
    enc.eval()
    assert float(first_block.bypass.skip_rate) == 0.0                       # eval: no skipping


def test_bad_inputs_are_named():
    embed, enc = build(tiny())
    with pytest.raises(ValueError, match="expects \\(batch, frames, 16\\)"):
        enc(torch.randn(2, 10, 12), torch.tensor([10, 10]))
    with pytest.raises(ValueError, match="lengths must have shape"):
        enc(torch.randn(2, 10, 16), torch.tensor([10]))
    with pytest.raises(ValueError, match="lengths"):
        embed(torch.randn(2, 20, 80), torch.tensor([20, 25]))


def test_embed_channels_switch_sizes_conv_embed():
    paper = build_model("zipformer-s", objective="ctc").param_counts()["encoder_embed"]
    assert paper == 611_953
    small = build_model("zipformer-s", objective="ctc", embed_channels=(8, 16, 64))
    assert small.param_counts()["encoder_embed"] < paper
    x = torch.randn(2, 120, 80)
    out, lens = small(x, torch.tensor([120, 90]))
    assert out.shape[0] == 2 and lens.tolist()[0] == out.shape[1]
