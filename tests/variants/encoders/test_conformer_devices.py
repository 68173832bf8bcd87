"""The Conformer and the heads on every device (``device`` fixture: "cpu" always,
"cuda" where a GPU is present), in float32 and under autocast."""
from __future__ import annotations

import pytest
import torch

from variants import build_model

TINY = {"encoder": {"num_encoder_layers": 2, "d_model": 64, "dim_feedforward": 128, "nhead": 4},
        "heads": {"vocab_size": 30, "decoder_dim": 32, "joiner_dim": 32, "attention_decoder_dim": 32,
                  "attention_decoder_layers": 2, "attention_decoder_heads": 4,
                  "attention_decoder_ff_dim": 64}}


def model_on(device: str, **switches):
    torch.manual_seed(0)
    overrides = {**TINY, "encoder": {**TINY["encoder"], **switches}}
    return build_model("conformer-s", ("transducer", "ctc", "attention"), **overrides).to(device)


def head_outputs(model, x, x_lens):
    out, out_lens = model(x, x_lens)
    dec = model.decoder(torch.tensor([[0, 3, 4], [0, 5, -1]], device=x.device))
    logits = model.joiner(out.unsqueeze(2), dec.unsqueeze(1))
    ctc = model.ctc_output(out)
    tokens_in, lens, _ = model.attention_decoder.make_inputs_and_targets([[3, 4], [5]], x.device)
    aed = model.attention_decoder(out, out_lens, tokens_in, lens)
    return out, out_lens, logits, ctc, aed


@pytest.fixture
def no_tf32():
    """Exact float32 convolutions: cuDNN's default TF32 rounds to ~1e-3, per algorithm."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_float32_matches_cpu(device, no_tf32):
    x, x_lens = torch.randn(2, 150, 80), torch.tensor([150, 97])
    cpu = model_on("cpu").eval()
    dev = model_on(device).eval()
    dev.load_state_dict(cpu.state_dict())
    with torch.no_grad():
        ref = head_outputs(cpu, x, x_lens)
        got = head_outputs(dev, x.to(device), x_lens.to(device))
    for r, g in zip(ref, got):
        assert g.device.type == device
        torch.testing.assert_close(g.cpu(), r, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("switches", [{}, {"norm": "bias_norm", "activation": "swoosh"}])
def test_autocast_forward_backward(device, dtype, switches):
    model = model_on(device, **switches).train()
    x, x_lens = torch.randn(2, 150, 80, device=device), torch.tensor([150, 97], device=device)
    with torch.autocast(device, dtype=dtype):
        out, out_lens, logits, ctc, aed = head_outputs(model, x, x_lens)
        loss = logits.float().logsumexp(-1).mean() - ctc.float().mean() + aed.float().logsumexp(-1).mean()
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name


def test_padding_invariance(device, no_tf32):
    model = model_on(device).eval()
    short = torch.randn(1, 97, 80, device=device)
    batch = torch.randn(2, 150, 80, device=device)
    batch[1, :97] = short[0]
    with torch.no_grad():
        alone, n = model(short, torch.tensor([97], device=device))
        padded, _ = model(batch, torch.tensor([150, 97], device=device))
    torch.testing.assert_close(padded[1, : int(n)], alone[0], atol=1e-4, rtol=1e-3)
