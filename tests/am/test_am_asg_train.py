"""train-am with ASG (model.criterion: asg): targets packed with repetition labels, learned
transitions saved, averaged and resumed, greedy Viterbi decoding on dev."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from am_synth import TINY
from w2vtk.am.config import TrainAMConfig
from w2vtk.am.criterion import make_criterion
from w2vtk.am.train import train_am
from w2vtk.checkpoint import load_checkpoint
from w2vtk.config import load_config
from w2vtk.errors import W2vtkError
from w2vtk.tokens import build_lang
from w2vtk.training import read_metrics

ASG = TINY + ["model.criterion=asg", "model.transdiag=5", "asg_scaling=none", "optim.transitions_lr=1e-3"]


@pytest.fixture(scope="module")
def asg_lang(am_data, tmp_path_factory):
    _, train, _ = am_data
    lang = tmp_path_factory.mktemp("asglang") / "lang"
    build_lang(train / "text", lang, "letters", replabel=2)
    return lang


def test_asg_am_learns_keeps_its_transitions_and_decodes(am_data, asg_lang, tmp_path, capsys):
    torch.set_num_threads(1)
    _, train, _ = am_data
    exp = tmp_path / "exp"
    cfg = load_config(TrainAMConfig, None, ASG + ["max_epochs=40", "optim.lr=5e-3"])
    res = train_am(cfg, lang_dir=asg_lang, train_dir=train, valid_dir=train, exp_dir=exp)
    recs = read_metrics(exp / "metrics.jsonl")
    assert recs[-1]["train_loss"] < recs[0]["train_loss"] / 3
    assert res.best_error <= 2.0, [r["ler"] for r in recs]  # overfits its 24 utterances
    last, avg = load_checkpoint(exp / "checkpoint_last.pt"), load_checkpoint(exp / "checkpoint_avg.pt")
    n = len(last["tokens"])
    assert last["tokens"][-2:] == ["<1>", "<2>"]
    assert last["model"]["transitions"].shape == (n, n) and last["model_config"]["criterion"] == "asg"
    e29, e30 = (load_checkpoint(exp / f"checkpoint_epoch{e}.pt")["model"]["transitions"] for e in (39, 40))
    assert torch.allclose(avg["model"]["transitions"], (e29 + e30) / 2, atol=1e-6)
    # the transitions moved from their transdiag start, on their own (smaller) learning rate
    assert not torch.equal(last["model"]["transitions"], torch.eye(n) * 5)
    # decoding: the emissions record ASG and the transitions; greedy (Viterbi) reads the words back
    from cli_helpers import run_main

    out = tmp_path / "decode"
    code, _, err = run_main(capsys, ["decode", "--am", str(exp), "--decoder", "greedy", "--data", str(train),
                                     "--out", str(out)])
    assert code == 0, err
    info = yaml.safe_load((out / "emissions.yaml").read_text())
    assert info["criterion"] == "asg" and len(info["asg_transitions"]) == n
    assert torch.allclose(torch.tensor(info["asg_transitions"]), avg["model"]["transitions"], atol=1e-6)
    score = json.loads((out / "score.json").read_text())
    assert score["metrics"]["ler"]["rate"] <= 2.0
    # and lexicon + word 3-gram decoding in flashlight-text's ASG mode, from the same emissions cache
    from w2vtk.lm import build_lm

    lm_text = tmp_path / "lm_text.txt"
    lm_text.write_text("".join(line.split(None, 1)[1].upper() + "\n" for line in (train / "text").read_text().splitlines()))
    build_lm(lm_text, asg_lang, tmp_path / "lm3", order=3, memory="100M")
    code, _, err = run_main(capsys, ["decode", "--am", str(exp), "--lang", str(tmp_path / "lm3"), "--decoder", "lexicon",
                                     "--data", str(train), "--out", str(out), "--nj", "1"])
    assert code == 0, err
    score = json.loads((out / "score.json").read_text())
    assert score["metrics"]["wer"]["rate"] <= 5.0
    # lexicon-free with a letter 5-gram: the LM text is packed as the targets are ("bee" -> b e <1>)
    build_lm(lm_text, asg_lang, tmp_path / "lm_tok", order=5, unit="token", memory="100M")
    arpa = (tmp_path / "lm_tok" / "lm.arpa").read_text()
    assert "\t<1>\t" in arpa or "\t<1>\n" in arpa
    code, _, err = run_main(capsys, ["decode", "--am", str(exp), "--lang", str(tmp_path / "lm_tok"), "--decoder",
                                     "lexfree", "--data", str(train), "--out", str(out), "--nj", "1"])
    assert code == 0, err
    score = json.loads((out / "score.json").read_text())
    assert score["metrics"]["ler"]["rate"] <= 3.0


def test_asg_needs_repetition_labels_in_the_lang(am_data):
    lang, train, valid = am_data
    with pytest.raises(W2vtkError, match="--replabel"):
        train_am(load_config(TrainAMConfig, None, ASG + ["max_epochs=1"]), lang_dir=lang, train_dir=train,
                 valid_dir=valid, exp_dir=lang.parent / "asg_no_replabel")


def test_asg_resume_continues_the_transitions_exactly(am_data, asg_lang, tmp_path):
    torch.set_num_threads(1)
    _, train, valid = am_data
    whole, split = tmp_path / "whole", tmp_path / "split"
    train_am(load_config(TrainAMConfig, None, ASG + ["max_epochs=2"]), lang_dir=asg_lang, train_dir=train,
             valid_dir=valid, exp_dir=whole)
    train_am(load_config(TrainAMConfig, None, ASG + ["max_epochs=1"]), lang_dir=asg_lang, train_dir=train,
             valid_dir=valid, exp_dir=split)
    train_am(load_config(TrainAMConfig, None, ASG + ["max_epochs=2"]), lang_dir=asg_lang, train_dir=train,
             valid_dir=valid, exp_dir=split, allow_changes=True)
    a, b = (load_checkpoint(d / "checkpoint_last.pt") for d in (whole, split))
    assert torch.equal(a["model"]["transitions"], b["model"]["transitions"])
    assert torch.equal(a["model"]["proj.weight"], b["model"]["proj.weight"])


def test_asg_targets_are_packed_and_surrounded(am_data, asg_lang, tmp_path):
    from w2vtk.am.criterion import ASG, CTC
    from w2vtk.models.am import AMConfig, build_am
    from w2vtk.tokens import TokenSet

    tok = TokenSet.load(asg_lang)
    model = build_am(AMConfig(layers=[(8, 3, 1)], criterion="asg"), 4, len(tok))
    crit = make_criterion(model, tok, "target-sqrt", surround=True)
    ids = tok.encode("see a bee")
    bar, one = tok.index("|"), tok.index("<1>")
    assert isinstance(crit, ASG) and crit.targets(ids) == [bar] + [tok.index(c) for c in "se"] + [one] + \
        [bar, tok.index("a"), bar, tok.index("b"), tok.index("e"), one, bar]
    assert crit.min_frames(crit.targets(ids)) == 11 and crit.norm_size([ids, ids]) == 2.0  # scaled: per utterance
    assert make_criterion(model, tok).norm_size([ids]) == len(ids)  # unscaled ASG: per token, as CTC
    ctc_tok = build_lang(am_data[1] / "text", tmp_path / "ctc_lang", "letters")
    ids = ctc_tok.encode("see a bee")
    ctc = make_criterion(build_am(AMConfig(layers=[(8, 3, 1)]), 4, len(ctc_tok)), ctc_tok)
    assert isinstance(ctc, CTC) and ctc.targets(ids) == ids and ctc.min_frames(ids) == len(ids) + 2


def test_linseg_trains_the_first_epochs_on_the_linear_segmentation(am_data, asg_lang, tmp_path):
    torch.set_num_threads(1)
    _, train, valid = am_data
    cfg = load_config(TrainAMConfig, None, ASG + ["max_epochs=3", "asg_linseg=2"])
    train_am(cfg, lang_dir=asg_lang, train_dir=train, valid_dir=valid, exp_dir=tmp_path / "exp")
    recs = read_metrics(tmp_path / "exp" / "metrics.jsonl")
    assert [r.get("train_loss_kind") for r in recs] == ["linseg", "linseg", None]
    # the fixed linear path is one of ASG's paths, so at the same weights its loss is the larger: the
    # epochs differ in the loss trained, seen as a drop where ASG proper starts
    assert recs[2]["train_loss"] < recs[1]["train_loss"]
    with pytest.raises(W2vtkError, match="asg_linseg: the linear-segmentation warm start is ASG's"):
        load_config(TrainAMConfig, None, TINY + ["asg_linseg=1"])


def test_lm_token_text_is_packed_for_an_asg_set(asg_lang):
    from collections import Counter

    from w2vtk.lm.lexicon import token_sequence
    from w2vtk.tokens import TokenSet

    tok = TokenSet.load(asg_lang)
    assert token_sequence(["see", "a", "bee"], tok, Counter()) == ["s", "e", "<1>", "|", "a", "|", "b", "e", "<1>"]
