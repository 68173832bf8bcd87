"""Runner overhead: the share of a training step spent outside forward/backward/optimizer.

Target: under 10 % for a tiny model on the built-in data, data loading
included. Run with ``make bench`` (or ``pytest benchmarks/test_runner_overhead.py
--benchmark-enable``); ``harness status GRID --profile`` prints the same profile
for any trained cell.
"""
import logging

import pytest

TINY = """\
name: overhead
base:
  variant: zipformer-tiny
  objective: ctc
  data: {corpus: synthetic, dir: DATA, options: {tier: tiny}, max_duration: 10}
  train: {epochs: 3, log_interval: 1000}
"""


@pytest.fixture(scope="module")
def cell_and_data(tmp_path_factory):
    import torch

    from harness.data import prepare_corpus
    from harness.grid.cells import load_cells
    from harness.evaluate.data_setup import load_cell_data

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("overhead")
    prepare_corpus("synthetic", root / "data", tier="tiny", progress=False)
    grid = root / "grid.yaml"
    grid.write_text(TINY.replace("DATA", str(root / "data")))
    _, (cell,) = load_cells(str(grid))
    return root, cell, load_cell_data(cell.config.data)


def test_training_step_overhead_under_10_percent(benchmark, cell_and_data):
    from harness.train.distributed import DistInfo
    from harness.train.step_profile import format_profile
    from harness.train.trainer import Trainer

    root, cell, data = cell_and_data
    runs = iter(range(100))

    def train():
        trainer = Trainer(cell, root / f"run{next(runs)}", data, DistInfo(), logging.getLogger("overhead"))
        return trainer.run().profile

    profile = benchmark.pedantic(train, rounds=1, iterations=1)
    print(format_profile(profile))
    benchmark.extra_info.update(profile)
    assert profile["steps"] > 0
    assert profile["overhead"] < 0.10, format_profile(profile)
