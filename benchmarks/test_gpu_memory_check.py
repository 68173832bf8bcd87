"""The issue-11 GPU memory check runs (on CPU here, tiny input; ours only, as the
authors' code is never part of the project) and reports saved bytes and time."""
from __future__ import annotations

import pytest



def test_gpu_memory_check_on_cpu(capsys, load_script):
    summary = load_script("gpu_memory_check").main(["--device", "cpu", "--variants", "zipformer-s", "--batch", "1",
                           "--duration", "1", "--steps", "1"])
    (row,) = summary["results"]
    assert row["impl"] == "ours" and row["saved_gb"] > 0 and row["fwd_bwd_s_median"] > 0
    # the proxy: gradients included it exceeds what the activations alone reach
    assert row["live_peak_gb"] > row["live_act_peak_gb"] > 0
    assert all("whitener.py" in line for line in row["host_sync_lines"])
    assert "SUMMARY" in capsys.readouterr().out


def test_inference_timing_on_cpu(load_script):
    summary = load_script("gpu_memory_check").main(["--device", "cpu", "--variants", "zipformer-s", "--no-train",
                           "--infer-batch", "1", "--infer-duration", "1", "--infer-runs", "1"])
    (row,) = summary["results"]
    assert row["infer_s_ours"] > 0 and row["infer_runs"] == 1


def test_missing_authors_folder_is_a_usage_error(tmp_path, capsys, load_script):
    with pytest.raises(SystemExit) as exc:
        load_script("gpu_memory_check").main(["--device", "cpu", "--authors", str(tmp_path)])
    assert exc.value.code == 2
    assert "zipformer.py: missing; allowed:" in capsys.readouterr().err
