"""The Zipformer encoder on every device (``device`` fixture: "cpu" always,
"cuda" where a GPU is present): float32 and autocast (bfloat16 and float16)
forward/backward, padding invariance and agreement with the CPU result."""
import pytest
import torch

from variants.encoders.zipformer import build
from variants.spec import ZipformerConfig

TINY = dict(downsampling_factor=(1, 2, 4, 2), num_encoder_layers=(1, 2, 1, 1),
            encoder_dim=(32, 48, 64, 48), feedforward_dim=(64, 96, 128, 96),
            encoder_unmasked_dim=(16, 16, 16, 16), num_heads=(2, 2, 4, 2),
            cnn_module_kernel=(5, 5, 3, 5), query_head_dim=8, value_head_dim=4, pos_dim=16,
            pos_head_dim=2)


def _batch(device):
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 120, 80, generator=g).to(device), torch.tensor([120, 87, 33], device=device)


@pytest.mark.parametrize("dtype", [None, torch.bfloat16, torch.float16])
def test_train_step(device, dtype):
    torch.manual_seed(0)
    embed, enc = (m.to(device).train() for m in build(ZipformerConfig(**TINY)))
    for mod in (embed, enc):
        for m in mod.modules():
            if hasattr(m, "batch_count"):
                m.batch_count = 100.0
    x, lens = _batch(device)
    with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
        out, out_lens = enc(*embed(x, lens))
    assert out.device.type == device and out_lens.device.type == device
    assert out.shape == (3, ((120 - 7) // 2 + 1) // 2, 64)
    out.float().pow(2).mean().backward()
    grads = [p.grad for p in list(embed.parameters()) + list(enc.parameters()) if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_eval_matches_cpu_and_ignores_padding(device):
    torch.manual_seed(0)
    embed, enc = build(ZipformerConfig(**TINY))
    embed.eval(), enc.eval()
    x, lens = _batch("cpu")
    with torch.no_grad():
        ref, ref_lens = enc(*embed(x, lens))
        embed.to(device), enc.to(device)
        y, y_lens = embed(x.to(device), lens.to(device))
        out, out_lens = enc(y, y_lens)
        assert torch.equal(out_lens.cpu(), ref_lens)
        assert torch.allclose(out.cpu(), ref, atol=1e-3, rtol=1e-3)
        y2 = y.clone()
        y2[2, y_lens[2]:] = 1e3
        out2, _ = enc(y2, y_lens)
        n = int(out_lens[2])
        assert torch.allclose(out2[2, :n], out[2, :n], atol=1e-4)
