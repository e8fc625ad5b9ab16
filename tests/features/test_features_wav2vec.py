"""wav2vec extraction: fairseq parity through the CLI, batched == single, exact long audio."""

import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from w2vtk.cli import app
from w2vtk.errors import W2vtkError
from w2vtk.features.wav2vec import Wav2VecExtractor, approx_chunked, exact_chunked
from w2vtk.models.wav2vec import Wav2VecConfig, Wav2VecModel

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "fairseq_wav2vec"
runner = CliRunner()


def _small(kind: str = "base", width: int = 16, seed: int = 0) -> Wav2VecModel:
    torch.manual_seed(seed)
    enc = [(width, 10, 5), (width, 8, 4)] + [(width, 4, 2)] * 3
    if kind == "base":
        cfg = Wav2VecConfig(conv_feature_layers=enc, conv_aggregator_layers=[(width, 3, 1)] * 4)
    else:
        cfg = Wav2VecConfig(conv_feature_layers=enc + [(width, 1, 1)] * 2,
                            conv_aggregator_layers=[(width + 4, k, 1) for k in range(2, 6)],
                            skip_connections_agg=True, log_compression=True)
    model = Wav2VecModel(cfg).eval()
    with torch.no_grad():  # non-trivial affine norms, so a wrong statistic shows
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
            elif name.endswith("norm.bias"):
                p.uniform_(-0.2, 0.2)
    return model


def _wave(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000.0
    env = 0.2 + 0.8 * (np.sin(2 * np.pi * 0.3 * t) > 0)  # loud and quiet stretches
    return (env * (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(n))).astype(np.float32)


@pytest.mark.parametrize("name,expected", [("small_base_args", "small_base_args"),
                                           ("small_large_cfg", "small_large_cfg")])
def test_fairseq_fixture_parity_through_cli(tmp_path, name, expected):
    if not (FIX / f"{name}.pt").is_file():
        pytest.skip("fairseq fixtures not copied into tests/fixtures")
    audio = tmp_path / "audio"
    audio.mkdir()
    for sig in ("chirp", "buzz", "short"):
        (audio / f"{sig}.wav").write_bytes((FIX / f"{sig}.wav").read_bytes())
    ref = np.load(FIX / f"{expected}.expected.npz")
    for layer in ("z", "c"):
        out = tmp_path / layer
        out.mkdir()
        res = runner.invoke(app, ["extract", "--in", str(audio), "--out", str(out / "feats.ark"),
                                  "--checkpoint", str(FIX / f"{name}.pt"), "--layer", layer,
                                  "--num-workers", "0"])
        assert res.exit_code == 0, res.output
        feats = kaldiio.load_scp(str(out / "feats.scp"))
        assert sorted(feats) == ["buzz", "chirp", "short"]
        for sig in feats:
            want = ref[f"{sig}.{layer}"]
            assert feats[sig].shape == want.shape
            assert np.abs(feats[sig] - want).max() <= 1e-4, (sig, layer)
    import yaml

    meta = yaml.safe_load((tmp_path / "c" / "feats.yaml").read_text())
    assert meta["feature_type"] == "wav2vec" and meta["layer"] == "c" and meta["dim"] == want.shape[1]
    assert len(meta["checkpoint_sha256"]) == 64 and meta["frame_shift_ms"] == 10


@pytest.mark.parametrize("padded", [True, False], ids=["padded-batch", "cpu-loop"])
@pytest.mark.parametrize("kind", ["base", "large"])
def test_batched_equals_single(kind, padded):
    model = _small(kind)
    ext = Wav2VecExtractor(model, layer="c", cpu_padded_batches=padded)
    lengths = [16000, 3100, 9999, 465, 12345]
    batch = [(f"u{i}", _wave(n, i)) for i, n in enumerate(lengths)]
    together = ext.extract(batch)
    for (utt, w), feats in zip(batch, together):
        alone = ext.extract([(utt, w)])[0]
        assert feats.shape == alone.shape == (model.num_frames(len(w)), ext.dim)
        assert np.abs(feats - alone).max() <= 1e-4
    mid = Wav2VecExtractor(model, layer="context-2", cpu_padded_batches=padded)
    a = mid.extract(batch)[1]
    b = mid.extract([batch[1]])[0]
    assert a.shape[1] == mid.dim and np.abs(a - b).max() <= 1e-4


def test_long_audio_exact_matches_whole_file():
    torch.set_num_threads(2)
    model = _small("large", width=8, seed=3)
    wave = _wave(60 * 16000, 7)
    x = torch.from_numpy(wave)
    with torch.inference_mode():
        whole = model.extract(x[None], layer="c")[0][0]
        chunked = exact_chunked(model, x, "c", chunk_samples=9 * 16000 + 123)
        assert chunked.shape == whole.shape
        assert (chunked - whole).abs().max() <= 1e-4
        # Independent chunks are measurably wrong: why the exact path is the default.
        approx = approx_chunked(model, x, "c", chunk_samples=9 * 16000)
        assert approx.shape == whole.shape and (approx - whole).abs().max() > 1e-2
    # Through the extractor, stopping at a context layer: a long utterance next to a short one.
    part = wave[: 15 * 16000]
    with torch.inference_mode():
        whole3 = model.extract(torch.from_numpy(part)[None], layer="context-3")[0][0].numpy()
    messages = []
    ext = Wav2VecExtractor(model, layer="context-3", long_chunk_seconds=4.0, log=messages.append)
    short = _wave(20000, 1)
    long_f, short_f = ext.extract([("long", part), ("short", short)])
    assert long_f.shape == whole3.shape and np.abs(long_f - whole3).max() <= 1e-4
    assert np.abs(short_f - ext.extract([("s", short)])[0]).max() <= 1e-6
    approx_ext = Wav2VecExtractor(model, layer="context-3", long_chunk_seconds=4.0, approx_chunks=True,
                                  log=messages.append)
    approx_ext.extract([("long", part)])
    assert len(messages) == 1 and "max abs error" in messages[0] and "long" in messages[0]


def test_bad_checkpoints_and_short_audio(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "ok.wav", _wave(8000, 0), 16000, subtype="FLOAT")
    sf.write(audio / "tiny.wav", _wave(300, 1), 16000, subtype="FLOAT")
    not_w2v = tmp_path / "am.pt"
    torch.save({"kind": "am", "config": {}, "model": {"w": torch.zeros(2)}}, not_w2v)
    proc = subprocess.run([sys.executable, "-m", "w2vtk", "extract", "--in", str(audio), "--out",
                           str(tmp_path / "f.ark"), "--checkpoint", str(not_w2v)],
                          capture_output=True, text=True)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1 and "am.pt" in errors[0]
    assert not list(tmp_path.glob("*.ark")) and "Traceback" not in proc.stderr
    res = runner.invoke(app, ["extract", "--in", str(audio), "--out", str(tmp_path / "f.ark"),
                              "--checkpoint", str(tmp_path / "missing.pt")])
    assert isinstance(res.exception, W2vtkError) and "missing.pt" in str(res.exception)
    # A real model: the 300-sample file is below the 465-sample receptive field and is skipped.
    from w2vtk.checkpoint import save_checkpoint
    from w2vtk.models.fairseq import w2vtk_checkpoint

    ckpt = tmp_path / "w2v.pt"
    save_checkpoint(w2vtk_checkpoint(_small()), ckpt)
    res = runner.invoke(app, ["extract", "--in", str(audio), "--out", str(tmp_path / "f.ark"),
                              "--checkpoint", str(ckpt), "--layer", "context-9"])
    assert isinstance(res.exception, W2vtkError) and "context-N" in str(res.exception)
    res = runner.invoke(app, ["extract", "--in", str(audio), "--out", str(tmp_path / "f.ark"),
                              "--checkpoint", str(ckpt), "--dtype", "float16", "--num-workers", "0"])
    assert res.exit_code == 0, res.output
    feats = kaldiio.load_scp(str(tmp_path / "f.scp"))
    assert list(feats) == ["ok"] and feats["ok"].shape == (48, 16) and feats["ok"].dtype == np.float16
    assert (tmp_path / "f.skipped").read_text() == "tiny\n"
    res = runner.invoke(app, ["extract", "--in", str(audio), "--out", str(tmp_path / "g.ark"),
                              "--checkpoint", str(ckpt), "--fail-on-short"])
    assert isinstance(res.exception, W2vtkError) and "tiny" in str(res.exception)
    assert not (tmp_path / "g.ark").exists()
