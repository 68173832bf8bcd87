"""A store written before per-utterance results: compare and report give point estimates and
say how to get intervals, never an error; opening it for writing adds the table."""
import json
import sqlite3

from harness.grid.cells import load_cells
from harness.store import ResultsStore
from harness.store.results_store import SCHEMA, PRIMARY_KEYS

from support.gridtext import BASE

ROWS = BASE.replace("base:\n", "base:\n  seeds: [1, 2]\n", 1) + (
    "ablations:\n  - {name: layernorm, set: {overrides.norm: layer_norm}}\n")
WER = {("base", 1): 20.0, ("base", 2): 22.0, ("layernorm", 1): 25.0, ("layernorm", 2): 26.0}


def _old_store(path, cells):
    """The schema of the code before the ``utterances`` table, written with plain SQL."""
    with sqlite3.connect(path) as con:
        for table, cols in SCHEMA.items():
            if table == "utterances":
                continue
            col_sql = ", ".join(f'"{c}" {t}' for c, t in cols.items())
            pk = ", ".join(f'"{c}"' for c in PRIMARY_KEYS[table])
            con.execute(f"CREATE TABLE {table} ({col_sql}, PRIMARY KEY ({pk}))")
        for c in cells:
            con.execute("INSERT INTO cells (cell_id, grid, name, variant, objective, config, status) "
                        "VALUES (?, ?, ?, ?, ?, ?, 'done')",
                        (c.cell_id, c.grid, c.name, c.variant, c.objective, json.dumps(c.resolved())))
            wer = WER[(c.labels["row"], int(c.labels["seed"]))]
            con.execute("INSERT INTO wers (cell_id, test_set, method, epoch, decode_key, unit, wer, errors, "
                        "ref_words) VALUES (?, 'test', 'ctc_greedy_search', 2, 'avg1-averaged-model', 'word', "
                        "?, ?, 100)", (c.cell_id, wer, int(wer)))


def _harness(capsys, *args):
    from harness.cli import main

    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_old_store_gives_point_estimates_and_the_redecode_message(write_grid, tmp_path, capsys):
    path = write_grid(ROWS.replace("name: t\n", f"name: t\nstore: {tmp_path / 'old.sqlite'}\n"))
    grid, cells = load_cells(path)
    _old_store(tmp_path / "old.sqlite", cells)

    rc, out, err = _harness(capsys, "compare", path, "--json")
    assert rc == 0, err
    lines = {v["row"]: v for v in map(json.loads, out.splitlines())}
    base, ln = lines["base"], lines["layernorm"]
    assert base["n_seeds"] == ln["n_seeds"] == 2 and base["wer"] == 21.0 and ln["wer"] == 25.5
    assert ln["delta"] == 4.5 and ln["delta_ci"] is None and ln["wer_ci"] is None and ln["verdict"] is None
    assert ln["note"] == "re-decode with `harness decode` for intervals"
    rc, text, _ = _harness(capsys, "compare", path)
    assert rc == 0 and "note: re-decode with `harness decode` for intervals" in text

    rc, _, err = _harness(capsys, "report", path, "--out", str(tmp_path / "rep"))
    assert rc == 0, err
    page = (tmp_path / "rep" / "index.md").read_text()
    assert "re-decode with `harness decode` for intervals" in page and "+4.50" in page
    # read-only commands left the old store as it was; opening it to write adds the table
    with sqlite3.connect(tmp_path / "old.sqlite") as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "utterances" not in tables
    assert ResultsStore(tmp_path / "old.sqlite").utterances() == []
    with sqlite3.connect(tmp_path / "old.sqlite") as con:
        assert con.execute("SELECT count(*) FROM utterances").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM wers").fetchone()[0] == 4
