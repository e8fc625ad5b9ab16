"""fairseq checkpoints: parity with fairseq's own z / c, both formats and serialisations, safety."""

import argparse
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from w2vtk.checkpoint import load_checkpoint, save_checkpoint
from w2vtk.errors import W2vtkError
from w2vtk.models.fairseq import (ALLOWED_GLOBALS, FAIRSEQ_CFG_DEFAULTS, config_from_fairseq,
                                  export_fairseq, from_fairseq_state_dict, load_wav2vec,
                                  to_fairseq_state_dict, w2vtk_checkpoint)
from w2vtk.models.wav2vec import Wav2VecConfig, Wav2VecModel

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "fairseq_wav2vec"
SIGNALS = ("chirp", "buzz", "short")

CASES = [  # checkpoint, expected outputs, source
    ("small_base_args", "small_base_args", "fairseq-args"),
    ("small_large_args", "small_large_args", "fairseq-args"),
    ("small_large_cfg", "small_large_cfg", "fairseq-cfg"),
    ("small_base_args_legacy", "small_base_args", "fairseq-args"),
    ("small_base_args_sparse", "small_base_args", "fairseq-args"),
]


def signal(name: str) -> torch.Tensor:
    wave, rate = sf.read(FIX / f"{name}.wav", dtype="float32")
    assert rate == 16000
    return torch.from_numpy(wave)[None]


def raw(name: str) -> dict:
    return load_checkpoint(FIX / f"{name}.pt", allow=ALLOWED_GLOBALS)


def assert_matches_fairseq(model, expected_name: str):
    expected = np.load(FIX / f"{expected_name}.expected.npz")
    with torch.no_grad():
        for sig in SIGNALS:
            out = model(signal(sig))
            np.testing.assert_allclose(out.z[0].T.numpy(), expected[f"{sig}.z"], atol=1e-5, rtol=0)
            np.testing.assert_allclose(out.c[0].T.numpy(), expected[f"{sig}.c"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name, expected, source", CASES)
def test_fixture_parity(name, expected, source):
    model, info = load_wav2vec(FIX / f"{name}.pt")
    assert info.source == source and not model.training
    assert_matches_fairseq(model, expected)


def test_legacy_file_really_is_legacy_and_sparse_takes_2019_defaults():
    import zipfile
    assert not zipfile.is_zipfile(FIX / "small_base_args_legacy.pt")
    assert zipfile.is_zipfile(FIX / "small_base_args.pt")
    args = vars(raw("small_base_args_sparse")["args"])
    assert "num_negatives" not in args and "offset" not in args
    _, info = load_wav2vec(FIX / "small_base_args_sparse.pt")
    cfg = info.config
    assert cfg.num_negatives == 1 and cfg.prediction_steps == 12 and cfg.offset == "auto"
    assert not cfg.skip_connections_agg and not cfg.log_compression and cfg.residual_scale == 0.5
    assert cfg.conv_aggregator_layers == [(64, 3, 1)] * 9


def test_era_defaults():
    old = config_from_fairseq({}, "args")
    assert old.conv_feature_layers == [(512, 10, 5), (512, 8, 4)] + [(512, 4, 2)] * 3
    assert old.conv_aggregator_layers == [(512, 3, 1)] * 9 and old.num_negatives == 1
    new = config_from_fairseq({"_name": "wav2vec"}, "cfg")
    assert len(new.conv_feature_layers) == 8 and new.conv_feature_layers[-3:] == [(512, 1, 1)] * 3
    assert [k for _, k, _ in new.conv_aggregator_layers] == list(range(2, 14))
    assert new.skip_connections_agg and new.log_compression and new.num_negatives == 10
    assert FAIRSEQ_CFG_DEFAULTS["offset"] == "auto"


def test_cfg_interpolations_resolved(tmp_path):
    ckpt = raw("small_large_cfg")
    ckpt["cfg"]["model"]["infonce"] = "${criterion.infonce}"
    ckpt["cfg"]["criterion"] = {"_name": "wav2vec", "infonce": True}
    torch.save(ckpt, tmp_path / "a.pt")
    assert load_wav2vec(tmp_path / "a.pt")[1].config.infonce is True
    ckpt["cfg"]["criterion"] = {"_name": "wav2vec"}
    torch.save(ckpt, tmp_path / "b.pt")
    assert load_wav2vec(tmp_path / "b.pt")[1].config.infonce is False


def test_legacy_serialisation_of_w2vtk_and_zip_cfg(tmp_path):
    ckpt = raw("small_large_cfg")
    path = tmp_path / "legacy_cfg.pt"
    torch.save(ckpt, path, _use_new_zipfile_serialization=False)
    model, info = load_wav2vec(path)
    assert info.source == "fairseq-cfg"
    assert_matches_fairseq(model, "small_large_cfg")


@pytest.mark.parametrize("field, value", [
    ("vq_type", "gumbel"), ("aggregator", "gru"), ("agg_zero_pad", True),
    ("non_affine_group_norm", True), ("no_conv_bias", True), ("activation", "gelu"),
    ("skip_connections_feat", True), ("project_features", "same"),
])
def test_unsupported_fields_refused(tmp_path, field, value):
    ckpt = raw("small_base_args")
    setattr(ckpt["args"], field, value)
    path = tmp_path / "bad.pt"
    torch.save(ckpt, path)
    with pytest.raises(W2vtkError) as err:
        load_wav2vec(path)
    msg = str(err.value)
    assert f"{field}=" in msg and "\n" not in msg and str(path) in msg


def test_unsupported_cfg_field_refused(tmp_path):
    ckpt = raw("small_large_cfg")
    ckpt["cfg"]["model"]["vq_type"] = "kmeans"
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(W2vtkError, match="vq_type='kmeans'"):
        load_wav2vec(tmp_path / "bad.pt")


def test_bad_layer_spec_in_checkpoint_is_not_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = raw("small_base_args")
    ckpt["args"].conv_aggregator_layers = f"__import__('os').system('touch {marker}')"
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(W2vtkError, match="conv_aggregator_layers"):
        load_wav2vec(tmp_path / "bad.pt")
    assert not marker.exists()


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    ckpt = raw("small_base_args")
    ckpt["extra_state"]["payload"] = _Evil(marker)
    torch.save(ckpt, path)
    with pytest.raises(W2vtkError, match="refused"):
        load_wav2vec(path)
    assert not marker.exists()


def test_non_wav2vec_checkpoints_refused(tmp_path):
    cases = {
        "tensor.pt": torch.zeros(3),
        "transformer.pt": {"args": argparse.Namespace(arch="transformer"),
                           "model": {"encoder.embed_tokens.weight": torch.zeros(2, 2)}},
        "am.pt": {"kind": "am", "config": {}, "model": {"w": torch.zeros(1)}},
        "nomodel.pt": {"args": None, "cfg": None},
        "w2v2.pt": {"args": None, "cfg": {"model": {"_name": "wav2vec2"}},
                    "model": {"feature_extractor.conv_layers.0.0.weight": torch.zeros(1)}},
    }
    for name, obj in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(W2vtkError, match="not a wav2vec|not wav2vec|kind 'am'"):
            load_wav2vec(tmp_path / name)
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(W2vtkError, match="text.pt"):
        load_wav2vec(tmp_path / "text.pt")
    with pytest.raises(W2vtkError, match="not found"):
        load_wav2vec(tmp_path / "missing.pt")


def test_mismatched_weights_refused(tmp_path):
    ckpt = raw("small_base_args")
    ckpt["args"].conv_aggregator_layers = "[(64, 3, 1)] * 8"
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(W2vtkError, match="weights do not match"):
        load_wav2vec(tmp_path / "bad.pt")


def test_key_mapping_round_trip():
    model = Wav2VecModel(Wav2VecConfig(conv_feature_layers=[(8, 10, 5), (16, 8, 4)],
                                       conv_aggregator_layers=[(12, 2, 1), (12, 3, 1)],
                                       skip_connections_agg=True))
    state = model.state_dict()
    fs = to_fairseq_state_dict(state)
    assert "feature_aggregator.residual_proj.0.weight" in fs  # 16 -> 12 channels needs a projection
    assert "wav2vec_predictions.project_to_steps.weight" in fs
    assert from_fairseq_state_dict(fs).keys() == state.keys()
    with pytest.raises(W2vtkError, match="quantizer"):
        from_fairseq_state_dict({"vector_quantizer.vars": torch.zeros(1)})


@pytest.mark.parametrize("name", ["small_large_args", "small_base_args_sparse"])
def test_export_round_trip_is_bit_exact(tmp_path, name):
    model, _ = load_wav2vec(FIX / f"{name}.pt")
    out = tmp_path / "exported.pt"
    export_fairseq(model, out)
    again, info = load_wav2vec(out)
    assert info.source == "fairseq-args" and info.config == model.cfg
    ckpt = load_checkpoint(out, allow=ALLOWED_GLOBALS)
    assert isinstance(ckpt["args"], argparse.Namespace) and ckpt["args"].arch == "wav2vec"
    # What fairseq 0.12's checkpoint upgrade reads (verified by loading an export with fairseq-fixed
    # 0.12.3.1's load_model_ensemble_and_task: z / c within 1.3e-6 of w2vtk's).
    assert ckpt["args"].task == "audio_pretraining" and isinstance(ckpt["args"].lr, list)
    assert ckpt["optimizer_history"][-1]["num_updates"] == 0
    assert "train_iterator" in ckpt["extra_state"]
    assert set(ckpt["model"]) == set(raw(name)["model"])   # fairseq's own key names
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list(tmp_path.glob(".*tmp"))


def test_w2vtk_checkpoint_round_trip_and_channel_export_refused(tmp_path):
    cfg = Wav2VecConfig(conv_feature_layers=[(8, 10, 5), (8, 8, 4)], conv_aggregator_layers=[(8, 3, 1)],
                        norm="channel")
    model = Wav2VecModel(cfg)
    save_checkpoint(w2vtk_checkpoint(model, num_updates=7, optimizer={"state": {}}), tmp_path / "w.pt")
    again, info = load_wav2vec(tmp_path / "w.pt")
    assert info.source == "w2vtk" and info.num_updates == 7 and info.config == cfg
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    with pytest.raises(W2vtkError, match="channel"):
        export_fairseq(model, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_export_fairseq_command(tmp_path):
    """`w2vtk export-fairseq CKPT OUT`: fairseq's key layout, weights read back bit-exact; a
    norm: channel model is refused with one line and nothing written."""
    import subprocess
    import sys

    # a w2vtk checkpoint (fairseq-expressible) -> fairseq layout with the fixture's key names
    model, _ = load_wav2vec(FIX / "small_large_args.pt")
    save_checkpoint(w2vtk_checkpoint(model, num_updates=5), tmp_path / "w2vtk.pt")
    out = tmp_path / "new" / "exported.pt"
    proc = subprocess.run([sys.executable, "-m", "w2vtk", "export-fairseq", str(tmp_path / "w2vtk.pt"), str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "bit-exact" in proc.stderr + proc.stdout
    ckpt = load_checkpoint(out, allow=ALLOWED_GLOBALS)
    assert set(ckpt["model"]) == set(raw("small_large_args")["model"])
    assert ckpt["optimizer_history"][-1]["num_updates"] == 5
    again, info = load_wav2vec(out)
    assert info.source == "fairseq-args"
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    # norm: channel cannot be expressed in fairseq: refused before writing
    chan = Wav2VecModel(Wav2VecConfig(conv_feature_layers=[(8, 10, 5), (8, 8, 4)],
                                      conv_aggregator_layers=[(8, 3, 1)], norm="channel"))
    save_checkpoint(w2vtk_checkpoint(chan), tmp_path / "chan.pt")
    proc = subprocess.run([sys.executable, "-m", "w2vtk", "export-fairseq", str(tmp_path / "chan.pt"),
                           str(tmp_path / "chan_fs.pt")], capture_output=True, text=True)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "channel" in lines[0], proc.stderr
    assert not (tmp_path / "chan_fs.pt").exists()
    help_proc = subprocess.run([sys.executable, "-m", "w2vtk", "export-fairseq", "--help"], capture_output=True,
                               text=True)
    assert help_proc.returncode == 0 and "norm: channel" in help_proc.stdout
