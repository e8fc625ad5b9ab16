"""Fixtures of the acoustic-model tests (data helpers live in am_synth.py)."""

from __future__ import annotations

import pytest

from am_synth import W2V_PROV, make_texts, write_feature_dir


@pytest.fixture(scope="module")
def am_data(tmp_path_factory):
    """(lang_dir, train_dir, valid_dir) with 24 training and 6 dev utterances, 16-dim features."""
    from w2vtk.tokens import build_lang

    root = tmp_path_factory.mktemp("amdata")
    train_texts = make_texts(24, seed=1, prefix="tr")
    valid_texts = make_texts(6, seed=2, prefix="dv")
    train = write_feature_dir(root / "train", train_texts, seed=3, feats_yaml=W2V_PROV)
    valid = write_feature_dir(root / "valid", valid_texts, seed=4, feats_yaml=W2V_PROV)
    build_lang(train / "text", root / "lang", "letters")
    return root / "lang", train, valid


