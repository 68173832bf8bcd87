"""train.compile: a compiled training step (inductor's CPU backend) against eager."""
from __future__ import annotations

import random

import pytest
import torch

from harness.losses import compute_loss
from harness.train.compile import compile_encoder
from variants import build_model
from variants.optim import build_optimizer


SMALL = {"downsampling_factor": [1], "num_encoder_layers": [1], "encoder_dim": [32],
         "feedforward_dim": [32], "encoder_unmasked_dim": [16], "num_heads": [2],
         "cnn_module_kernel": [7]}


def _steps(compiled: bool, batches) -> list[float]:
    torch.manual_seed(0)
    random.seed(0)
    # one stack of zipformer-tiny (every module of a block; compiling all six takes minutes)
    model = build_model("zipformer-tiny", objective="ctc", **SMALL).train()
    model.set_batch_count(100.0)
    if compiled:
        compile_encoder(model)
    opt = build_optimizer("scaled_adam", model, lr=0.05)
    losses = []
    for i, (x, lens, tokens) in enumerate(batches):
        random.seed(i)
        torch.manual_seed(i)
        loss, _ = compute_loss(model, x, lens, tokens, batch_count=100.0 + i)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss))
    assert not compiled or type(model.encoder).__name__ != "OptimizedModule"   # compiled in place
    assert "encoder._orig_mod" not in "".join(model.state_dict())
    return losses


@pytest.mark.timeout(900)
def test_compiled_steps_match_eager(one_thread, monkeypatch):
    """A minute or so of CPU time, nearly all of it inductor compiling the block."""
    # the compiled graphs draw dropout masks from torch's generator, as eager does
    import torch._inductor.config as inductor_config
    monkeypatch.setattr(inductor_config, "fallback_random", True)
    g = torch.Generator().manual_seed(0)
    # two batch shapes: the second reuses the dynamic-shape graphs
    batches = [(torch.randn(2, n, 80, generator=g), torch.tensor([n, n - 9]), [[5, 6, 7], [8, 9]])
               for n in (90, 110)]
    eager = _steps(False, batches)
    compiled = _steps(True, batches)
    for a, b in zip(compiled, eager):
        assert abs(a - b) <= 1e-4 * abs(b), (compiled, eager)
