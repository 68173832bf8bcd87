import sqlite3

import pytest

from harness.store import ResultsStore


def test_cells_roundtrip_and_update(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    store.set_cell("abc", grid="g", name="base", config={"a": 1}, status="pending")
    store.set_cell("abc", status="running", step=10)
    row = store.cell("abc")
    assert row["status"] == "running" and row["step"] == 10 and row["grid"] == "g"
    assert row["config"] == '{"a": 1}'
    store.add_wer("abc", "test", "greedy", 3, wer=12.5, ins=1, sub=2, ref_words=24, errors=3,
                  **{"del": 0})
    store.add_wer("abc", "test", "greedy", 3, wer=10.0)
    df = store.frame("wers")
    assert len(df) == 1 and df.wer.iloc[0] == 10.0 and df.ins.iloc[0] == 1
    with sqlite3.connect(tmp_path / "r.sqlite") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_bad_status_and_columns_rejected(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    with pytest.raises(ValueError, match="allowed"):
        store.set_cell("x", status="exploded")
    with pytest.raises(KeyError, match="allowed"):
        store.upsert("bench", {"variant": "v", "device": "cpu", "batch": 1, "duration_s": 1.0, "bogus": 1})


def test_empty_frame_has_columns(tmp_path):
    df = ResultsStore(tmp_path / "r.sqlite").frame("profile")
    assert df.empty and "gflops" in df.columns
