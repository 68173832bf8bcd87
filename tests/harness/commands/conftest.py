"""A trained tiny cell (zipformer-tiny, transducer + CTC, 2 epochs on the tiny synthetic corpus),
built once per session in seconds by ``harness run``."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def trained_cell(tmp_path_factory, tiny_corpus) -> Path:
    """The run directory of a trained tiny cell (epoch-1.pt and epoch-2.pt with running averages)
    on the test run's tiny corpus."""
    root = tmp_path_factory.mktemp("trained_cell")
    data = tiny_corpus
    grid = root / "g.yaml"
    grid.write_text(
        f"name: t\nstore: {root / 'runs' / 'results.sqlite'}\nrun_root: {root / 'runs'}\n"
        "base:\n  variant: zipformer-tiny\n  objective: [transducer, ctc]\n"
        f"  data: {{corpus: synthetic, dir: {data}, options: {{tier: tiny}}, max_duration: 8, max_train_cuts: 10}}\n"
        "  train: {epochs: 2, save_every_n: 1, average_period: 1}\n"
        "  decode: {methods: [greedy_search]}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(grid)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    cells = [p for p in (root / "runs").iterdir() if (p / "checkpoints").is_dir()]
    assert len(cells) == 1
    return cells[0]
