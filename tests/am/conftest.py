"""Fixtures of the acoustic-model tests (data helpers live in am_synth.py)."""

from __future__ import annotations

import pytest

from am_synth import TINY, W2V_PROV, make_texts, write_feature_dir


@pytest.fixture(scope="session")
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




@pytest.fixture(scope="session")
def overfit_exp(am_data, tmp_path_factory):
    """(exp_dir, TrainAMResult): the tiny model trained and validated on the same 24 utterances."""
    import torch

    from w2vtk.am.config import TrainAMConfig
    from w2vtk.am.train import train_am
    from w2vtk.config import load_config

    torch.set_num_threads(1)
    lang, train, _ = am_data
    exp = tmp_path_factory.mktemp("overfit") / "exp"
    cfg = load_config(TrainAMConfig, None, TINY + ["max_epochs=40", "optim.lr=5e-3"])
    res = train_am(cfg, lang_dir=lang, train_dir=train, valid_dir=train, exp_dir=exp)
    return exp, res
