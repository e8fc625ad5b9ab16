"""Fixtures for the pre-training tests: a small synthetic audio set."""

from __future__ import annotations

from pathlib import Path

import pytest
from pretrain_helpers import write_audio


@pytest.fixture(scope="session")
def audio_set(tmp_path_factory) -> Path:
    """A directory of 8 utterances of 1.0-2.0 s plus one of 0.1 s (too short for the model)."""
    root = tmp_path_factory.mktemp("pretrain_audio") / "audio"
    write_audio(root, [1.0, 1.2, 1.4, 1.5, 1.6, 1.7, 1.9, 2.0, 0.1], seed=1)
    return root
