import math
import random

import pytest
import torch

from variants.components.activation import create_activation
from variants.components.bias_norm import BiasNorm
from variants.components.norm import create_norm
from variants.components.swoosh import Swish, SwooshL, SwooshR


def test_swoosh_formulas():
    assert abs(SwooshR()(torch.tensor(0.0)).item()) < 1e-7
    x = torch.tensor([-3.0, 0.5, 2.0, 10.0], dtype=torch.float64)
    for xi, r, l in zip(x.tolist(), SwooshR()(x).tolist(), SwooshL()(x).tolist()):
        assert r == pytest.approx(math.log1p(math.exp(xi - 1)) - 0.08 * xi - 0.313261687, abs=1e-12)
        assert l == pytest.approx(math.log1p(math.exp(xi - 4)) - 0.08 * xi - 0.035, abs=1e-12)
    assert Swish()(torch.tensor(2.0)).item() == pytest.approx(2 / (1 + math.exp(-2)))
    # no overflow for large inputs
    assert torch.isfinite(SwooshR()(torch.tensor(1e4))).all()


def test_bias_norm_known_vector():
    m = BiasNorm(4)
    with torch.no_grad():
        m.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        m.log_scale.fill_(math.log(2.0))
    x = torch.tensor([[3.0, 2.0, 2.0, 2.0]])
    rms = math.sqrt((4 + 4 + 4 + 4) / 4)  # x - b = [2, 2, 2, 2]
    assert torch.allclose(m(x), x / rms * 2.0)
    assert sum(p.numel() for p in m.parameters()) == 5


def test_bias_norm_channel_dim_and_log_scale_limit():
    torch.manual_seed(0)
    m = BiasNorm(3, channel_dim=1)
    with torch.no_grad():
        m.log_scale.fill_(5.0)
    x = torch.randn(2, 3, 7)
    rms = (x - m.bias.view(1, 3, 1)).pow(2).mean(1, keepdim=True).sqrt()
    # the forward pass never clamps gamma (authors' behaviour): train == eval
    assert torch.allclose(m.train()(x), x / rms * math.exp(5.0), rtol=1e-5)
    assert torch.allclose(m.eval()(x), x / rms * math.exp(5.0), rtol=1e-5)
    # in training, gamma = 5 > 1.5 gets a gradient that lowers it, whatever the loss
    # wants (the limit acts on a random 60 % of steps)
    m.train()
    random.seed(0)
    pushed_down = 0
    for _ in range(40):
        m.zero_grad()
        (-m(x).abs().sum()).backward()   # this loss alone would raise gamma (for any x)
        pushed_down += int(m.log_scale.grad.item() > 0)
    assert 10 < pushed_down < 40


def test_switch_factories():
    assert isinstance(create_norm("layer_norm", 8), torch.nn.LayerNorm)
    assert isinstance(create_activation("swoosh", "feed_forward"), SwooshL)
    assert isinstance(create_activation("swoosh", "other"), SwooshR)
    assert isinstance(create_activation("swoosh_r", "convolution"), SwooshR)
    with pytest.raises(ValueError, match="allowed"):
        create_norm("rms", 8)
    with pytest.raises(ValueError, match="allowed"):
        create_activation("gelu")


def test_switch_maps_cover_exactly_the_schema_literals():
    import typing

    from variants import spec
    from variants.components.activation import ACTIVATIONS
    from variants.components.norm import NORMS

    assert set(NORMS) == set(typing.get_args(spec.Norm))
    assert set(ACTIVATIONS) == set(typing.get_args(spec.Activation))
    conformer_activation = spec.ConformerConfig.model_fields["activation"].annotation
    assert set(typing.get_args(conformer_activation)) <= set(ACTIVATIONS)


def test_block_switches_read_every_switch_from_the_config():
    from dataclasses import fields

    from variants.components.zipformer_block import BlockSwitches
    from variants.spec import ZipformerConfig

    cfg = ZipformerConfig(norm="layer_norm", activation="swish", nla=False, bypass=False,
                          balancer=False, whitener=False, share_attention_weights=False,
                          norm_on_every_module=True)
    s = BlockSwitches.from_config(cfg)
    assert {f.name: getattr(s, f.name) for f in fields(s)} == {
        "norm": "layer_norm", "activation": "swish", "nla": False, "share_attention_weights": False,
        "bypass": False, "balancer": False, "whitener": False, "norm_on_every_module": True}
