"""`harness bench --train` and `--saved-bytes`: tiny models, real training steps in a
fresh process, rows in the store's train_bench table, and the report's table."""
from __future__ import annotations

import pytest

from harness.profile.saved_bytes import measure_saved_bytes
from harness.profile.train_bench import check_train_args, measure_train

TINY = "zipformer-tiny"


@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_training_steps_in_process(precision):
    r = measure_train(TINY, 1, 1.0, steps=2, warmup=1, precision=precision, objective="ctc")
    assert r.precision == precision and r.device_type == "cpu" and len(r.times_s) == 2
    assert r.p25_s <= r.median_s <= r.p75_s and r.peak_mem_mb >= 0 and r.saved_mb > 0
    # every phase took part of the step, and together they are the step
    assert set(r.phases) == {"forward", "loss", "backward", "optimizer"}
    assert all(v > 0 for v in r.phases.values()) and 0.9 < sum(r.phases.values()) <= 1.0 + 1e-6
    assert r.steps_per_s == pytest.approx(1.0 / r.median_s) and not r.compiled and r.compile_s is None
    # the live-tensor peak includes what the forward keeps and the gradients
    assert r.live_peak_mb > r.saved_mb


def test_cli_train_stores_the_row_and_the_report_shows_it(tmp_path, capsys):
    from harness.cli import main
    from harness.commands.report import build_report
    from harness.store import ResultsStore

    store = tmp_path / "r.sqlite"
    argv = ["bench", TINY, "--train", "--objective", "ctc", "--batch", "1",
            "--duration", "1", "--runs", "1", "--warmup", "0", "--store", str(store)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "training steps: batch 1 x 1 s, float32, ctc" in out and TINY in out
    (row,) = ResultsStore(store).rows("train_bench")
    assert row["variant"] == TINY and row["precision"] == "float32"
    assert row["median_s"] > 0 and row["saved_mb"] > 0 and row["objective"] == "ctc"
    assert row["steps_per_s"] > 0 and "backward" in row["phases"]
    assert "eager" in out and "steps/s" in out
    assert row["live_peak_mb"] > 0 and "live MB" in out
    index, _ = build_report(store, tmp_path / "report")
    md = (tmp_path / "report" / "train-bench.md").read_text()
    assert TINY in md and "Training step time" in md
    assert "train-bench" in index.read_text()


def test_saved_bytes_bf16_keeps_less_than_float32():
    """A tiny Zipformer, 2 x 2 s: under CUDA's autocast policy the lean functions
    keep no float32 copies of the attention weights or activations, so bf16 saves
    well under float32 (the two would be about equal with plain autograd)."""
    f32 = measure_saved_bytes(TINY, "float32", batch=2, duration_s=2.0)
    bf16 = measure_saved_bytes(TINY, "bf16", batch=2, duration_s=2.0)
    assert 0 < bf16.saved_bytes < 0.8 * f32.saved_bytes
    assert not [s for s in bf16.largest if s.dtype == "float32" and len(s.shape) == 4
                and s.shape[-1] == s.shape[-2]]          # no float32 (heads, B, T, T)
    # deterministic for equal arguments
    assert measure_saved_bytes(TINY, "float32", batch=2, duration_s=2.0).saved_bytes \
        == f32.saved_bytes
    assert f32.mb_per_audio_second == pytest.approx(f32.saved_bytes / 2**20 / 4.0)


def test_cli_saved_bytes_prints_both_precisions(capsys):
    from harness.cli import main

    assert main(["bench", TINY, "--saved-bytes", "--batch", "1", "--duration", "1"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(TINY)]
    assert [ln.split()[1] for ln in lines] == ["float32", "bf16"]


@pytest.mark.parametrize("kwargs, message", [
    ({"precision": "fp8"}, "unknown precision 'fp8'; allowed: float32, bf16"),
    ({"objective": "ce"}, "unknown objective 'ce'; allowed: transducer, ctc, attention"),
    ({"tokens_per_s": 0}, "tokens per second must be > 0"),
])
def test_bad_train_options(kwargs, message):
    args = dict(precision="float32", objective="ctc", tokens_per_s=4.0) | kwargs
    with pytest.raises(ValueError, match=message):
        check_train_args(**args)


def test_bad_cli_precision_is_a_usage_error(capsys):
    from harness.cli import main

    assert main(["bench", "--train", "--precision", "fp8"]) == 2
    assert capsys.readouterr().err.startswith("error: harness bench: argument --precision: invalid choice: 'fp8'")
