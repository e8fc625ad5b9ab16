"""Fixtures shared by the kill/resume and disk-full tests: the inputs (audio, data dirs, lang, LM)
and the uninterrupted reference runs, both memoised once per session by reliability_resume_helpers."""

from __future__ import annotations

import pytest

from reliability_resume_helpers import inputs, references


@pytest.fixture(scope="module")
def inp(tmp_path_factory):
    return inputs(tmp_path_factory)


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    return references(tmp_path_factory)
