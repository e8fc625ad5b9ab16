"""The extraction driver and ``w2vtk extract`` with log-mel features: archives, shards, resume,
data-dir output, bad input."""

import hashlib
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from w2vtk.cli import app
from w2vtk.errors import W2vtkError
from w2vtk.features.extract import ExtractOptions, extract_features
from w2vtk.features.logmel import LogMelExtractor, logmel

runner = CliRunner()
LENGTHS = {"a1": 16000, "a2": 24000, "b1": 9000, "b2": 30500, "c1": 4000, "c2": 12000, "c3": 200}


def _write_audio(root: Path, lengths=LENGTHS) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    waves = {}
    for utt, n in lengths.items():
        spk = utt[0]
        (root / spk).mkdir(parents=True, exist_ok=True)
        w = (0.1 * rng.standard_normal(n)).astype(np.float32)
        sf.write(root / spk / f"{utt}.wav", w, 16000, subtype="FLOAT")
        waves[f"{spk}-{utt}"] = w
    return waves


def _run(args):
    result = runner.invoke(app, ["extract", *args])
    return result


def _cli(args):
    """The console script in a subprocess: exit status and stderr (one 'error:' line on user errors)."""
    proc = subprocess.run([sys.executable, "-m", "w2vtk", "extract", *args], capture_output=True, text=True)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 0 or len(errors) == 1, proc.stderr
    return proc.returncode, proc.stderr


def _digest(paths):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture()
def audio_dir(tmp_path):
    root = tmp_path / "audio"
    waves = _write_audio(root)
    return root, waves


def test_ark_scp_readable_with_right_shapes(audio_dir, tmp_path):
    root, waves = audio_dir
    out = tmp_path / "out"
    out.mkdir()
    res = _run(["--in", str(root), "--out", str(out / "feats.ark"), "--type", "logmel", "--num-workers", "1",
                "--npy-dir", str(tmp_path / "npy")])
    assert res.exit_code == 0, res.output
    feats = kaldiio.load_scp(str(out / "feats.scp"))
    frames = dict(line.split() for line in (out / "utt2num_frames").read_text().splitlines())
    assert sorted(feats) == sorted(u for u in waves if u != "c-c3")  # 200 samples: skipped
    assert (out / "feats.skipped").read_text() == "c-c3\n"
    for utt in feats:
        mat = feats[utt]
        assert mat.shape == (1 + (len(waves[utt]) - 400) // 160, 80)
        assert int(frames[utt]) == mat.shape[0]
        np.testing.assert_allclose(mat, logmel(waves[utt]), atol=1e-5)
        np.testing.assert_array_equal(np.load(tmp_path / "npy" / f"{utt}.npy"), mat)
    import yaml

    meta = yaml.safe_load((out / "feats.yaml").read_text())
    assert meta["feature_type"] == "logmel" and meta["dim"] == 80 and meta["frame_shift_ms"] == 10
    assert meta["num_utterances"] == 6 and "936" in meta["frame_count_note"]


def test_float16_and_compressed_storage(audio_dir, tmp_path):
    root, waves = audio_dir
    ref = logmel(waves["a-a1"])
    for flags, tol, name in ((["--dtype", "float16"], 0.02, "h"), (["--compress"], 0.2, "cm")):
        res = _run(["--in", str(root), "--out", str(tmp_path / f"{name}.ark"), "--type", "logmel",
                    "--num-workers", "0", *flags])
        assert res.exit_code == 0, res.output
        mat = kaldiio.load_scp(str(tmp_path / f"{name}.scp"))["a-a1"]
        assert mat.shape == ref.shape
        assert np.abs(mat.astype(np.float32) - ref).max() < tol
    assert (tmp_path / "h.ark").stat().st_size < (tmp_path / "cm.ark").stat().st_size * 2.2


def test_resume_after_kill_is_identical_and_works_with_other_process_count(audio_dir, tmp_path):
    root, _ = audio_dir
    from w2vtk.sources import audio_dir_sources

    sources = audio_dir_sources(root)
    ext = LogMelExtractor()
    full, part = tmp_path / "full", tmp_path / "part"
    full.mkdir()
    part.mkdir()
    opts = ExtractOptions(num_shards=3, num_workers=0, batch_samples=40000)
    done = extract_features(sources, ext, ark=full / "feats.ark", opts=opts)
    assert done.complete and done.num_utterances == 6
    # "Process 0 of 2" finishes shards 1 and 3, then the run dies: no scp yet.
    first = extract_features(sources, ext, ark=part / "feats.ark", opts=opts, rank=0, world_size=2)
    assert not first.complete and not (part / "feats.scp").exists()
    assert (part / "feats.1.ark").exists() and not (part / "feats.2.ark").exists()
    # A kill in the middle of shard 2 leaves only a temporary file behind.
    (part / ".feats.2.ark.dead.tmp").write_bytes(b"half")
    with pytest.raises(W2vtkError, match="already exists"):
        extract_features(sources, ext, ark=part / "feats.ark", opts=opts)
    with pytest.raises(W2vtkError, match="num-shards"):
        extract_features(sources, ext, ark=part / "feats.ark",
                         opts=ExtractOptions(num_shards=2, num_workers=0, resume=True))
    # Resumed by a single process through the CLI.
    res = _run(["--in", str(root), "--out", str(part / "feats.ark"), "--type", "logmel", "--num-shards", "3",
                "--resume", "--num-workers", "0", "--batch-samples", "40000"])
    assert res.exit_code == 0, res.output
    arks = sorted(p.name for p in full.glob("*.ark"))
    assert arks == ["feats.1.ark", "feats.2.ark", "feats.3.ark"]
    assert _digest(sorted(full.glob("*.ark"))) == _digest(sorted(part.glob("*.ark")))
    assert not list(part.glob(".*.tmp"))
    scp_full = (full / "feats.scp").read_text().replace(str(full), "D")
    assert scp_full == (part / "feats.scp").read_text().replace(str(part), "D")
    assert (full / "utt2num_frames").read_text() == (part / "utt2num_frames").read_text()
    # A finished run keeps no .feats.work (its manifest lives on in feats.yaml): --resume of it has
    # nothing to do, and one with other settings is refused naming the setting.
    assert not (full / ".feats.work").exists() and not (part / ".feats.work").exists()
    before = _digest(sorted(part.glob("feats.*")))
    again = extract_features(sources, ext, ark=part / "feats.ark",
                             opts=ExtractOptions(num_shards=3, num_workers=0, resume=True))
    assert again.complete and again.num_utterances == 6 and again.num_frames == done.num_frames
    assert _digest(sorted(part.glob("feats.*"))) == before
    with pytest.raises(W2vtkError, match="the finished run in .* differs in dtype"):
        extract_features(sources, ext, ark=part / "feats.ark",
                         opts=ExtractOptions(num_shards=3, num_workers=0, resume=True, dtype="float16"))
    # Batch size does not change the numbers; it only changes how they are computed.
    other = tmp_path / "other"
    other.mkdir()
    extract_features(sources, ext, ark=other / "feats.ark",
                     opts=ExtractOptions(num_shards=3, num_workers=2, batch_samples=10**7))
    assert _digest(sorted(full.glob("*.ark"))) == _digest(sorted(other.glob("*.ark")))


def _data_dir(tmp_path: Path) -> Path:
    """A data dir with segments cut from two recordings, one segment too short for a frame."""
    rng = np.random.default_rng(1)
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    d = tmp_path / "data" / "train"
    d.mkdir(parents=True)
    scp, segs, text, u2s = [], [], [], []
    for reco in ("r1", "r2"):
        sf.write(wavs / f"{reco}.wav", (0.1 * rng.standard_normal(48000)).astype(np.float32), 16000,
                 subtype="FLOAT")
        scp.append(f"{reco} {wavs / reco}.wav")
    for utt, reco, start, end in (("s1-u1", "r1", 0.0, 1.2), ("s1-u2", "r1", 1.2, 2.9),
                                  ("s2-u1", "r2", 0.5, 0.51), ("s2-u2", "r2", 1.0, 3.0)):
        segs.append(f"{utt} {reco} {start} {end}")
        text.append(f"{utt} HELLO WORLD")
        u2s.append(f"{utt} {utt[:2]}")
    for name, lines in (("wav.scp", scp), ("segments", segs), ("text", text), ("utt2spk", u2s)):
        (d / name).write_text("\n".join(sorted(lines)) + "\n")
    (d / "spk2utt").write_text("s1 s1-u1 s1-u2\ns2 s2-u1 s2-u2\n")
    return d


def test_data_dir_output_is_a_valid_new_data_dir(tmp_path):
    from w2vtk.data import load_data_dir, validate_data_dir

    src = _data_dir(tmp_path)
    before = _digest(sorted(src.iterdir()))
    out = tmp_path / "data" / "train_fbank"
    res = _run(["--in", str(src), "--out-dir", str(out), "--type", "logmel", "--num-workers", "0"])
    assert res.exit_code == 0, res.output
    assert _digest(sorted(src.iterdir())) == before and sorted(p.name for p in src.iterdir()) == sorted(before)
    assert validate_data_dir(out) == []
    dd = load_data_dir(out)
    assert sorted(dd.feats_scp) == ["s1-u1", "s1-u2", "s2-u2"]  # s2-u1 (10 ms) is too short
    assert sorted(dd.text) == sorted(dd.feats_scp) and dd.segments is not None
    feats = kaldiio.load_scp(str(out / "feats.scp"))
    assert feats["s2-u2"].shape == (1 + (32000 - 400) // 160, 80)
    assert int(dd.utt2num_frames["s1-u2"]) == feats["s1-u2"].shape[0] == 1 + (27200 - 400) // 160
    assert (out / "feats.yaml").is_file() and (out / "feats.ark").is_file()
    # The same directory again: refused, then replaced with --overwrite.
    res = _run(["--in", str(src), "--out-dir", str(out), "--type", "logmel"])
    assert isinstance(res.exception, W2vtkError) and "already exists" in str(res.exception)
    res = _run(["--in", str(src), "--out-dir", str(out), "--type", "logmel", "--overwrite", "--num-workers", "0"])
    assert res.exit_code == 0, res.output
    assert validate_data_dir(out) == []
    res = _run(["--in", str(src), "--out-dir", str(src), "--type", "logmel", "--overwrite"])
    assert isinstance(res.exception, W2vtkError) and "never modifies" in str(res.exception)


def test_wav_scp_input(tmp_path, audio_dir):
    root, waves = audio_dir
    scp = tmp_path / "wav.scp"
    scp.write_text(f"x1 {root}/a/a1.wav\nx2 sox -t wav {root}/b/b2.wav -t wav - |\n"
                   if False else f"x1 {root}/a/a1.wav\nx2 cat {root}/b/b2.wav |\n")
    res = _run(["--in", str(scp), "--out", str(tmp_path / "f.ark"), "--type", "logmel", "--num-workers", "0"])
    assert res.exit_code == 0, res.output
    feats = kaldiio.load_scp(str(tmp_path / "f.scp"))
    np.testing.assert_allclose(feats["x2"], logmel(waves["b-b2"]), atol=1e-5)


def test_bad_inputs_give_one_error_line_and_no_half_archive(tmp_path, audio_dir):
    root, _ = audio_dir
    # --out and --out-dir both create missing directories (--out used to refuse them)
    rc, err = _cli(["--in", str(root), "--out", str(tmp_path / "new" / "sub" / "f.ark"), "--type", "logmel"])
    assert rc == 0 and (tmp_path / "new" / "sub" / "f.scp").is_file(), err
    assert (tmp_path / "new" / "sub" / "log" / "extract.log").is_file()
    res = _run(["--in", str(root), "--out-dir", str(tmp_path / "new2" / "dir"), "--type", "logmel"])
    assert res.exit_code == 0 and (tmp_path / "new2" / "dir" / "feats.scp").is_file()
    assert "extracted" in (tmp_path / "new2" / "dir" / "log" / "extract.log").read_text()
    (tmp_path / "file").write_text("x")
    rc, err = _cli(["--in", str(root), "--out", str(tmp_path / "file" / "f.ark"), "--type", "logmel"])
    assert rc == 1 and "is not a directory" in err and "Traceback" not in err
    # Audio shorter than one frame, with --fail-on-short.
    out = tmp_path / "o"
    out.mkdir()
    res = _run(["--in", str(root), "--out", str(out / "f.ark"), "--type", "logmel", "--fail-on-short",
                "--num-workers", "0"])
    assert isinstance(res.exception, W2vtkError) and "c-c3" in str(res.exception)
    assert not list(out.glob("*.ark")) and not list(out.glob(".*.tmp")) and not (out / "f.scp").exists()
    # Unreadable audio.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    sf.write(bad / "y.wav", np.zeros(8000, np.float32), 16000)
    out2 = tmp_path / "o2"
    out2.mkdir()
    rc, err = _cli(["--in", str(bad), "--out", str(out2 / "f.ark"), "--type", "logmel", "--num-workers", "1"])
    assert rc == 1 and "x.wav" in err and "Traceback" not in err
    assert not list(out2.glob("*.ark")) and not list(out2.glob(".*.tmp"))
    # Existing output is refused without --overwrite / --resume.
    res = _run(["--in", str(root), "--out", str(out / "g.ark"), "--type", "logmel", "--num-workers", "0"])
    assert res.exit_code == 0
    res = _run(["--in", str(root), "--out", str(out / "g.ark"), "--type", "logmel"])
    assert isinstance(res.exception, W2vtkError) and "already exists" in str(res.exception)
    # Options that do not fit.
    res = _run(["--in", str(root), "--out", str(out / "h.ark"), "--type", "logmel", "--dtype", "float16",
                "--compress"])
    assert isinstance(res.exception, W2vtkError) and "float32" in str(res.exception)
    res = _run(["--in", str(root), "--out", str(out / "h.ark"), "--type", "wav2vec"])
    assert isinstance(res.exception, W2vtkError) and "--checkpoint" in str(res.exception)
    res = _run(["--in", str(tmp_path / "nowhere"), "--out", str(out / "h.ark"), "--type", "logmel"])
    assert isinstance(res.exception, W2vtkError) and "nowhere" in str(res.exception)


def test_two_torchrun_processes_write_the_same_archives(audio_dir, tmp_path):
    root, _ = audio_dir
    from w2vtk.sources import audio_dir_sources

    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    extract_features(audio_dir_sources(root), LogMelExtractor(), ark=one / "feats.ark",
                     opts=ExtractOptions(num_shards=3, num_workers=0))
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "w2vtk", "extract",
                           "--in", str(root), "--out", str(two / "feats.ark"), "--type", "logmel",
                           "--num-shards", "3", "--num-workers", "0"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _digest(sorted(one.glob("*.ark"))) == _digest(sorted(two.glob("*.ark")))
    assert (one / "feats.scp").read_text().replace(str(one), "D") == \
        (two / "feats.scp").read_text().replace(str(two), "D")
