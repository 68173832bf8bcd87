"""`harness run`, `compare --json` and `report` on a real tiny grid of 2 rows x 2 seeds, and
`compare` on a grid never run."""
import json
import os
import subprocess
import sys
from pathlib import Path

from harness.grid.cells import load_cells
from harness.store import ResultsStore

ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
KEYS = {"row", "test_set", "method", "n_seeds", "wer", "wer_ci", "delta", "delta_ci", "p_improvement",
        "verdict"}


def _harness(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def _seeded(path: str, seeds: str = "[1, 2]") -> str:
    p = Path(path)
    p.write_text(p.read_text().replace("base:\n", f"base:\n  seeds: {seeds}\n", 1))
    return path


def _in_process(capsys, *args: str) -> tuple[int, str, str]:
    from harness.cli import main

    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_two_rows_two_seeds_run_compare_report(tiny_grid, tmp_path, capsys):
    path = _seeded(tiny_grid(name="cmp", rows="  - {name: layernorm, set: {overrides.norm: layer_norm}}\n",
                             train="epochs: 1, max_steps: 2, save_every_n: 1, average_period: 1"))
    grid, cells = load_cells(path)
    assert [c.name for c in cells] == ["base/seed1", "base/seed2", "layernorm/seed1", "layernorm/seed2"]
    out = _harness("run", path, "--workers", "2")
    assert out.returncode == 0, out.stderr[-3000:]

    # every decode wrote its utterances, keyed like its WER row, with speakers and counts that add up
    store = ResultsStore(grid.spec.store, readonly=True)
    for c in cells:
        wers = store.rows("wers", cell_id=c.cell_id)
        assert wers
        for w in wers:
            (u,) = store.utterances(cell_id=c.cell_id, test_set=w["test_set"], method=w["method"],
                                    epoch=w["epoch"], decode_key=w["decode_key"])
            assert u["n_utts"] == len(u["ids"]) == len(set(u["ids"])) > 0
            # the supervision's speaker (LibriSpeech-style ids: speaker-chapter-utterance)
            assert u["speakers"] == [i.split("-")[0] for i in u["ids"]]
            assert int(u["ref_len"].sum()) == w["ref_words"] and int(u["errors"].sum()) == w["errors"]
            assert (int(u["sub"].sum()), int(u["del"].sum()), int(u["ins"].sum())) == (w["sub"], w["del"], w["ins"])

    rc, cmp, err = _in_process(capsys, "compare", path, "--json", "--resamples", "500", "--seed", "3")
    assert rc == 0, err
    lines = [json.loads(line) for line in cmp.splitlines()]
    assert {(v["row"], v["test_set"]) for v in lines} == {(r, t) for r in ("base", "layernorm")
                                                           for t in ("test", "test_held_out")}
    for v in lines:
        assert KEYS <= set(v) and v["n_seeds"] == 2 and v["seeds"] == [1, 2] and v["method"] == "ctc_greedy_search"
        lo, hi = v["wer_ci"]
        assert lo <= v["wer"] <= hi
        if v["row"] == "base":
            assert v["verdict"] == "baseline" and v["delta"] is None
        else:  # LayerNorm instead of BiasNorm is Table 5's row: a paper verdict
            dlo, dhi = v["delta_ci"]
            assert dlo <= v["delta"] <= dhi and 0 <= v["p_improvement"] <= 1
            assert v["verdict"] in ("holds", "reversed", "not resolved")
            assert v["paper"].startswith("Table 5: LayerNorm") and v["paper_delta"] > 0
            assert abs(v["resolvable"] - (dhi - dlo) / 2) < 1e-9
            # the two seeds' mean WER from the WER rows equals the interval's centre
            wer_rows = [w for c in cells if c.labels["row"] == "layernorm"
                        for w in store.rows("wers", cell_id=c.cell_id, test_set=v["test_set"])]
            assert abs(v["wer"] - sum(w["wer"] for w in wer_rows) / 2) < 1e-6
    # deterministic for a given --seed
    assert _in_process(capsys, "compare", path, "--json", "--resamples", "500", "--seed", "3")[1] == cmp
    rc, text, _ = _in_process(capsys, "compare", path, "--resamples", "500")
    assert rc == 0 and "layernorm" in text and "[95% CI]" in text

    # plan counts the seeds and says how many would resolve each observed difference
    rc, plan, err = _in_process(capsys, "plan", path, "--no-flops")
    assert rc == 0, err
    assert "seeds: 2 per row (1, 2)" in plan
    assert sum(line.startswith("resolve layernorm vs base, ") for line in plan.splitlines()) == 2

    rc, _, err = _in_process(capsys, "report", path, "--out", str(tmp_path / "report"))
    assert rc == 0, err
    page = (tmp_path / "report" / "index.md").read_text()
    assert "Verdicts" in page and "layernorm" in page
    for ts in ("test", "test_held_out"):
        for ext in ("png", "pdf"):
            f = tmp_path / "report" / f"forest-{grid.name}-{ts.replace('_', '-')}.{ext}"
            assert f.stat().st_size > 1000, f


def test_compare_on_a_grid_never_run_is_one_error_line(tiny_grid):
    path = tiny_grid(name="never")
    out = _harness("compare", path)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: ")
    assert "run `harness run" in out.stderr and "Traceback" not in out.stderr


def test_demo_prints_the_verdicts_and_its_report_shows_them(monkeypatch, tmp_path, capsys):
    import types

    import harness.evaluate.data_setup as data_setup
    from harness.cli import main
    from harness.commands import demo

    monkeypatch.setattr(data_setup, "ensure_prepared", lambda d: types.SimpleNamespace(
        out_dir=d.dir, splits={"train": "x"}))
    called = []
    monkeypatch.setattr(demo, "_command", lambda module, argv: called.append((module, argv)) or 0)
    store = str(tmp_path / "s.sqlite")
    assert main(["demo", "--store", store, "--out", str(tmp_path / "rep"), "--skip", "profile", "bench"]) == 0
    grid = str(demo._grid_path(demo.DEFAULT_GRID))
    assert ("harness.commands.compare", [grid, "--store", store]) in called
    report = next(argv for module, argv in called if module == "harness.commands.report")
    assert report[report.index("--compare") + 1] == grid
