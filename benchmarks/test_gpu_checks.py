"""benchmarks/gpu_checks.sh runs, on CPU, the very command lines of its parts 3 and 4 with
tiny sizes (DRY_RUN=cpu), so a broken line shows before a GPU is lent (~1 minute)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).with_name("gpu_checks.sh")


def test_dry_run_runs_parts_3_and_4_on_cpu(tmp_path):
    env = {**os.environ, "DRY_RUN": "cpu"}
    env.pop("AUTHORS_DIR", None)
    env.pop("PARTS", None)
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert not list(tmp_path.glob("-*")) and not list(Path.cwd().glob("--*"))  # no stray redirections
    memory = [json.loads(line) for line in (tmp_path / "memory-dry-run.jsonl").read_text().splitlines()
              if line.startswith("{")]
    assert any(r.get("variant") == "zipformer-s" and r.get("saved_gb", 0) > 0 for r in memory)
    assert any("infer_s_ours" in r for r in memory)
    step = (tmp_path / "train-compile-dry-run.log").read_text()
    assert "bf16" in step and "zipformer-s" in step and "eager" in step
