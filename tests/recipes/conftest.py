"""Fixtures of the recipe tests (helpers live in recipe_helpers.py)."""

from __future__ import annotations

import pytest

from recipe_helpers import run_script


@pytest.fixture
def run():
    return run_script
