import pytest
import torch

from harness.devices import select_device
from harness.train.precision import LossScaleCollapsedError, LossScaler, Precision, select_precision


def test_auto_picks_what_the_machine_has():
    dev = select_device("auto")
    prec = select_precision("auto", dev)
    if torch.cuda.is_available():
        assert dev.type == "cuda"
        assert prec.name == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    else:
        assert dev.type == "cpu" and prec.name == "fp32" and not prec.autocast


def test_fp16_on_cpu_is_refused_with_a_reason():
    with pytest.raises(RuntimeError, match="fp16 needs a GPU"):
        select_precision("fp16", torch.device("cpu"))


def test_bf16_on_cpu_uses_autocast_without_a_scaler():
    p = select_precision("bf16", torch.device("cpu"))
    assert p.autocast and not p.needs_scaler
    with p.context():
        y = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert y.dtype == torch.bfloat16
    assert not LossScaler(p).enabled


def test_collapsed_loss_scale_gives_a_clear_message():
    scaler = LossScaler(Precision("fp16", torch.float16, "cpu"))
    assert scaler.enabled and scaler.value == 1.0
    scaler.scale(torch.tensor(1.0))
    scaler.scaler.update(1e-6)
    with pytest.raises(LossScaleCollapsedError, match="collapsed .* at step 7.*bf16"):
        scaler.check(batch_idx=3, step=7)


def test_small_scale_is_regrown_and_warned_once():
    scaler = LossScaler(Precision("fp16", torch.float16, "cpu"))
    scaler.scale(torch.tensor(1.0))
    scaler.scaler.update(0.001)
    assert "small" in scaler.check(batch_idx=25, step=25)
    assert scaler.value == pytest.approx(0.002)
    assert scaler.check(batch_idx=26, step=26) is None
