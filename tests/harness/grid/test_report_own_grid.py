"""`harness report` of a user's own grid (a real tiny norm ablation, run and decoded): only the
tables and figures whose rows exist, figure titles and legends from the grid's own rows, rows
named by the switches that differ from the base."""
import csv
import os
import subprocess
import sys

ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def test_report_of_a_norm_ablation_shows_its_own_rows(tiny_grid, tmp_path, monkeypatch, capsys):
    import harness.report.figures as figures
    from harness.cli import main

    path = tiny_grid(name="norms", rows="  - {name: layernorm, set: {overrides.norm: layer_norm}}\n",
                     train="epochs: 1, max_steps: 2, save_every_n: 1, average_period: 1")
    run = subprocess.run([sys.executable, "-m", "harness.cli", "run", path, "--workers", "2"], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]

    drawn = {}   # every figure's title, legend entries and tick labels, as saved
    real_save = figures.save

    def save(fig, out_dir, stem):
        texts = [fig._suptitle.get_text()] if fig._suptitle else []
        for ax in fig.axes:
            texts.append(ax.get_title())
            legend = ax.get_legend()
            texts += [t.get_text() for t in legend.get_texts()] if legend else []
            texts += [t.get_text() for t in ax.get_yticklabels()]
        drawn[stem] = texts
        return real_save(fig, out_dir, stem)

    monkeypatch.setattr(figures, "save", save)
    out = tmp_path / "report"
    assert main(["report", path, "--out", str(out)]) == 0
    capsys.readouterr()
    page = (out / "index.md").read_text()

    # no paper table padded with "not run": Tables 2, 3, 4 and 6 have no row here; Table 5's
    # LayerNorm comparison is the one this grid repeats, and only it is shown
    for f in out.glob("*.csv"):
        assert not any(v == "not run" for r in csv.reader(open(f)) for v in r), f
    assert "| not run |" not in page
    for stem in ("table2-librispeech", "table3-aishell", "table4-wenetspeech", "table6-activation-constraints"):
        assert not (out / f"{stem}.csv").exists(), stem
    assert "Not generated (" in page and "Table 6" in page
    t5 = list(csv.DictReader(open(out / "table5-ablations.csv")))
    assert {r["grid row"] for r in t5} == {"norms/layernorm"}
    assert {r["our test set"] for r in t5} == {"test", "test_held_out"}
    for r in t5:
        assert r["switches vs base"] == "overrides.norm=layer_norm" and r["baseline row"] == "base"
        assert r["paper comparison"] == "LayerNorm vs Zipformer-M"
        assert r["test-clean paper (row vs reference)"] == "2.29 vs 2.21 (+0.08)"
        assert r["verdict"].split(" (")[0] in ("holds", "reversed", "not resolved")

    # rows named with their switches from the base: runs table, verdicts, forest plots
    runs = {r["grid/cell"]: r for r in csv.DictReader(open(out / "runs.csv"))}
    assert runs["norms/layernorm"]["switches vs base"] == "overrides.norm=layer_norm"
    assert runs["norms/base"]["switches vs base"] == "—"
    verdict_rows = {r["row"] for r in csv.DictReader(open(out / "verdicts-norms.csv"))}
    assert verdict_rows == {"base", "layernorm (overrides.norm=layer_norm)"}
    for ts in ("test", "test-held-out"):
        assert "layernorm (overrides.norm=layer_norm)" in drawn[f"forest-norms-{ts}"]

    # the convergence figure is titled and labelled by this grid's rows, not "ScaledAdam vs Adam"
    assert not (out / "figureA2-optimizers.png").exists() and (out / "convergence.png").stat().st_size > 1000
    title = drawn["convergence"][0]
    assert title.startswith("Convergence and learning rate: norms/base, norms/layernorm")
    assert "ScaledAdam" not in " ".join(drawn["convergence"]) and "ScaledAdam" not in page
    assert any(t.startswith("norms/layernorm (overrides.norm=layer_norm)") for t in drawn["convergence"])
    assert any(t == "norms/base" or t.startswith("norms/base:") for t in drawn["convergence"])
    # no activation switch and no paper table reproduced in full: no Figure A.3
    assert "figureA3" not in page and not (out / "figureA3-activations.png").exists()
