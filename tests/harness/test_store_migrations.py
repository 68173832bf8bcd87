"""The results store's versioned migrations (``harness.store.migrations``) on real SQLite files
written in an older layout."""
import json
import sqlite3

from harness.config import CellConfig
from harness.config.cell_id import cell_id
from harness.store import ResultsStore
from harness.store.migrations import SCHEMA_VERSION, legacy_cell_id
from variants import get_spec

#: the tables as the store wrote them before decode keys, per-utterance rows and ``user_version``
OLD_TABLES = (
    'CREATE TABLE cells ("cell_id" TEXT NOT NULL, "grid" TEXT, "name" TEXT, "variant" TEXT, '
    '"objective" TEXT, "config" TEXT, "code_version" TEXT, "status" TEXT NOT NULL, "error" TEXT, '
    '"step" INTEGER, "epoch" REAL, "params" INTEGER, "gflops" REAL, "run_dir" TEXT, "created_at" REAL, '
    '"updated_at" REAL, PRIMARY KEY ("cell_id"))',
    'CREATE TABLE epochs ("cell_id" TEXT NOT NULL, "epoch" INTEGER NOT NULL, "step" INTEGER, '
    '"train_loss" REAL, "valid_loss" REAL, "lr" REAL, "seconds" REAL, "extra" TEXT, '
    'PRIMARY KEY ("cell_id", "epoch"))',
    'CREATE TABLE wers ("cell_id" TEXT NOT NULL, "test_set" TEXT NOT NULL, "method" TEXT NOT NULL, '
    '"epoch" INTEGER NOT NULL, "unit" TEXT, "wer" REAL, "errors" INTEGER, "ins" INTEGER, "del" INTEGER, '
    '"sub" INTEGER, "ref_words" INTEGER, "created_at" REAL, PRIMARY KEY ("cell_id", "test_set", "method", "epoch"))',
)


def config(**changes) -> CellConfig:
    data = {"variant": "zipformer-tiny", "objective": "ctc",
            "data": {"corpus": "synthetic", "dir": "data/tiny", "max_duration": 8}, "train": {"epochs": 2},
            "decode": {"methods": ["ctc_greedy_search"]}}
    for section, values in changes.items():
        data[section] = {**data.get(section, {}), **values} if isinstance(values, dict) else values
    return CellConfig.model_validate(data)


def write_old_store(path, cells: list[tuple[str, str, dict, str]]) -> None:
    """An old store file: (cell id, name, config as stored, run folder) per cell, each with one
    epoch and one WER row under that id."""
    with sqlite3.connect(path) as con:
        for sql in OLD_TABLES:
            con.execute(sql)
        for cid, name, cfg, run_dir in cells:
            con.execute("INSERT INTO cells (cell_id, grid, name, variant, objective, config, status, run_dir) "
                        "VALUES (?, 'g', ?, ?, 'ctc', ?, 'done', ?)",
                        (cid, name, cfg.get("variant"), json.dumps(cfg), run_dir))
            con.execute("INSERT INTO epochs (cell_id, epoch, train_loss) VALUES (?, 1, 2.5)", (cid,))
            con.execute("INSERT INTO wers (cell_id, test_set, method, epoch, wer) "
                        "VALUES (?, 'test', 'ctc_greedy_search', 1, 40.0)", (cid,))


def user_version(path) -> int:
    with sqlite3.connect(path) as con:
        return con.execute("PRAGMA user_version").fetchone()[0]


def test_an_old_store_is_opened_with_its_cells_under_their_new_ids_once(tmp_path):
    runs = tmp_path / "runs"
    # as the old code stored them: keep_last_k at its old default 30, decoding settings in the id
    trained, moved_away = config(train={"keep_last_k": 30}), config(overrides={"norm": "layer_norm"})
    plain = config(decode={"methods": None}, train={"epochs": 3})  # nothing the old id hashed and the new does not
    specs = {id(c): get_spec(c.variant, c.overrides) for c in (trained, moved_away, plain)}
    old = {k: legacy_cell_id(c, specs[id(c)]) for k, c in (("trained", trained), ("moved", moved_away),
                                                            ("plain", plain))}
    # the ids today's grid gives the same cells (keep_last_k left at today's default)
    new = {"trained": cell_id(config(), specs[id(trained)]),
           "moved": cell_id(moved_away, specs[id(moved_away)])}
    assert old["trained"] != new["trained"] and old["moved"] != new["moved"]
    assert old["plain"] == cell_id(plain, specs[id(plain)])
    (runs / old["trained"] / "checkpoints").mkdir(parents=True)
    (runs / old["trained"] / "checkpoints" / "epoch-1.pt").write_bytes(b"weights")
    path = tmp_path / "results.sqlite"
    write_old_store(path, [
        (old["trained"], "base", trained.model_dump(mode="json"), str(runs / old["trained"])),
        (old["moved"], "ln", moved_away.model_dump(mode="json"), str(runs / old["moved"])),
        (old["plain"], "plain", plain.model_dump(mode="json"), str(runs / old["plain"])),
        ("decoded", "checkpoint.pt", {"variant": "zipformer-tiny"}, str(tmp_path / "out")),  # a decoded checkpoint
    ])

    # a read-only open (report, status) changes nothing
    assert {r["cell_id"] for r in ResultsStore(path, readonly=True).rows("cells")} == {*old.values(), "decoded"}
    assert user_version(path) == 0

    notes: list[str] = []
    store = ResultsStore(path, warn=notes.append)
    assert {r["cell_id"] for r in store.rows("cells")} == {new["trained"], new["moved"], old["plain"], "decoded"}
    for key in ("trained", "moved"):
        assert store.cell(new[key])["status"] == "done"
        assert [r["train_loss"] for r in store.rows("epochs", cell_id=new[key])] == [2.5]
        (wer,) = store.rows("wers", cell_id=new[key])
        assert wer["wer"] == 40.0 and wer["decode_key"] == ""  # the older column migration ran too
        assert not store.rows("epochs", cell_id=old[key])
        assert any(f"id {old[key]} -> {new[key]}" in n for n in notes)
    # the run folder moved with the rows; one that is not there is named, and its rows move anyway
    assert (runs / new["trained"] / "checkpoints" / "epoch-1.pt").read_bytes() == b"weights"
    assert not (runs / old["trained"]).exists()
    assert store.cell(new["trained"])["run_dir"] == str(runs / new["trained"])
    assert any(f"{runs / old['moved']} is not there" in n for n in notes)
    assert store.cell("decoded")["run_dir"] == str(tmp_path / "out")
    assert user_version(path) == SCHEMA_VERSION

    # once: a row written under an old id after the migration is left where it is
    with sqlite3.connect(path) as con:
        con.execute("UPDATE cells SET cell_id=? WHERE cell_id=?", (old["trained"], new["trained"]))
    notes.clear()
    store = ResultsStore(path, warn=notes.append)
    assert store.cell(old["trained"]) is not None and store.cell(new["trained"]) is None and notes == []


def test_a_new_store_starts_at_the_current_version(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    store.set_cell("abc", status="pending")
    assert user_version(tmp_path / "r.sqlite") == SCHEMA_VERSION
