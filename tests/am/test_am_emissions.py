import numpy as np
import pytest
import torch

from am_synth import FBANK_PROV, write_feature_dir
from w2vtk.am.data import load_feature_dir
from w2vtk.decoding.emissions import compute_emissions, load_am
from w2vtk.am.metrics import DevScorer
from w2vtk.tokens import ctc_collapse
from w2vtk.errors import W2vtkError

torch.set_num_threads(1)


def test_load_am_prefers_the_average(overfit_exp):
    exp, _ = overfit_exp
    am = load_am(exp)
    assert am.which == "avg" and am.checkpoint.name == "checkpoint_avg.pt"
    assert "average of epochs" in am.source
    assert am.input_dim == 16 and am.tokens.type == "letters" and am.normaliser.mode == "utterance"
    assert am.feats["feature_type"] == "wav2vec"
    assert load_am(exp, which="best", device="auto").which == "best"
    with pytest.raises(W2vtkError, match="device"):
        load_am(exp, device="gpu0")
    with pytest.raises(W2vtkError, match="auto, avg, best or last"):
        load_am(exp, which="newest")


def test_emissions_shapes_log_probs_and_accuracy(overfit_exp, am_data):
    exp, _ = overfit_exp
    _, train, _ = am_data
    am = load_am(exp)
    fd = load_feature_dir(train)
    out = dict(compute_emissions(am, train, batch_frames=400))
    assert sorted(out) == fd.ids
    scorer = DevScorer(am.tokens)
    for utt, em in out.items():
        assert em.dtype == np.float32 and em.shape == (fd.frames[utt], len(am.tokens.tokens))
        assert np.allclose(np.logaddexp.reduce(em, axis=1), 0.0, atol=1e-4)  # natural-log probabilities
        scorer.add(am.tokens.encode(fd.texts[utt]), ctc_collapse(em.argmax(1)))
    assert scorer.totals()["LER"].rate <= 5.0
    # batching does not change the numbers
    one = dict(compute_emissions(exp, train, batch_frames=1))
    for utt in out:
        assert np.allclose(one[utt], out[utt], atol=1e-5)


def test_emissions_refuse_other_features(overfit_exp, am_data, tmp_path):
    exp, _ = overfit_exp
    _, train, _ = am_data
    texts = dict(line.split(maxsplit=1) for line in (train / "text").read_text().splitlines()[:3])
    fbank = write_feature_dir(tmp_path / "fbank", texts, seed=3, feats_yaml=FBANK_PROV)
    with pytest.raises(W2vtkError, match="allow-feature-mismatch"):
        next(compute_emissions(exp, fbank))
    assert len(list(compute_emissions(exp, fbank, allow_feature_mismatch=True))) == 3
    wide = write_feature_dir(tmp_path / "wide", texts, dim=20, seed=3, feats_yaml=FBANK_PROV)
    with pytest.raises(W2vtkError, match="dimension 20"):
        next(compute_emissions(exp, wide, allow_feature_mismatch=True))
    with pytest.raises(W2vtkError, match="not found"):
        load_am(tmp_path / "nothing")
