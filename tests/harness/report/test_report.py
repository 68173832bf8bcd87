"""`harness report` on an empty store and on a store of synthetic rows
(done, failed and diverged cells, per-epoch WERs, profile and bench rows)."""
from __future__ import annotations

import csv

import pytest

from harness.commands.report import build_report
from harness.report.data import select_wers
from harness.store import ResultsStore


def test_empty_store_reports_what_is_missing(tmp_path, capsys):
    from harness.cli import main

    out = tmp_path / "rep"
    assert main(["report", "--store", str(tmp_path / "absent.sqlite"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "No results store" in err and "No benchmark rows" in err
    assert not (tmp_path / "absent.sqlite").exists()      # reading creates no store
    index = (out / "index.md").read_text()
    assert "## What is missing" in index and "No grid cells" in index
    for f in ("table2-librispeech.md", "table2-librispeech.tex", "table2-librispeech.csv",
              "table5-ablations.csv", "figureA2-optimizers.png", "figureA3-activations.pdf"):
        assert (out / f).stat().st_size > 0
    assert not (out / "table3-aishell.md").exists()
    rows = list(csv.DictReader(open(out / "table2-librispeech.csv")))
    lit = [r for r in rows if r["model"].startswith("Squeezeformer-XS")]
    assert lit and lit[0]["source of ours"].startswith("literature")
    assert lit[0]["test-clean paper"] == "3.74"


def _cell(store, cid, variant, status, *, objective="transducer", corpus="synthetic", optimizer=None,
          error=None, overrides=None, name=None):
    store.set_cell(cid, grid="g", name=name or variant, variant=variant, objective=objective,
                   status=status, error=error, params=65_549_011, epoch=3.0,
                   config={"variant": variant, "objective": objective, "overrides": overrides or {},
                           "optimizer": {"name": optimizer}, "data": {"corpus": corpus}})


@pytest.fixture
def store(tmp_path):
    s = ResultsStore(tmp_path / "r.sqlite")
    _cell(s, "c1", "zipformer-m", "done")
    for epoch, (clean, other) in enumerate([(9.0, 12.0), (6.0, 9.0), (4.0, 7.0)], start=1):
        s.add_wer("c1", "test-clean", "modified_beam_search", epoch, wer=clean)
        s.add_wer("c1", "test-clean", "greedy_search", epoch, wer=clean + 1)
        s.add_wer("c1", "test-other", "modified_beam_search", epoch, wer=other)
        s.add_epoch("c1", epoch, train_loss=1.0 / epoch, valid_loss=1.1 / epoch, lr=0.04)
    _cell(s, "c2", "zipformer-m-layernorm", "failed", error="Traceback ...\nRuntimeError: out of memory")
    _cell(s, "c3", "zipformer-m-adam", "diverged", optimizer="adam", error="loss is nan at step 812")
    s.add_epoch("c3", 1, valid_loss=2.0)
    s.add_wer("c3", "test-clean", "modified_beam_search", 1, wer=40.0)
    s.add_wer("c3", "test-other", "modified_beam_search", 1, wer=50.0)
    _cell(s, "c4", "zipformer-s", "done", corpus="aishell")
    s.add_wer("c4", "dev", "modified_beam_search", 2, wer=5.0, unit="char")
    s.add_wer("c4", "test", "modified_beam_search", 2, wer=5.5, unit="char")
    s.add_profile("zipformer-m", "transducer", params=65_549_011, encoder_params=63_994_103,
                  gflops=63.1, gflops_convention="deepspeed+authors_rules")
    for variant, t, mem in (("zipformer-m", 0.8, 300.0), ("conformer-m", 1.0, 400.0),
                            ("zipformer-s", 0.9, 500.0), ("conformer-s", 0.6, 250.0)):
        s.add_bench(variant, "Test CPU", 2, 10.0, threads=1, runs=3, median_s=t, p25_s=t * 0.9,
                    p75_s=t * 1.1, peak_mem_mb=mem, mem_method="test")
    return s


def test_report_from_synthetic_rows(store, tmp_path):
    out = tmp_path / "rep"
    index, missing = build_report(store.path, out)
    text = index.read_text()
    assert "zipformer-m-layernorm" in " ".join(missing) and "out of memory" in " ".join(missing)
    t5 = {r["model"]: r for r in csv.DictReader(open(out / "table5-ablations.csv"))}
    assert t5["Zipformer-M"]["test-clean ours"] == "4.0"          # last epoch, beam search
    assert t5["Zipformer-M"]["diff test-clean"] == "+1.79"
    assert t5["LayerNorm"]["test-other ours"] == "failed"
    assert t5["Adam"]["test-clean ours"] == "diverged"
    assert t5["No NLA"]["test-clean ours"] == "not run"
    t3 = {r["model"]: r for r in csv.DictReader(open(out / "table3-aishell.csv"))}
    assert t3["Zipformer-S"]["test ours"] == "5.5" and "literature" in t3["Branchformer (Peng et al., 2022)"]["source of ours"]
    assert not (out / "table4-wenetspeech.md").exists()
    t2 = {(r["model"], r["type"]): r for r in csv.DictReader(open(out / "table2-librispeech.csv"))}
    row = t2[("Zipformer-M", "pruned transducer")]
    assert row["GFLOPs ours"] == "63.1" and row["diff GFLOPs"] == "+0.3%"
    ratios = list(csv.DictReader(open(out / "figure3-ratios.csv")))
    assert {r["scale"] for r in ratios} == {"S", "M"}
    assert "holds only in part: faster at M, lighter at M" in text
    assert "Test CPU, batch 2 x 10 s, 1 thread(s)" in text
    for f in ("figure3-test-cpu-batch-2-x-10-s-1-thread-s.png", "figureA2-optimizers.pdf",
              "table6-activation-constraints.tex", "figure3-bench.md"):
        assert (out / f).stat().st_size > 0, f
    assert "](figureA3-activations.png)" in text


def test_select_wers_uses_last_epoch_and_preferred_method():
    rows = [{"test_set": "test_clean", "method": m, "epoch": e, "wer": w}
            for m, e, w in (("greedy_search", 2, 3.0), ("modified_beam_search", 2, 2.5),
                            ("modified_beam_search", 1, 9.0))]
    assert select_wers(rows, "transducer") == {"test-clean": (2.5, "modified_beam_search", 2)}
    assert select_wers(rows, "ctc") == {"test-clean": (3.0, "greedy_search", 2)}


def test_runs_table_shows_every_method_side_by_side(tmp_path):
    from harness.store import ResultsStore

    s = ResultsStore(tmp_path / "r.sqlite")
    s.set_cell("z1", grid="default", name="zipformer", variant="zipformer-s", objective="transducer",
               status="done", params=1_340_000, config={"data": {"corpus": "synthetic"}})
    for method, wer in (("greedy_search", 23.5), ("modified_beam_search", 22.0)):
        s.add_wer("z1", "test_held_out", method, 4, wer=wer, unit="word")
        s.add_wer("z1", "test_held_out", method, 2, wer=60.0, unit="word")
    s.set_cell("c1", grid="default", name="conformer", variant="conformer-s", objective="ctc",
               status="diverged", config={"data": {"corpus": "synthetic"}})
    out = tmp_path / "rep"
    build_report(s.path, out)
    rows = list(csv.DictReader(open(out / "runs.csv")))
    z = [r for r in rows if r["grid/cell"] == "default/zipformer"]
    assert len(z) == 1 and z[0]["greedy_search"] == "23.5" and z[0]["modified_beam_search"] == "22.0"
    assert z[0]["epoch"] == "4" and z[0]["test set"] == "test_held_out"
    c = [r for r in rows if r["grid/cell"] == "default/conformer"][0]
    assert c["greedy_search"] == "diverged"
    # a run measured only on the synthetic test sets is no Table 2 row: that table, which would
    # show it as "no WER" beside every other paper row "not run", is not written at all
    assert not (out / "table2-librispeech.csv").exists()
    assert "Not generated (" in (out / "index.md").read_text()


def test_figure_a2_colours_by_cell_and_plots_each_cells_own_schedule(tmp_path):
    from harness.report.data import load_cells
    from harness.report.figures import cell_colors, cell_schedule, figure_a2

    cells = load_cells([
        {"cell_id": f"c{i}", "name": f"row{i}", "grid": "g", "status": "done", "step": 40,
         "config": {"optimizer": {"lr": lr, "schedule_options": {"warmup_batches": 5}},
                    "data": {"corpus": "synthetic"}, "variant": "zipformer-tiny"}}
        for i, lr in enumerate((0.1, 0.05, 0.02))] + [
        {"cell_id": "a", "name": "adam", "grid": "g", "status": "done", "step": 40,
         "config": {"optimizer": {"name": "adam", "lr": 0.75, "schedule_options": {"warmup": 10}},
                    "data": {"corpus": "synthetic"}}}], [])
    epochs = [{"cell_id": c.cell_id, "epoch": e, "step": 10 * e, "valid_loss": 1.0 / e} for c in cells
              for e in (1, 2, 3, 4)]
    assert len(set(cell_colors(cells).values())) == 4  # three ScaledAdam ablations, three colours
    what, curve = cell_schedule(cells[1], epochs[4:8])
    assert what == "Eden, base 0.05" and curve[-1][0] == 40
    from variants.optim import eden_lr, noam_lr

    assert curve[-1][1] == pytest.approx(eden_lr(40, 4, base_lr=0.05, warmup_batches=5))
    what, curve = cell_schedule(cells[3], epochs[12:])
    assert what == "Noam, base 0.75" and curve[-1][1] == pytest.approx(noam_lr(40, base=0.75, warmup=10))
    paths, caption = figure_a2(cells, [], epochs, tmp_path)
    assert all(p.stat().st_size > 0 for p in paths)
    assert "one colour per cell" in caption and "each cell's own schedule" in caption


def test_report_reads_the_stores_the_grids_name_and_writes_under_runs(tmp_path, monkeypatch, capsys):
    from harness.cli import main
    from harness.grid.cells import load_cells

    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").mkdir()
    grid_text = ("name: {n}\nstore: {s}\nbase:\n  variant: zipformer-tiny\n  objective: ctc\n"
                 "  data: {{corpus: synthetic, dir: d, max_duration: 8}}\n  train: {{epochs: {e}}}\n")
    for n, e in (("one", 1), ("two", 2)):
        (tmp_path / "experiments" / f"{n}.yaml").write_text(grid_text.format(n=n, s=f"st/{n}.sqlite", e=e))
        _, (cell,) = load_cells(str(tmp_path / "experiments" / f"{n}.yaml"))
        store = ResultsStore(tmp_path / "st" / f"{n}.sqlite")
        store.set_cell(cell.cell_id, grid=n, name=f"cell-{n}", variant="zipformer-tiny", objective="ctc",
                       status="done", config=cell.resolved())
        store.add_wer(cell.cell_id, "test", "ctc_greedy_search", e, decode_key="avg1-averaged-model",
                      wer=10.0 * e, unit="word")
        store.set_cell("other", grid="x", name="not-in-the-grid", status="done", config={})
    assert main(["report"]) == 0
    capsys.readouterr()
    index = (tmp_path / "runs" / "report" / "index.md").read_text()
    assert "st/one.sqlite" in index and "st/two.sqlite" in index
    runs = (tmp_path / "runs" / "report" / "runs.csv").read_text()
    assert "one/cell-one" in runs and "two/cell-two" in runs and "20.0" in runs
    # a grid: its store, only its cells
    assert main(["report", "experiments/two.yaml", "--out", "sel"]) == 0
    runs = (tmp_path / "sel" / "runs.csv").read_text()
    assert "two/cell-two" in runs and "cell-one" not in runs and "not-in-the-grid" not in runs
    assert not (tmp_path / "reports").exists()


def test_profile_json_writes_no_tracked_report(tmp_path, monkeypatch, capsys):
    from harness.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["profile", "zipformer-tiny", "--json", "--no-flops", "--no-store", "--jobs", "1"]) == 0
    assert capsys.readouterr().out.lstrip().startswith("[")
    assert not (tmp_path / "reports").exists() and not (tmp_path / "runs").exists()
    assert main(["profile", "zipformer-tiny", "--no-flops", "--no-store", "--jobs", "1"]) == 0
    assert (tmp_path / "runs" / "profile" / "profile.md").exists() and not (tmp_path / "reports").exists()


def test_paper_tables_and_runs_table_show_a_ci_where_the_decode_has_utterances(tmp_path):
    import numpy as np

    from harness.decoding import UtteranceErrors
    from harness.store import ResultsStore

    s = ResultsStore(tmp_path / "r.sqlite")
    rng = np.random.default_rng(0)
    n = 60
    ref = rng.integers(10, 30, n)
    subs = rng.binomial(ref, 0.05)
    utts = UtteranceErrors(ids=tuple(f"{100 + i % 6}-1-{i:04d}" for i in range(n)),
                           speakers=tuple(str(100 + i % 6) for i in range(n)), ref_len=ref, subs=subs,
                           dels=np.zeros(n, dtype=np.int64), ins=np.zeros(n, dtype=np.int64))
    st = utts.stats()
    for cid, with_utts in (("ln", True), ("old", False)):
        s.set_cell(cid, grid="t5", name=cid, variant="zipformer-m-layernorm", objective="transducer",
                   status="done", config={"data": {"corpus": "librispeech"}})
        if with_utts:
            s.add_utterances(cid, "test-clean", "modified_beam_search", 50, "avg1-averaged-model-beam4", utts)
        s.add_wer(cid, "test-clean", "modified_beam_search", 50, "avg1-averaged-model-beam4", wer=st.wer,
                  errors=st.errors, ref_words=st.ref_words, unit="word")
    out = tmp_path / "rep"
    build_report(s.path, out)
    t5 = {r["source of ours"].split(";")[0]: r for r in csv.DictReader(open(out / "table5-ablations.csv"))}
    ln, old = t5["t5/ln"], t5["t5/old"]
    lo, hi = map(float, ln["test-clean ours"].split("[")[1].rstrip("]").split(","))
    assert ln["test-clean ours"].startswith(f"{st.wer:.2f} [") and lo < st.wer < hi
    assert float(ln["diff test-clean"]) == pytest.approx(st.wer - 2.29, abs=0.006)
    assert float(old["test-clean ours"]) == pytest.approx(st.wer)   # no utterances: the point estimate only
    runs = {r["grid/cell"]: r for r in csv.DictReader(open(out / "runs.csv"))}
    assert runs["t5/ln"]["modified_beam_search"] == ln["test-clean ours"]
    assert float(runs["t5/old"]["modified_beam_search"]) == pytest.approx(st.wer)


def test_main_job_report_shows_the_paper_comparisons_its_rows_repeat(tmp_path):
    """experiments/default.yaml's cells (store rows, no training): its conformer row repeats
    Table 2's comparison, layernorm and adam Table 5's; Table 6 has no row, so is not written;
    rows are named by their switches from the base (its `zipformer` row)."""
    from pathlib import Path

    from harness.grid.cells import load_cells

    grid, cells = load_cells(str(Path(__file__).resolve().parents[3] / "experiments" / "default.yaml"))
    s = ResultsStore(tmp_path / "r.sqlite")
    for i, c in enumerate(cells):
        s.set_cell(c.cell_id, grid=grid.name, name=c.name, variant=c.variant, objective=c.objective,
                   status="done", config=c.resolved(), step=100)
        s.add_epoch(c.cell_id, 1, valid_loss=1.0 + i / 100, step=100)
        s.add_wer(c.cell_id, "test", "ctc_greedy_search", 1, decode_key="avg1-averaged-model",
                  wer=20.0 + i, unit="word")
    out = tmp_path / "rep"
    index, _ = build_report(s.path, out, None, [(grid, cells)])
    t2 = list(csv.DictReader(open(out / "table2-librispeech.csv")))
    assert {(r["grid row"], r["paper comparison"]) for r in t2} == {
        ("default/conformer", "Conformer-S vs Zipformer-S")}
    assert t2[0]["switches vs base"].startswith("variant=conformer-s, optimizer.name=adam")
    t5 = {r["grid row"]: r for r in csv.DictReader(open(out / "table5-ablations.csv"))}
    assert set(t5) == {"default/layernorm", "default/adam"}
    assert t5["default/layernorm"]["paper comparison"] == "LayerNorm vs Zipformer-M"
    assert t5["default/layernorm"]["switches vs base"] == "overrides.norm=layer_norm"
    assert t5["default/adam"]["paper comparison"] == "Adam vs Zipformer-M"
    assert "overrides.norm_on_every_module=true" in t5["default/adam"]["switches vs base"]
    assert float(t5["default/layernorm"]["ours: diff vs baseline [95% CI]"]) == pytest.approx(6.0)
    assert not (out / "table6-activation-constraints.csv").exists()
    text = index.read_text()
    assert "Table 6" in text.split("Not generated (")[1] and "| not run |" not in text
    # both optimizers trained: the convergence figure is the paper's Figure A.2
    assert (out / "figureA2-optimizers.png").stat().st_size > 0
