"""Grid expansion and stable cell ids."""
from support.gridtext import BASE

from harness.grid.cells import expand
from harness.grid.loader import load_grid


def _cells(write_grid, text):
    return expand(load_grid(write_grid(text)))


def test_ids_are_stable_and_depend_only_on_what_changes_results(write_grid):
    a = _cells(write_grid, BASE)
    b = _cells(write_grid, BASE)
    assert [c.cell_id for c in a] == [c.cell_id for c in b] and len(a[0].cell_id) == 12
    # logging cadence does not change a result; the budget does
    quiet = _cells(write_grid, BASE.replace("{epochs: 2}", "{epochs: 2, log_interval: 7}"))
    longer = _cells(write_grid, BASE.replace("{epochs: 2}", "{epochs: 3}"))
    assert quiet[0].cell_id == a[0].cell_id
    assert longer[0].cell_id != a[0].cell_id
    # the grid's name is a label, not part of the config
    renamed = _cells(write_grid, BASE.replace("name: t", "name: other"))
    assert renamed[0].cell_id == a[0].cell_id and renamed[0].grid == "other"


def test_rows_times_axes_times_seeds(write_grid):
    text = BASE.replace("objective: ctc", "objective: ctc\n  seeds: [1, 2]") + (
        "axes:\n"
        "  objective: [ctc, transducer]\n"
        "ablations:\n"
        "  - {name: layernorm, set: {overrides.norm: layer_norm}}\n"
        "  - {name: adam, set: {optimizer.name: adam, optimizer.lr: 7.5}}\n")
    cells = _cells(write_grid, text)
    assert len(cells) == 3 * 2 * 2
    assert len({c.cell_id for c in cells}) == 12
    names = [c.name for c in cells]
    assert names[:4] == ["base/ctc/seed1", "base/ctc/seed2", "base/transducer/seed1",
                         "base/transducer/seed2"]
    ln = [c for c in cells if c.labels["row"] == "layernorm"][0]
    assert ln.config.overrides["norm"] == "layer_norm" and ln.spec.encoder.norm == "layer_norm"
    adam = [c for c in cells if c.labels["row"] == "adam"][0]
    assert adam.config.optimizer.name == "adam" and adam.config.optimizer.lr == 7.5
    assert {c.config.seed for c in cells} == {1, 2}


def test_named_axis_rows_set_several_keys(write_grid):
    text = BASE + ("axes:\n  scale:\n"
                   "    - {name: S, set: {variant: zipformer-s, data.max_duration: 1500}}\n"
                   "    - {name: M, set: {variant: zipformer-m, data.max_duration: 1000}}\n")
    s, m = _cells(write_grid, text)
    assert (s.name, s.variant, s.config.data.max_duration) == ("S", "zipformer-s", 1500)
    assert (m.name, m.variant, m.config.data.max_duration) == ("M", "zipformer-m", 1000)
    assert m.labels == {"row": "base", "scale": "M"}


def test_resolved_config_has_every_default(write_grid):
    (cell,) = _cells(write_grid, BASE)
    r = cell.resolved()
    assert r["train"]["average_period"] == 200 and r["data"]["ref_duration"] == 600
    assert r["decode"]["beam"] == 4 and r["optimizer"]["name"] is None


def test_plan_prints_cells_params_and_the_cost_assumption(write_grid, capsys, tmp_path, monkeypatch):
    from harness.cli import main

    monkeypatch.setenv("HARNESS_STORE", str(tmp_path / "empty.sqlite"))  # no profile rows to read

    text = BASE.replace("objective: ctc", "objective: ctc\n  overrides: {}").replace(
        "  overrides: {num_encoder_layers: [1, 1, 1, 1, 1, 1]}\n", "")
    text = text.replace("corpus: synthetic, dir: DATA", "corpus: librispeech, dir: DATA")
    path = write_grid(text + "ablations:\n  - {name: small-m, set: {variant: zipformer-m}}\n")
    assert main(["plan", path, "--no-flops", "--gpus", "4"]) == 2  # no LibriSpeech here
    assert "data.src_dir" in capsys.readouterr().err
    assert main(["plan", path, "--no-flops", "--gpus", "4", "--no-data-check"]) == 0
    out = capsys.readouterr().out
    assert "decoding: ctc_greedy_search (2 cell(s))" in out  # the CTC default, as the authors decode
    lines = out.splitlines()
    base = next(ln for ln in lines if " base " in ln)
    m = next(ln for ln in lines if " small-m " in ln)
    # Zipformer-S / -M with CTC: the authors' 22.12 M / 64.25 M parameters
    assert "22.12" in base and "64.25" in m
    # no FLOPs measured: the paper's encoder GFLOPs, and a GPU-hour figure from them
    assert "40.8" in base and "62.9" in m and "2880.0" in base
    assert "assumption: GPU-hours = 3 x encoder FLOPs" in out and "paper figure (not measured)" in out


def test_ids_survive_the_schema_growing_a_defaulted_field(write_grid, monkeypatch):
    from pydantic import create_model

    import harness.grid.cells as cells_mod
    from harness.config.schema import CellConfig

    before = _cells(write_grid, BASE)[0].cell_id
    grown = create_model("GrownCellConfig", __base__=CellConfig, new_knob=(int, 3))
    monkeypatch.setattr(cells_mod, "CellConfig", grown)
    after = _cells(write_grid, BASE)[0]
    assert after.config.new_knob == 3 and after.cell_id == before
