"""The loss tests use the shared tiny Zipformer (tests/harness/conftest.py) on one thread.

``triton_interpreter`` gives :mod:`harness.losses.mutual_information_triton`
with its kernels in Triton's interpreter, so they run on CPU tensors: it sets
``TRITON_INTERPRET=1`` and (re)imports the module, which works whenever the
module or Triton itself was imported before in the same test process.
"""
import importlib
import os

import pytest

from harness.losses.rnnt_backend import TRITON_MODULE


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="session")
def triton_interpreter():
    pytest.importorskip("triton", reason="triton is not installed (pip install -e '.[dev]')")
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    module = importlib.import_module(TRITON_MODULE)
    if not module.interpreted():  # imported earlier with compiled kernels
        module = importlib.reload(module)
    yield module
    if old is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = old

