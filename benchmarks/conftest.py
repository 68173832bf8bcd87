"""What the benchmark tests share: loading a benchmark script (not a package) as a module."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture
def load_script():
    """``load_script("gpu_memory_check")``: benchmarks/gpu_memory_check.py as a module."""
    def load(name: str):
        path = Path(__file__).with_name(f"{name}.py")
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    return load
