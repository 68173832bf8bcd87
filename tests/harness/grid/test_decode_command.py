"""`harness decode`: decode saved checkpoints again under a decode key, never retrain."""
from pathlib import Path

import pytest

from harness.cli import main
from harness.grid.cells import load_cells
from harness.store import ResultsStore

TRAIN = "epochs: 2, save_every_n: 1, average_period: 1"
METHODS = ["ctc_greedy_search", "ctc_prefix_beam_search"]


@pytest.fixture
def trained(tiny_grid, monkeypatch):
    """A zipformer-tiny CTC cell trained for two epochs; (grid path, grid, cell)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path = tiny_grid(train=TRAIN)
    assert main(["run", path]) == 0
    grid, (cell,) = load_cells(path)
    return path, grid, cell


def test_avg_and_method_sweep_decodes_without_retraining(trained, capsys, tmp_path):
    path, grid, cell = trained
    run_dir = Path(grid.spec.run_root) / cell.cell_id
    ckpts = {p: p.stat().st_mtime_ns for p in (run_dir / "checkpoints").iterdir()}
    store = ResultsStore(grid.spec.store)
    capsys.readouterr()
    assert main(["decode", path, "--avg", "1", "2", "--methods", *METHODS, "--beam", "3"]) == 0
    out, err = capsys.readouterr()
    # one training, four decodes (2 avg x 2 methods) of each test set, each under its own key
    assert ckpts == {p: p.stat().st_mtime_ns for p in (run_dir / "checkpoints").iterdir()}
    assert (run_dir / "log" / "train-rank0.log").read_text().count("cell done") == 1
    assert [e["epoch"] for e in store.rows("epochs", cell_id=cell.cell_id)] == [1, 2]
    keys = {(w["decode_key"], w["method"]) for w in store.rows("wers", cell_id=cell.cell_id)}
    assert {("avg1-averaged-model", "ctc_greedy_search"), ("avg2-averaged-model", "ctc_greedy_search"),
            ("avg1-averaged-model-beam3", "ctc_prefix_beam_search"),
            ("avg2-averaged-model-beam3", "ctc_prefix_beam_search")} <= keys
    avg2 = [w for w in store.rows("wers", cell_id=cell.cell_id) if w["decode_key"].startswith("avg2")]
    assert {w["averaged"] for w in avg2} == {"epochs 1-2 (running average of steps 0-" + str(
        store.cell(cell.cell_id)["step"]) + ")"}
    assert "avg2-averaged-model-beam3" in out and "test_held_out" in out
    # every decode wrote its utterances under its WER row's key, counts adding up to the row's
    for w in store.rows("wers", cell_id=cell.cell_id):
        (u,) = store.utterances(**{k: w[k] for k in ("cell_id", "test_set", "method", "epoch", "decode_key")})
        assert int(u["errors"].sum()) == w["errors"] and int(u["ref_len"].sum()) == w["ref_words"]
    assert "weights of epochs 1-2 (running average" in err  # the log names the averaged epochs
    d = run_dir / "decode" / "epoch-2-avg2-averaged-model"
    for s in ("test", "test_held_out"):
        assert (d / f"wer-summary-{s}.txt").read_text().splitlines()[1] == "settings\tWER"
        for m in METHODS:
            recogs = (d / f"recogs-{s}-{m}.txt").read_text().splitlines()
            assert recogs and recogs[0].split("\t")[1].startswith("ref=")
            assert (d / f"errs-{s}-{m}.txt").read_text().startswith("%WER ")
    events = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for e in events:
        acc = EventAccumulator(str(e))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert "decode/test/ctc_prefix_beam_search/avg2-averaged-model-beam3/WER" in tags

    # changing the grid's decode settings keeps the cell: run trains nothing, decode uses them
    text = Path(path).read_text().replace("methods: [ctc_greedy_search]",
                                          "methods: [ctc_greedy_search], avg: 2, beam: 8")
    Path(path).write_text(text)
    assert load_cells(path)[1][0].cell_id == cell.cell_id
    assert main(["run", path]) == 0
    assert f"skip {cell.cell_id}" in capsys.readouterr().err
    assert main(["decode", path, "--epoch", "1", "--no-use-averaged-model"]) == 0
    # the grid's avg 2 after epoch 1: one epoch exists; averaged, named and stored as what it is
    assert any(w["decode_key"] == "avg1" and w["epoch"] == 1
               and w["averaged"] == "epoch 1 (its own weights; only 1 epoch(s) exist)"
               for w in store.rows("wers", cell_id=cell.cell_id))
    assert not any(w["decode_key"] == "avg2" and w["epoch"] == 1 for w in store.rows("wers", cell_id=cell.cell_id))
    assert "asked for avg2, decoded as avg1" in capsys.readouterr().err

    # several checkpoints averaged: named after the last, whose epoch the epoch column records
    capsys.readouterr()
    assert main(["decode", "--checkpoint", str(run_dir / "checkpoints" / "epoch-1.pt"),
                 str(run_dir / "checkpoints" / "epoch-2.pt"), "--data", cell.config.data.dir,
                 "--methods", "ctc_greedy_search", "--test-sets", "test", "--store", str(tmp_path / "two.sqlite")]) == 0
    assert (run_dir / "checkpoints" / "decode-epoch-2-avg2" / "wer-summary-test.txt").exists()
    (row,) = ResultsStore(tmp_path / "two.sqlite").rows("wers")
    assert row["epoch"] == 2 and row["decode_key"] == "avg2"
    assert ResultsStore(tmp_path / "two.sqlite").cell(row["cell_id"])["name"] == "epoch-2-avg2"
    # a checkpoint outside any grid: the trainer's format, variant and objective from the file
    out_dir = tmp_path / "ext"
    capsys.readouterr()
    assert main(["decode", "--checkpoint", str(run_dir / "checkpoints" / "epoch-2.pt"),
                 "--data", cell.config.data.dir, "--out", str(out_dir), "--methods", "ctc_greedy_search",
                 "--test-sets", "test", "--store", str(tmp_path / "ext.sqlite")]) == 0
    assert "epoch-2.pt (its own weights)" in capsys.readouterr().out
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "errs-test-ctc_greedy_search.txt", "recogs-test-ctc_greedy_search.txt", "wer-summary-test.txt"]
    (row,) = ResultsStore(tmp_path / "ext.sqlite").rows("wers")
    assert row["decode_key"] == "avg1" and row["epoch"] == 2 and row["test_set"] == "test"
    (utts,) = ResultsStore(tmp_path / "ext.sqlite").utterances()
    assert utts["n_utts"] > 0 and int(utts["errors"].sum()) == row["errors"] and all(utts["speakers"])
    # the layout `harness import-icefall` writes: weights, no optimizer or running average,
    # variant/objective/overrides (with the vocabulary) under "config"
    import torch

    full = torch.load(run_dir / "checkpoints" / "epoch-2.pt", weights_only=False)
    vocab = full["model"]["ctc_output.linear.weight"].shape[0]
    imported = {"model": full["model"], "model_avg": None, "optimizer": None, "epoch": None, "step": 0,
                "config": {"variant": "zipformer-tiny", "objective": ["ctc"],
                           "overrides": {"heads.vocab_size": vocab, "heads.blank_id": 0}}}
    torch.save(imported, tmp_path / "imported.pt")
    assert main(["decode", "--checkpoint", str(tmp_path / "imported.pt"), "--data", cell.config.data.dir,
                 "--methods", "ctc_greedy_search", "--test-sets", "test"]) == 0
    assert (tmp_path / "decode-imported" / "wer-summary-test.txt").exists()
    # without --methods: the objective's default (CTC: ctc_greedy_search), as a grid cell gets
    assert main(["decode", "--checkpoint", str(tmp_path / "imported.pt"), "--data", cell.config.data.dir,
                 "--test-sets", "test", "--out", str(tmp_path / "default-methods")]) == 0
    assert sorted(p.name for p in (tmp_path / "default-methods").glob("recogs-*")) == [
        "recogs-test-ctc_greedy_search.txt"]


def test_decode_mistakes_are_one_line(trained, capsys, tmp_path):
    path, grid, cell = trained
    ckpt = str(Path(grid.spec.run_root) / cell.cell_id / "checkpoints" / "epoch-1.pt")
    data = cell.config.data.dir
    cases = [
        (["decode", path, "--epoch", "7"], "--epoch: no checkpoint for epoch(s) [7]; allowed: 1, 2"),
        # as the authors' decode.py: --avg N needs N epochs up to the decoded one; nothing decoded
        (["decode", path, "--avg", "1", "3"], "--avg 3: epoch 2 has only 2 epoch(s) to average; allowed: "
                                              "--avg 1 to 2 (or a later --epoch)"),
        (["decode", path, "--epoch", "1", "2", "--avg", "2"], "--avg 2: epoch 1 has only 1 epoch(s)"),
        # --out under a file: refused before the decoding work, not after it
        (["decode", "--checkpoint", ckpt, "--data", data, "--out", f"{path}/d"],
         f"decode --checkpoint: --out {path}/d: {path} is a file, not a folder"),
        (["decode", "--checkpoint", ckpt, "--data", data, "--store", path, "--out", str(tmp_path / "d")],
         "not a readable results store"),
        (["decode", path, "--methods", "beam_me_up"], "unknown decoding method(s) beam_me_up; allowed:"),
        (["decode", path, "--methods", "greedy_search"], "has no method for objective ctc"),
        (["decode", path, "--test-sets", "nope"], "unknown split(s) ['nope']"),
        (["decode", path, "--set", "train.epochz=3"], "--set train.epochz: unknown key 'epochz'"),
        (["decode"], "give a grid file or --checkpoint PATH"),
        (["decode", "--checkpoint", ckpt], "give --data DIR"),
        (["decode", "--checkpoint", str(tmp_path / "no.pt"), "--data", data], "no.pt: no such checkpoint"),
        (["decode", "--checkpoint", ckpt, "--data", data, "--variant", "zipformer-s"],
         "does not fit zipformer-s (ctc)"),
        (["decode", "--checkpoint", ckpt, ckpt, "--data", data, "--use-averaged-model"],
         "needs one checkpoint that holds the running average"),
    ]
    # a checkpoint as `harness import-icefall` writes it: the vocabulary it records must match
    import torch

    state = torch.load(ckpt, weights_only=False)
    state["config"]["overrides"] = {"heads.vocab_size": 500, "heads.blank_id": 0}
    foreign = tmp_path / "imported.pt"
    torch.save(state, foreign)
    cases.append((["decode", "--checkpoint", str(foreign), "--data", data],
                  "the checkpoint's vocabulary has 500 units but the corpus's tokenizer has"))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    cases.append((["decode", "--checkpoint", str(garbage), "--data", data], "not a torch checkpoint"))
    wers = len(ResultsStore(grid.spec.store).rows("wers"))
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], (argv, err)
    assert len(ResultsStore(grid.spec.store).rows("wers")) == wers
    assert not (Path(grid.spec.run_root) / cell.cell_id / "decode" / "epoch-2-avg3-averaged-model").exists()
    assert not (tmp_path / "d").exists()

    # `harness decode GRID | head`: the reader went away; exit 0, no traceback
    import os
    import subprocess
    import sys

    r, w = os.pipe()
    os.close(r)
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "decode", path, "--test-sets", "test"], stdout=w,
                          stderr=subprocess.PIPE, text=True, timeout=300)
    os.close(w)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr


def test_a_cell_trained_under_its_legacy_id_is_adopted_not_retrained(trained, capsys):
    import sqlite3

    from harness.store.migrations import legacy_cell_id

    path, grid, cell = trained
    store = ResultsStore(grid.spec.store)
    run_root = Path(grid.spec.run_root)
    old = legacy_cell_id(cell.config, cell.spec)
    assert old != cell.cell_id  # decode.methods is not the default: it was hashed before
    # as an older version left it: store rows and run directory under the legacy id, in a store
    # that has not had the migration (its user_version before there were versions)
    (run_root / cell.cell_id).rename(run_root / old)
    store.rename_cell(cell.cell_id, old, run_dir=str(run_root / old))
    with sqlite3.connect(grid.spec.store) as con:
        con.execute("PRAGMA user_version=0")
    capsys.readouterr()
    assert main(["run", path]) == 0
    err = capsys.readouterr().err
    assert f"id {old} -> {cell.cell_id}" in err and f"skip {cell.cell_id}" in err
    assert store.cell(old) is None and store.cell(cell.cell_id)["status"] == "done"
    assert (run_root / cell.cell_id / "checkpoints" / "epoch-2.pt").exists() and not (run_root / old).exists()
    assert len(store.rows("epochs", cell_id=cell.cell_id)) == 2
