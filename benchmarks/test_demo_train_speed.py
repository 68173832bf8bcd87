"""The issue-24 demo speed benchmark runs (one short round here) and reports both paths.

The numbers come from ``python3 benchmarks/demo_train_speed.py`` (README: "Training
speed"); this only checks that it measures what it says: the demo row's real step
on both code paths from one state, with the same losses within float rounding.
"""
from __future__ import annotations

import pytest



def test_demo_speed_benchmark_runs_both_paths(capsys, load_script):
    summary = load_script("demo_train_speed").main(["--rows", "zipformer", "--steps", "2", "--rounds", "1", "--warmup", "1"])
    (row,) = summary["rows"]
    assert row["row"] == "zipformer" and row["optimizer"] == "scaled_adam"
    assert row["before_steps_per_s"] > 0 and row["after_steps_per_s"] > 0
    assert row["loss_max_rel_diff"] < 1e-4
    # demo-like batches: ~10 s of 1.3-2.7 s utterances
    assert all(4 <= b <= 8 and 130 <= t <= 270 for b, t in row["batch_shapes"])
    assert "SUMMARY" in capsys.readouterr().out


def test_unknown_row_is_a_usage_error(capsys, load_script):
    with pytest.raises(SystemExit) as exc:
        load_script("demo_train_speed").main(["--rows", "nope"])
    assert exc.value.code == 2
    assert "--rows: ['nope']; allowed: zipformer" in capsys.readouterr().err


def test_against_an_older_commit_times_both_codes(load_script):
    # HEAD stands in for the older commit: the same step on an exported copy of the code and
    # on this checkout, each in its own child process; equal losses show both ran the same step
    # (--allocator: the same child timer on this code with and without the trainer's settings)
    summary = load_script("demo_train_speed").main(
        ["--rows", "zipformer", "--steps", "1", "--rounds", "1", "--warmup", "0",
         "--against", "HEAD", "--against-rounds", "1", "--allocator", "--allocator-rounds", "1"])
    allocator = summary["rows"][0]["allocator"]
    assert len(allocator["default_s_per_step"]) == len(allocator["trainer_s_per_step"]) == 1
    assert allocator["gain"] > 0
    against = summary["rows"][0]["against"]
    assert against["rev"] == "HEAD" and len(against["old_s_per_step"]) == 1
    assert against["old_s_per_step"][0] > 0 and against["new_s_per_step"][0] > 0
    assert against["loss_max_rel_diff"] < 1e-4


def test_against_an_unknown_revision_is_a_usage_error(capsys, load_script):
    with pytest.raises(SystemExit) as exc:
        load_script("demo_train_speed").main(["--rows", "zipformer", "--against", "no-such-rev"])
    assert exc.value.code == 2
    assert "--against: 'no-such-rev' is not a commit" in capsys.readouterr().err
