"""Fixtures of the decoding tests: a letters lang, word and token KenLMs over a small text, and a
throw-away AM exp dir whose emissions cache the tests overwrite with known matrices."""

from __future__ import annotations

import pytest

from decode_synth import DEV, TEXT  # noqa: F401


@pytest.fixture(scope="session")
def lm_case(tmp_path_factory):
    """(root, lang_dir, word_lm_dir, token_lm_dir, TokenSet)."""
    from w2vtk.lm import build_lm
    from w2vtk.tokens import TokenSet, build_lang

    root = tmp_path_factory.mktemp("decode_lm")
    (root / "train_text").write_text("u1 the cat sat on the mat\n")
    build_lang(root / "train_text", root / "lang", "letters")
    (root / "lm_text.txt").write_text(TEXT)
    build_lm(root / "lm_text.txt", root / "lang", root / "lm3", order=3, memory="100M")
    build_lm(root / "lm_text.txt", root / "lang", root / "tok6", order=6, unit="token", memory="100M")
    return root, root / "lang", root / "lm3", root / "tok6", TokenSet.load(root / "lang")


@pytest.fixture(scope="session")
def fake_am(lm_case):
    """An AM exp dir over the lang's tokens (one update on random features)."""
    from decode_synth import make_am

    root, lang, *_ = lm_case
    return make_am(root, lang, DEV, seed=0)
