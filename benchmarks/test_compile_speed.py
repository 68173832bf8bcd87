"""benchmarks/compile_speed.py runs (Dynamo only here: inductor's compile takes minutes) and
reports a bounded number of graphs for the demo's Zipformer row."""
from __future__ import annotations

import pytest


def test_compile_speed_counts_graphs(load_script):
    r = load_script("compile_speed").main(["--steps", "2", "--backend", "eager"])
    assert r["eager_s_per_step"] > 0 and r["compiled_s_per_step"] > 0
    assert r["dynamo_after_first"]["graphs"] == 4                   # one per stack
    assert r["dynamo_after_last"] == r["dynamo_after_first"]       # the later steps add none
    assert r["dynamo_after_last"]["graph_breaks"] == 0


def test_unknown_row_is_a_usage_error(capsys, load_script):
    with pytest.raises(SystemExit) as exc:
        load_script("compile_speed").main(["--row", "nope"])
    assert exc.value.code == 2
    assert "--row: 'nope'; allowed: zipformer" in capsys.readouterr().err
