"""WSJ prep on fake WSJ0 / WSJ1 discs in the LDC layout: .ndx quirks, .dot transcripts,
compress(1) LM text made with ncompress, and .wv1 files that are shorten-compressed SPHERE made
by the test-only encoder in shorten_encoder.py."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

import w2vtk.audio as audio
from shorten_encoder import shorten_encode, sphere_header, write_sphere_shorten
from w2vtk.audio import load_audio
from w2vtk.cli import app
from w2vtk.corpora import wsj
from w2vtk.data import load_data_dir, read_kv, validate_data_dir
from w2vtk.errors import W2vtkError

from system_tools import require_tool

ncompress = pytest.importorskip("ncompress")
HAVE_FFMPEG = shutil.which("ffmpeg") is not None

RAW = ("The [<door_slam] \\Corp. %PERCENT [loud_breath] <and> --DASH ,COMMA *grandiose* ~ . "
       "[phone_ring/] emph: `tis !EXCLAMATION-POINT :COLON .POINT [/phone_ring]")
KALDI = ("THE CORP. PERCENT <NOISE> AND -DASH ,COMMA *GRANDIOSE* EMPH: `TIS !EXCLAMATION-POINT "
         ":COLON POINT")
W2L = "the corp. percent and -dash ,comma grandiose emph 'tis !exclamation-point :colon point"

# (disc, path inside the disc without suffix): the audio files of the fake corpus.
AUDIO = {
    "si84": [("11-1.1", "wsj0/si_tr_s/011/011c0201"), ("11-1.1", "wsj0/si_tr_s/011/011c0202")],
    "si284_extra": [("13-1.1", "wsj1/si_tr_s/46a/46ac0201"), ("13-1.1", "wsj1/si_tr_s/46a/46ac0202")],
    "dev93": [("13-16.1", "wsj1/si_dt_20/4k0/4k0c0301"), ("13-16.1", "wsj1/si_dt_20/4k0/4k0c0302")],
    "eval92": [("11_14.1", "wsj0/si_et_20/440/440c0201"), ("11_14.1", "wsj0/si_et_20/440/440c0202")],
    # stored upper case on disc: paths inside a disc are matched case-insensitively
    "eval93": [("13-33.1", "WSJ1/SI_ET_H1/WSJ64K/4KBC0201"), ("13-33.1", "WSJ1/SI_ET_H1/WSJ64K/4KBC0202")],
}
COUNTS = {"train_si284": 4, "train_si84": 2, "test_dev93": 2, "test_eval92": 2, "test_eval93": 2}
LM = {"87": "<art.870101>\n<p>\n<s>\nTHE MARKET ROSE [noise] \\Corp.\n</s>\n</p>\n",
      "88": "<s>\nPRICES FELL %PERCENT\n</s>\n",
      "89": "; not a comment in LM text\n<s>\nSTAYED <word> --DASH FLAT\n</s>\n"}
LM_KALDI = ["THE MARKET ROSE <NOISE> CORP.", "PRICES FELL PERCENT", "; NOT A COMMENT IN LM TEXT",
            "STAYED WORD -DASH FLAT"]
LM_W2L = ["the market rose corp.", "prices fell percent", "; not a comment in lm text",
          "stayed word -dash flat"]


def samples_for(utt: str, n: int = 3000) -> np.ndarray:
    rng = np.random.default_rng(int.from_bytes(utt.encode(), "little") % (2**32))
    t = np.arange(n + len(utt) * 37)
    return (np.sin(t / 7.0) * 8000 + rng.standard_normal(len(t)) * 500).astype(np.int16)


def make_wsj(root: Path) -> tuple[Path, Path]:
    wsj0, wsj1 = root / "WSJ0", root / "wsj1" / "media"
    for group in AUDIO.values():
        for disc, rel in group:
            base = wsj0 if disc.startswith("11") else wsj1
            path = base / disc / f"{rel}{'.WV1' if rel.isupper() else '.wv1'}"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_sphere_shorten(path, samples_for(Path(rel).name.lower()))
            # Sennheiser .wv1 only: the second microphone channel (.wv2) is never listed
            path.with_suffix(".wv2").write_bytes(b"")
    # transcripts: wsj0 in transcrp/dots, wsj1 next to the audio; one .DOT in upper case
    dots = wsj0 / "11-4.1" / "wsj0" / "transcrp" / "dots"
    (dots / "si_tr_s" / "011").mkdir(parents=True)
    (dots / "si_tr_s" / "011" / "011c0200.dot").write_text(
        f"{RAW} (011c0201)\nsecond [lip_smack] sentence (011c0202)\n")
    (dots / "si_et_20" / "440").mkdir(parents=True)
    (dots / "si_et_20" / "440" / "440c0200.dot").write_text("eval one (440c0201)\neval two (440C0202)\n")
    (wsj1 / "13-1.1" / "wsj1" / "si_tr_s" / "46a" / "46ac0200.dot").write_text(
        "wsj one train (46ac0201)\nwsj one <uh> train (46ac0202)\n")
    (wsj1 / "13-16.1" / "wsj1" / "si_dt_20" / "4k0" / "4k0c0300.dot").write_text(
        "dev one (4k0c0301)\ndev two (4k0c0302)\n")
    (wsj1 / "13-33.1" / "WSJ1" / "SI_ET_H1" / "WSJ64K" / "4KBC0200.DOT").write_text(
        "EVAL93 ONE (4KBC0201)\nEVAL93 TWO (4KBC0202)\n")
    # index files with their quirks
    idx0 = wsj0 / "11-13.1" / "wsj0" / "doc" / "indices"
    (idx0 / "train").mkdir(parents=True)
    (idx0 / "train" / "tr_s_wv1.ndx").write_text(
        ";\n; Index for WSJ0 SI-84 training data\n;\n"
        "11_1_1:wsj0/si_tr_s/011/011c0201.wv1\n11_1_1:wsj0/si_tr_s/011/011c0202.wv1\n"
        "11_2_1:wsj0/si_tr_s/401/401c0201.wv1\n")  # speaker dir 401 does not exist: dropped
    (idx0 / "test" / "nvp").mkdir(parents=True)
    (idx0 / "test" / "nvp" / "si_et_20.ndx").write_text(
        "; eval92 lines lack the .wv1 suffix\n11_14_1:wsj0/si_et_20/440/440c0201\n"
        "11_14_1:wsj0/si_et_20/440/440c0202\n")
    idx1 = wsj1 / "13-34.1" / "wsj1" / "doc" / "indices"
    idx1.mkdir(parents=True)
    (idx1 / "si_tr_s.ndx").write_text(
        ";; WSJ1 training\n13_1_1: /wsj1/si_tr_s/46a/46ac0201.wv1\n13_1_1:wsj1/si_tr_s/46a/46ac0202.wv1\n")
    (idx1 / "h1_p0.ndx").write_text("13_16_1:wsj1/si_dt_20/4k0/4k0c0301.wv1\n"
                                    "13_16_1:wsj1/si_dt_20/4k0/4k0c0302.wv1\n")
    eval_idx = wsj1 / "13-32.1" / "wsj1" / "doc" / "indices" / "wsj1" / "eval"
    eval_idx.mkdir(parents=True)
    (eval_idx / "h1_p0.ndx").write_text(  # names disc 13_32_1, the audio is on 13_33_1
        "13_32_1:wsj1/si_et_h1/wsj64k/4kbc0201.wv1\n13_32_1:wsj1/si_et_h1/wsj64k/4kbc0202.wv1\n")
    lm = wsj1 / "13-32.1" / "wsj1" / "doc" / "lng_modl" / "lm_train" / "np_data"
    for year, text in LM.items():
        (lm / year).mkdir(parents=True)
        (lm / year / f"b{year}.z").write_bytes(ncompress.compress(text.encode("ascii")))
    return wsj0, wsj1


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_wsj(tmp_path_factory.mktemp("wsj"))


@pytest.fixture(autouse=True)
def counts(monkeypatch):
    monkeypatch.setattr(wsj, "EXPECTED_COUNTS", COUNTS)


# --------------------------------------------------------------------------- shorten decoding


@pytest.mark.parametrize("n,blocksize,nmean,pad_last,channels", [
    (5000, 256, 4, False, 1),   # shorten's defaults: running mean of 4 blocks, short last block
    (5000, 256, 4, True, 1),    # last block zero-padded: ffmpeg returns the padding too
    (37, 256, 0, False, 1),     # a single short block, no running mean
    (3001, 128, 4, False, 2),   # stereo, interleaved per block
])
def test_ffmpeg_and_desphere_decode_test_encoder_bit_exactly(tmp_path, n, blocksize, nmean,
                                                             pad_last, channels):
    require_tool(HAVE_FFMPEG, "ffmpeg")
    rng = np.random.default_rng(n)
    x = np.cumsum(rng.standard_normal((n, channels)) * 300, axis=0).clip(-32768, 32767).astype(np.int16)
    path = tmp_path / "a.wv1"
    path.write_bytes(sphere_header(sample_count=n, channels=channels, coding="pcm,embedded-shorten-v2.00")
                     + shorten_encode(x, blocksize=blocksize, nmean=nmean, pad_last=pad_last))
    proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "wav", "-"],
                          capture_output=True, check=True)
    y, rate = sf.read(io.BytesIO(proc.stdout), dtype="int16", always_2d=True)
    # ffmpeg decodes whole shorten blocks and ignores the SPHERE sample_count
    assert rate == 16000 and len(y) == (-(-n // blocksize) * blocksize if pad_last else n)
    assert np.array_equal(y[:n], x) and not y[n:].any()
    import desphere

    z, _ = sf.read(io.BytesIO(desphere.transcode_bytes(path.read_bytes())), dtype="int16", always_2d=True)
    assert np.array_equal(z, x)
    # our reader (whichever decoder) cuts to the header's sample_count
    w = load_audio(str(path), channel=channels - 1)
    assert np.array_equal(np.round(w * 32768).astype(np.int16), x[:, channels - 1])


@pytest.mark.parametrize("decoder", ["desphere"] + (["ffmpeg"] if HAVE_FFMPEG else []))
def test_each_decoder_file_and_pipe(tmp_path, decoder, monkeypatch):
    monkeypatch.setenv("W2VTK_SHORTEN_DECODER", decoder)
    x = samples_for("y", 2000)
    path = tmp_path / "b.wv1"
    write_sphere_shorten(path, x)
    for spec in (str(path), audio.shorten_pipe_command(path)):
        y = load_audio(spec, name="utt1")
        assert np.array_equal(np.round(y * 32768).astype(np.int16), x), spec
    assert audio.audio_duration(str(path)) == pytest.approx(len(x) / 16000)


def test_stereo_shorten_needs_channel(tmp_path):
    x = np.stack([samples_for("l", 1000)[:1000], samples_for("r", 1000)[:1000]], axis=1)
    path = tmp_path / "s.wv1"
    path.write_bytes(sphere_header(sample_count=1000, channels=2, coding="pcm,embedded-shorten-v2.00")
                     + shorten_encode(x))
    with pytest.raises(W2vtkError, match="2 channels"):
        load_audio(str(path), name="st")
    y = load_audio(str(path), channel=1)
    assert np.array_equal(np.round(y * 32768).astype(np.int16), x[:, 1])


# ------------------------------------------------------------------------------ normalisation


def test_normalisations():
    assert " ".join(wsj.normalize_kaldi(RAW.split())) == KALDI
    assert " ".join(wsj.normalize_wav2letter(RAW.split())) == W2L
    assert wsj.normalize_kaldi(["(IN-PARENTHESIS"]) == ["(IN-PARENTHESIS"]
    assert wsj.normalize_wav2letter(["(IN-PARENTHESIS", "Corp;", "~~"]) == ["(in-parentheses", "corp"]
    with pytest.raises(W2vtkError):
        wsj.normalizer("espnet")


def test_read_ndx_quirks(tmp_path):
    ndx = tmp_path / "x.ndx"
    ndx.write_text("; comment\n11_2_1:wsj0/si_tr_s/401/401c0201.wv1\n11_2_1:wsj0/si_tr_s/402/402c0201\n"
                   "13_32_1: /wsj1/a/b.wv1\n")
    assert wsj.read_ndx(ndx, {"13_32_1": "13_33_1"}) == [
        ("11_2_1", "wsj0/si_tr_s/402/402c0201.wv1"), ("13_33_1", "wsj1/a/b.wv1")]
    ndx.write_text("garbage line\n")
    with pytest.raises(W2vtkError, match=r"x\.ndx:1"):
        wsj.read_ndx(ndx)


# ------------------------------------------------------------------------------------- prep


@pytest.mark.parametrize("variant", ["kaldi", "wav2letter"])
def test_prep_wsj_pipes(corpus, tmp_path, variant):
    wsj0, wsj1 = corpus
    out = tmp_path / "out"
    summary = wsj.prep_wsj(wsj0, wsj1, out, transcripts=variant)
    assert summary["warnings"] == []
    for name, count in COUNTS.items():
        assert validate_data_dir(out / name) == [], name
        assert summary["sets"][name]["utterances"] == count
    si284 = load_data_dir(out / "train_si284")
    assert list(si284.utt2spk) == ["011c0201", "011c0202", "46ac0201", "46ac0202"]
    assert si284.utt2spk["46ac0202"] == "46a"
    assert set(read_kv(out / "train_si84" / "text")) == {"011c0201", "011c0202"}
    assert set(read_kv(out / "test_eval92" / "text")) == {"440c0201", "440c0202"}
    assert set(read_kv(out / "test_eval93" / "text")) == {"4kbc0201", "4kbc0202"}
    assert set(read_kv(out / "test_dev93" / "text")) == {"4k0c0301", "4k0c0302"}
    text = si284.text
    if variant == "kaldi":
        assert text["011c0201"] == KALDI
        assert text["011c0202"] == "SECOND <NOISE> SENTENCE"
        assert text["46ac0202"] == "WSJ ONE UH TRAIN"
        assert read_kv(out / "test_eval93" / "text")["4kbc0201"] == "EVAL93 ONE"
        lm_tail = LM_KALDI
    else:
        assert text["011c0201"] == W2L
        assert text["011c0202"] == "second sentence"
        assert read_kv(out / "test_eval92" / "text")["440c0202"] == "eval two"
        lm_tail = LM_W2L
    lm = (out / "local" / "lm_text.txt").read_text().splitlines()
    assert lm == [text[u] for u in sorted(text)] + lm_tail  # training + LM text, never dev/test
    spec = si284.wav_scp["46ac0201"]
    assert spec.endswith("|")
    y = load_audio(spec, name="46ac0201")
    assert np.array_equal(np.round(y * 32768).astype(np.int16), samples_for("46ac0201"))
    dur = float(si284.utt2dur["46ac0201"])
    assert dur == pytest.approx(len(samples_for("46ac0201")) / 16000, abs=1e-4)


def test_prep_wsj_audio_out_flac_and_resume(corpus, tmp_path):
    wsj0, wsj1 = corpus
    out, flac_dir = tmp_path / "out", tmp_path / "flac"
    wsj.prep_wsj(wsj0, wsj1, out, audio_out=flac_dir, decoder="desphere")
    wav_scp = read_kv(out / "test_eval93" / "wav.scp")
    path = Path(wav_scp["4kbc0202"])
    assert path.suffix == ".flac" and path.parent.parent == flac_dir.resolve()
    data, rate = sf.read(path, dtype="int16")
    assert rate == 16000 and sf.info(str(path)).subtype == "PCM_16"
    assert np.array_equal(data, samples_for("4kbc0202"))
    flacs = sorted(flac_dir.rglob("*.flac"))
    assert len(flacs) == 10 and not list(flac_dir.rglob("*.tmp"))  # si84 is inside si284: once
    # a rerun with other options keeps finished FLACs (resumable) and recreates a deleted one
    stamp = path.stat().st_mtime_ns
    flacs[0].unlink()
    wsj.prep_wsj(wsj0, wsj1, out, audio_out=flac_dir, transcripts="wav2letter", decoder="desphere")
    assert path.stat().st_mtime_ns == stamp and flacs[0].is_file()
    assert wsj.prep_wsj(wsj0, wsj1, out, audio_out=flac_dir, transcripts="wav2letter",
                        decoder="desphere") is None


def test_cli_wsj(corpus, tmp_path):
    wsj0, wsj1 = corpus
    result = CliRunner().invoke(app, ["prep", "wsj", "--wsj0", str(wsj0), "--wsj1", str(wsj1),
                                      str(tmp_path / "out"), "--transcripts", "wav2letter"])
    assert result.exit_code == 0, result.output
    assert "train_si284" in result.output
    assert read_kv(tmp_path / "out" / "test_dev93" / "text")["4k0c0301"] == "dev one"


def test_missing_disc_lists_found(corpus, tmp_path):
    wsj0, _ = corpus
    lonely = tmp_path / "wsj1"
    (lonely / "13-1.1").mkdir(parents=True)
    with pytest.raises(W2vtkError, match=r"13-32\.1 not found.*discs found: 11-1\.1, 11-4\.1, 11-13\.1, 11-14\.1, 13-1\.1\)"):
        wsj.prep_wsj(wsj0, lonely, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    proc = subprocess.run([sys.executable, "-m", "w2vtk", "prep", "wsj", "--wsj0", str(wsj0),
                           "--wsj1", str(tmp_path / "nope"), str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.startswith("error:") and "nope" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_no_decoder_stops_at_once(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(audio, "available_shorten_decoders", lambda: [])
    monkeypatch.delenv("W2VTK_SHORTEN_DECODER", raising=False)
    with pytest.raises(W2vtkError, match="install ffmpeg") as err:
        wsj.prep_wsj(*corpus, tmp_path / "out")
    assert "desphere" in str(err.value) and not (tmp_path / "out").exists()


def test_missing_audio_and_count_mismatch_warn(tmp_path, monkeypatch, capsys):
    wsj0, wsj1 = make_wsj(tmp_path / "c")
    (wsj1 / "13-16.1" / "wsj1" / "si_dt_20" / "4k0" / "4k0c0302.wv1").unlink()
    summary = wsj.prep_wsj(wsj0, wsj1, tmp_path / "out")
    assert summary["sets"]["test_dev93"]["utterances"] == 1
    assert len(summary["warnings"]) == 1 and "test_dev93" in summary["warnings"][0]
    assert "test_dev93: 1 indexed audio files missing" in capsys.readouterr().err
