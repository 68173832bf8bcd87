"""`harness plan --gpu-memory`: a cell's peak training memory at its max_duration, estimated
from `harness bench --train --device cuda` rows in the results store."""
import pytest
from support.gridtext import BASE

from harness.grid.cells import expand
from harness.grid.cost import memory_fit
from harness.grid.loader import load_grid
from harness.store import ResultsStore

GRID = BASE.replace("  overrides: {num_encoder_layers: [1, 1, 1, 1, 1, 1]}\n", "").replace(
    "max_duration: 40", "max_duration: 1000")


def _cell(write_grid, text=GRID):
    (cell,) = expand(load_grid(write_grid(text)))
    return cell


def _bench(store, batch, duration, peak_gib, precision="bf16", device="cuda"):
    name = "NVIDIA H200" if device == "cuda" else "AMD EPYC"
    store.add_train_bench("zipformer-s", name, precision, batch, duration, device_type=device,
                          peak_mem_mb=peak_gib * 1024)


def test_a_line_through_two_batch_sizes_of_the_longest_utterances(write_grid, tmp_path):
    store = ResultsStore(tmp_path / "s.sqlite")
    _bench(store, 10, 30.0, 6.0)      # 300 s of audio
    _bench(store, 20, 30.0, 10.0)     # 600 s: 2 GiB fixed + 1/75 GiB per second
    _bench(store, 100, 5.0, 1.0)      # short utterances: ignored (would underestimate)
    _bench(store, 10, 30.0, 99.0, precision="float32")  # other precision: ignored
    est, why = memory_fit(_cell(write_grid), store, 32)
    assert est == pytest.approx(2 + 1000 / 75)
    assert why.startswith("fits in 32 GiB: 15.3 GiB estimated for 1000 s") and "line through 2" in why
    est, why = memory_fit(_cell(write_grid), store, 12)
    assert why.startswith("does not fit in 12 GiB")


def test_one_measurement_scales_proportionally(write_grid, tmp_path):
    store = ResultsStore(tmp_path / "s.sqlite")
    _bench(store, 20, 30.0, 12.0)
    est, why = memory_fit(_cell(write_grid), store, 16)
    assert est == pytest.approx(12.0 * 1000 / 600) and "scaled from one measurement of 600 s" in why


def test_without_a_gpu_measurement_it_says_how_to_get_one(write_grid, tmp_path):
    store = ResultsStore(tmp_path / "s.sqlite")
    _bench(store, 20, 30.0, 12.0, device="cpu")
    est, why = memory_fit(_cell(write_grid), store, 16)
    assert est is None and "harness bench zipformer-s --train --device cuda --precision bf16" in why
    est, why = memory_fit(_cell(write_grid), None, 16)
    assert est is None and why.startswith("no GPU training measurement")


def test_plan_prints_the_verdict_per_cell(write_grid, tmp_path, capsys):
    from harness.cli import main

    store = ResultsStore(tmp_path / "s.sqlite")
    _bench(store, 20, 30.0, 12.0)
    grid = write_grid(GRID)
    assert main(["plan", str(grid), "--no-flops", "--store", str(store.path), "--gpu-memory", "32"]) == 0
    out = capsys.readouterr().out
    assert "fits in 32 GiB: 20.0 GiB estimated for 1000 s of audio per batch" in out
    assert main(["plan", str(grid), "--no-flops", "--gpu-memory", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --gpu-memory: must be > 0 GiB, got 0"
