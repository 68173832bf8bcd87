"""Running code against Triton's compiled kernels from a test process that may hold the
interpreted ones (the ``triton_interpreter`` fixture)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import harness


def run_compiled_triton(code: str, cache_dir: Path) -> str:
    """stdout of ``python -c code`` in a fresh process without TRITON_INTERPRET (Triton's compiled
    kernels; this process may hold the interpreted ones); fails the test on a non-zero exit."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(PYTHONPATH=str(Path(harness.__file__).resolve().parent.parent), TRITON_CACHE_DIR=str(cache_dir))
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout
