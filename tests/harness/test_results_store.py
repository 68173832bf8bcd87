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


def test_old_wers_table_is_migrated_to_decode_keys(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:  # the layout before decode keys
        con.execute('CREATE TABLE wers (cell_id TEXT NOT NULL, test_set TEXT NOT NULL, method TEXT NOT NULL, '
                    'epoch INTEGER NOT NULL, unit TEXT, wer REAL, errors INTEGER, ins INTEGER, "del" INTEGER, '
                    'sub INTEGER, ref_words INTEGER, created_at REAL, '
                    'PRIMARY KEY (cell_id, test_set, method, epoch))')
        con.execute("INSERT INTO wers (cell_id, test_set, method, epoch, wer) VALUES ('c', 't', 'm', 3, 9.5)")
    store = ResultsStore(path)
    (old,) = store.rows("wers")
    assert old["decode_key"] == "" and old["wer"] == 9.5 and old["averaged"] is None
    store.add_wer("c", "t", "m", 3, decode_key="avg2", wer=8.0)
    assert sorted((r["decode_key"], r["wer"]) for r in store.rows("wers")) == [("", 9.5), ("avg2", 8.0)]


def test_utterances_roundtrip_replace_and_rename(tmp_path):
    import numpy as np

    from harness.decoding import utterance_errors

    store = ResultsStore(tmp_path / "r.sqlite")
    u = utterance_errors(["a b c", "d e", "f"], ["a x c", "d e e", ""], ids=["1-2-0001", "1-2-0002", "3-2-0001"],
                         speakers=["1", "1", "3"])
    assert (u.ref_len.tolist(), u.subs.tolist(), u.ins.tolist(), u.dels.tolist()) == (
        [3, 2, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1])
    store.add_utterances("abc", "test", "greedy", 3, "avg1", u)
    (row,) = store.utterances(cell_id="abc")
    assert row["ids"] == list(u.ids) and row["speakers"] == ["1", "1", "3"] and row["unit"] == "word"
    assert row["errors"].tolist() == [1, 1, 1] and row["ref_len"].tolist() == [3, 2, 1]
    # a decode with the same key replaces it; the counts sum to the totals error_rate gives
    u2 = utterance_errors(["a b c"], ["a b c"], ids=["1-2-0001"], speakers=[None])
    store.add_utterances("abc", "test", "greedy", 3, "avg1", u2)
    (row,) = store.utterances(cell_id="abc")
    assert row["n_utts"] == 1 and row["speakers"] == [""] and int(np.sum(row["errors"])) == 0
    store.rename_cell("abc", "new")
    assert store.utterances(cell_id="abc") == [] and len(store.utterances(cell_id="new")) == 1
