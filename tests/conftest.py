"""Fixtures for every test: ``device``, the devices a device-dependent test runs on, and
the tiny synthetic corpus, prepared once per test run (``tiny_prepared``, ``tiny_corpus``).

Every GPU code path is tested on the CPU with the same arguments (only the
device differs), so CI, which has no GPU, runs it; the "cuda" twin is skipped
where no GPU is present.
"""
from __future__ import annotations

import pytest
import torch

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no GPU: the CUDA twin of this CPU test is skipped"))]


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread (restored afterwards): the main job's cells train
    so, and the fused C loops of the CPU fast paths (variants/components/cpu_kernels.py)
    run only then."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory):
    """The built-in synthetic corpus at its tiny tier (about 40 s of training audio), fully
    prepared (features, BPE) once per test run and shared by every test that reads it."""
    from harness.data import prepare_corpus

    out = tmp_path_factory.mktemp("synthetic") / "tiny"
    return prepare_corpus("synthetic", out, tier="tiny", seed=0, num_jobs=1, progress=False)


@pytest.fixture(scope="session")
def tiny_corpus(tiny_prepared):
    """The folder of :func:`tiny_prepared` (what a grid's ``data.dir`` names)."""
    return tiny_prepared.out_dir
