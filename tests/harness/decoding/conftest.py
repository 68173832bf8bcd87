"""The decoding tests use the shared tiny Zipformer (tests/harness/conftest.py), in
eval mode, on one thread."""
import pytest


@pytest.fixture(scope="module")
def tiny_model(tiny_model):
    """Factory: tiny_model(objective) -> the shared tiny AsrModel in eval mode."""
    return lambda objective="transducer": tiny_model(objective).eval()


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield
