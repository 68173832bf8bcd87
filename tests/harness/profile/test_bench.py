"""`harness bench`: a tiny model measured in a fresh process, stored with the
device name and thread count; bad options are errors naming them."""
from __future__ import annotations

import pytest

from harness.profile.bench import run_isolated
from harness.profile.measure import check_args, quartiles

def test_tiny_model_in_a_subprocess():
    r = run_isolated("conformer-tiny", batch=1, duration_s=0.5, runs=2, warmup=1, threads=1,
                     overrides={}, timeout_s=240)
    assert r.variant == "conformer-tiny" and r.device_type == "cpu" and r.threads == 1
    assert len(r.times_s) == 2 and all(t > 0 for t in r.times_s)
    assert r.p25_s <= r.median_s <= r.p75_s
    assert r.peak_mem_mb >= 0 and ("RSS" in r.mem_method or "ru_maxrss" in r.mem_method)
    assert r.device                                      # the CPU model string


def test_cli_stores_the_row(tmp_path, capsys):
    from harness.cli import main
    from harness.store import ResultsStore

    argv = ["bench", "conformer-tiny", "--batch", "1", "--duration", "0.5", "--runs", "1", "--warmup", "0",
            "--store", str(tmp_path / "r.sqlite"), "--set", "num_encoder_layers=1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "batch 1 x 0.5 s" in out and "conformer-tiny" in out
    (row,) = ResultsStore(tmp_path / "r.sqlite").rows("bench")
    assert row["variant"] == "conformer-tiny" and row["threads"] == 1 and row["batch"] == 1
    assert row["median_s"] > 0 and row["mem_method"]


@pytest.mark.parametrize("kwargs, message", [
    ({"batch": 0}, "batch must be >= 1"),
    ({"device": "tpu"}, "unknown device 'tpu'; allowed: cpu, cuda"),
    ({"runs": 0}, "runs must be >= 1"),
    ({"duration_s": 0.01}, "duration must be at least 0.1 s"),
])
def test_bad_options(kwargs, message):
    args = dict(batch=1, duration_s=1.0, runs=1, warmup=0, device="cpu", threads=1) | kwargs
    with pytest.raises(ValueError, match=message):
        check_args(**args)


def test_quartiles():
    assert quartiles([3.0]) == (3.0, 3.0, 3.0)
    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 3.0, 4.0)


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    import torch

    from harness.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["bench", "conformer-s", "--device", "cuda", "--no-store"]) == 2
    assert "torch sees no CUDA device" in capsys.readouterr().err
