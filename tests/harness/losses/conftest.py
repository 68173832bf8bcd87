"""The loss tests use the shared tiny Zipformer (tests/harness/conftest.py) on one thread."""
import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield
