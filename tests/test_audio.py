"""w2vtk.audio: every kind of wav.scp value to float32 mono 16 kHz, and every bad input to one
W2vtkError naming the utterance / file."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from w2vtk.audio import audio_duration, load_audio, read_sphere_header
from w2vtk.sources import AudioSource, audio_dir_sources, audio_sources, discover_audio, with_durations
from w2vtk.errors import W2vtkError

sys.path.insert(0, str(Path(__file__).parent / "corpora"))
from shorten_encoder import write_sphere_pcm, write_sphere_shorten  # noqa: E402


def tone(rate: int, seconds: float, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def as_int16(x: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(x) * 32768).astype(np.int16)


@pytest.fixture
def pcm():
    rng = np.random.default_rng(1)
    return (rng.standard_normal(8000) * 3000).astype(np.int16)


@pytest.mark.parametrize("fmt", ["wav", "flac", "sph"])
def test_formats_read_exactly(tmp_path, pcm, fmt):
    path = tmp_path / f"a.{fmt}"
    if fmt == "sph":
        write_sphere_pcm(path, pcm)
        assert read_sphere_header(path)["sample_count"] == "8000"
    else:
        sf.write(path, pcm, 16000, subtype="PCM_16")
    x = load_audio(str(path))
    assert x.dtype == np.float32 and x.shape == (8000,)
    assert np.array_equal(as_int16(x), pcm)
    assert audio_duration(str(path)) == pytest.approx(0.5)


def test_pipe_success_and_failure(tmp_path, pcm):
    path = tmp_path / "a.wav"
    sf.write(path, pcm, 16000, subtype="PCM_16")
    x = load_audio(f"cat {shlex.quote(str(path))} |", name="utt1")
    assert np.array_equal(as_int16(x), pcm)
    # shell syntax works as in Kaldi (pipes inside the command)
    y = load_audio(f"cat {path} | cat |", name="utt1")
    assert np.array_equal(x, y)
    assert audio_duration(f"cat {path} |") == pytest.approx(0.5)
    with pytest.raises(W2vtkError, match=r"utt7: command failed with exit status 3") as err:
        load_audio("echo oops >&2; exit 3 |", name="utt7")
    assert "oops" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(W2vtkError, match="utt8.*not readable audio"):
        load_audio("echo hello |", name="utt8")
    with pytest.raises(W2vtkError, match="utt9.*no audio"):
        load_audio("true |", name="utt9")


@pytest.mark.parametrize("ext", ["wav", "flac", "sph", "pipe"])
def test_segments(tmp_path, pcm, ext):
    path = tmp_path / f"a.{ext}"
    if ext == "sph":
        write_sphere_pcm(path, pcm)
    elif ext == "pipe":
        sf.write(tmp_path / "a.wav", pcm, 16000, subtype="PCM_16")
        path = f"cat {tmp_path / 'a.wav'} |"
    else:
        sf.write(path, pcm, 16000, subtype="PCM_16")
    x = load_audio(str(path), start=0.1, end=0.3)
    assert np.array_equal(as_int16(x), pcm[1600:4800])
    assert np.array_equal(as_int16(load_audio(str(path), start=0.25, end=-1)), pcm[4000:])
    # a little overshoot is clamped (rounded corpus tables), more is an error
    assert len(load_audio(str(path), start=0.4, end=0.6)) == 1600
    with pytest.raises(W2vtkError, match="seg1.*past the recording"):
        load_audio(str(path), start=0.1, end=2.0, name="seg1")
    with pytest.raises(W2vtkError, match="seg2.*not after its start"):
        load_audio(str(path), start=0.3, end=0.2, name="seg2")
    with pytest.raises(W2vtkError, match="seg3.*outside"):
        load_audio(str(path), start=0.6, name="seg3")


@pytest.mark.parametrize("rate", [8000, 48000])
def test_resampling_length_and_content(tmp_path, rate):
    path = tmp_path / f"r{rate}.wav"
    sf.write(path, tone(rate, 1.0, freq=1000.0), rate, subtype="FLOAT")
    x = load_audio(str(path))
    assert abs(len(x) - 16000) <= 1
    ref = tone(16000, 1.0, freq=1000.0)[:len(x)]
    middle = slice(400, len(x) - 400)  # away from the filter's edge transients
    assert np.max(np.abs(x[middle] - ref[middle])) < 0.01
    spectrum = np.abs(np.fft.rfft(x))
    assert np.argmax(spectrum) == 1000  # 1 Hz bins over one second
    assert len(load_audio(str(path), sample_rate=8000)) == 8000


def test_stereo_needs_channel(tmp_path):
    left, right = tone(16000, 0.2, 300.0), tone(16000, 0.2, 700.0, amp=0.25)
    path = tmp_path / "st.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="PCM_16")
    with pytest.raises(W2vtkError, match=r"spk-utt.*2 channels"):
        load_audio(str(path), name="spk-utt")
    y = load_audio(str(path), channel=1)
    assert np.max(np.abs(y - right)) < 1e-4
    with pytest.raises(W2vtkError, match="channel 2"):
        load_audio(str(path), channel=2)


def test_truncated_files(tmp_path, pcm):
    wav = tmp_path / "t.wav"
    sf.write(wav, pcm, 16000, subtype="PCM_16")
    wav.write_bytes(wav.read_bytes()[:-2000])
    with pytest.raises(W2vtkError, match=r"u1 .*t\.wav.*truncated"):
        load_audio(str(wav), name="u1")
    with pytest.raises(W2vtkError, match="truncated WAV"):
        audio_duration(str(wav))
    sph = tmp_path / "t.sph"
    write_sphere_pcm(sph, pcm)
    sph.write_bytes(sph.read_bytes()[:-10])
    with pytest.raises(W2vtkError, match=r"t\.sph.*truncated"):
        load_audio(str(sph))
    wv1 = tmp_path / "t.wv1"
    write_sphere_shorten(wv1, pcm)
    wv1.write_bytes(wv1.read_bytes()[:1500])
    with pytest.raises(W2vtkError, match=r"u3 .*t\.wv1"):
        load_audio(str(wv1), name="u3")
    junk = tmp_path / "junk.flac"
    junk.write_bytes(b"not audio at all")
    with pytest.raises(W2vtkError, match=r"junk\.flac.*unreadable"):
        load_audio(str(junk))
    with pytest.raises(W2vtkError, match=r"u4 .*no such audio file"):
        load_audio(str(tmp_path / "missing.wav"), name="u4")


def test_nan_inf_and_empty(tmp_path):
    bad = tone(16000, 0.1)
    bad[50] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, bad, 16000, subtype="FLOAT")
    with pytest.raises(W2vtkError, match="nan1.*NaN or Inf"):
        load_audio(str(path), name="nan1")
    bad[50] = np.inf
    sf.write(path, bad, 16000, subtype="FLOAT")
    with pytest.raises(W2vtkError, match="NaN or Inf"):
        load_audio(str(path))
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.int16), 16000, subtype="PCM_16")
    with pytest.raises(W2vtkError, match="e1.*zero length"):
        load_audio(str(empty), name="e1")


def _write_dir(d: Path, tables: dict[str, dict[str, str]]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        (d / name).write_text("".join(f"{k} {v}\n" for k, v in sorted(table.items())))


def test_audio_sources_data_dir_with_segments(tmp_path, pcm):
    wav = tmp_path / "rec.wav"
    sf.write(wav, pcm, 16000, subtype="PCM_16")
    d = tmp_path / "data"
    _write_dir(d, {"wav.scp": {"rec1": str(wav)},
                   "segments": {"spk-a": "rec1 0.00 0.25", "spk-b": "rec1 0.25 0.50"},
                   "utt2spk": {"spk-a": "spk", "spk-b": "spk"},
                   "spk2utt": {"spk": "spk-a spk-b"}})
    sources = audio_sources(d)
    assert [s.utt_id for s in sources] == ["spk-a", "spk-b"]
    assert sources[1].start == 0.25 and sources[1].end == 0.5 and sources[1].duration_s == 0.25
    assert np.array_equal(as_int16(sources[1].load()), pcm[4000:8000])
    # a plain wav.scp file works too
    scp = tmp_path / "wav.scp"
    scp.write_text(f"b {wav}\na cat {wav} |\n")
    srcs = audio_sources(scp)
    assert [s.utt_id for s in srcs] == ["a", "b"] and srcs[0].spec.endswith("|")
    assert np.array_equal(srcs[0].load(), srcs[1].load())
    with pytest.raises(W2vtkError, match="no wav.scp"):
        audio_sources((tmp_path / "data" / "local").mkdir() or tmp_path / "data" / "local")
    with pytest.raises(W2vtkError, match="no such data dir"):
        audio_sources(tmp_path / "nowhere")


def test_audio_sources_without_segments_uses_utt2dur(tmp_path, pcm):
    wav = tmp_path / "x.flac"
    sf.write(wav, pcm, 16000, subtype="PCM_16")
    d = tmp_path / "data"
    _write_dir(d, {"wav.scp": {"s1-u1": str(wav)}, "utt2spk": {"s1-u1": "s1"},
                   "spk2utt": {"s1": "s1-u1"}, "utt2dur": {"s1-u1": "0.5"}})
    [src] = audio_sources(d)  # no text: unlabelled audio is a valid source
    assert src == AudioSource("s1-u1", str(wav), 0.0, None, 0.5)
    assert len(src.load(sample_rate=8000)) == 4000


def test_audio_dir_sources(tmp_path, pcm):
    root = tmp_path / "audio"
    (root / "spk1" / "ch").mkdir(parents=True)
    sf.write(root / "spk1" / "a.wav", pcm, 16000, subtype="PCM_16")
    sf.write(root / "spk1" / "ch" / "b.flac", pcm[:1600], 16000, subtype="PCM_16")
    write_sphere_pcm(root / "c.WAV", pcm[:800])
    write_sphere_shorten(root / "spk1" / "d.wv1", pcm[:400])
    (root / "notes.txt").write_text("ignored")
    sf.write(root / "c.WAV.wav", pcm[:800], 16000, subtype="PCM_16")  # converted copy: skipped
    sources = audio_dir_sources(root)
    assert [s.utt_id for s in sources] == ["c", "spk1-a", "spk1-ch-b", "spk1-d"]
    assert [s.duration_s for s in sources] == [0.05, 0.5, 0.1, 0.025]
    assert np.array_equal(as_int16(sources[3].load()), pcm[:400])
    sf.write(root / "spk1-a.flac", pcm, 16000, subtype="PCM_16")
    with pytest.raises(W2vtkError, match=r"spk1/a\.wav and .*spk1-a\.flac both map to utterance id spk1-a"):
        audio_dir_sources(root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(W2vtkError, match="no audio files"):
        audio_dir_sources(tmp_path / "empty")


def test_discover_audio_reads_every_input_kind_alike(tmp_path, pcm):
    root = tmp_path / "audio"
    (root / "spk1").mkdir(parents=True)
    sf.write(root / "spk1" / "a.wav", pcm, 16000, subtype="PCM_16")
    sf.write(root / "b.flac", pcm[:1600], 16000, subtype="PCM_16")
    from_dir, data_dir = discover_audio(root)
    assert data_dir is None and [s.utt_id for s in from_dir] == ["b", "spk1-a"]
    assert [s.num_samples for s in from_dir] == [1600, len(pcm)]
    manifest = tmp_path / "train.tsv"
    manifest.write_text(f"{root}\nspk1/a.wav\t{len(pcm)}\nb.flac\t1600\n")
    from_tsv, _ = discover_audio(manifest)
    assert [(s.utt_id, s.num_samples) for s in from_tsv] == [("spk1-a", len(pcm)), ("b", 1600)]  # file order
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text("".join(f"{s.utt_id} {s.spec}\n" for s in from_dir))
    from_scp, data_dir = discover_audio(data)
    assert data_dir == data and [s.spec for s in from_scp] == [s.spec for s in from_dir]
    assert from_scp[0].duration_s is None  # no utt2dur: measured on demand
    assert [s.num_samples for s in with_durations(from_scp)] == [1600, len(pcm)]
    assert np.array_equal(from_tsv[1].load(), from_dir[0].load())
    with pytest.raises(W2vtkError, match="length unknown"):
        from_scp[0].num_samples
    with pytest.raises(W2vtkError, match="no such data dir, wav.scp, .tsv manifest or audio directory"):
        discover_audio(tmp_path / "nowhere")
