"""Shared fixtures of the data tests (the prepared tiny corpus is ``tests/conftest.py``'s)."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_tier():
    from harness.data.synthetic.tiers import get_tier

    return get_tier("tiny")


@pytest.fixture(scope="session")
def tiny_librispeech(tmp_path_factory, tiny_tier):
    """(root, plan): the tiny synthetic corpus written in LibriSpeech's layout."""
    from harness.data.synthetic.corpus import write_librispeech_layout

    root = tmp_path_factory.mktemp("librispeech") / "LibriSpeech"
    plan = write_librispeech_layout(root, tiny_tier, seed=3, num_jobs=1)
    return root, plan


def pytest_collection_modifyitems(items):
    # lhotse's kaldi fbank layers trigger a NumPy 2 deprecation notice on every call
    for item in items:
        if "tests/harness/data" in str(item.fspath):
            item.add_marker(pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning"))
