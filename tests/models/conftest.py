import pytest


@pytest.fixture(autouse=True)
def _tiny_models(one_thread):
    """Every model test runs on one intra-op thread (tests/conftest.py's one_thread)."""
