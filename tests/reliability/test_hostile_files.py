"""Hostile and broken input files, each through the real CLI stage that would meet it.

Every case ends in one of two ways: a one-line ``error: ...`` naming the file or utterance and exit
status 1 (no traceback, no half output), or a documented result with finite features.  Nothing a
file holds is executed, and no NaN / Inf is ever written to a feature archive.

Library-level checks that already exist and are not repeated here: tests/test_io_and_checkpoint.py
(load_checkpoint on malicious, truncated, garbage and empty files), tests/models/test_fairseq.py
(load_wav2vec on a malicious pickle and an executable layer-spec string), tests/test_audio.py
(truncated WAV / SPHERE / shorten, NaN / Inf, empty audio, failing pipes, resampling accuracy).
"""

from __future__ import annotations

import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from reliability_hostile_helpers import (REPO, SMALL, TINY, W2V_PROV, assert_error, assert_ok, cli, evil,
                                         make_texts, noise, read_ark, riff_wav, save_w2vtk_checkpoint,
                                         small_model, torch_threads, write_data_dir, write_feature_dir,
                                         write_long_wav, write_wav)

FIXTURES = REPO / "tests" / "fixtures" / "fairseq_wav2vec"


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def w2v(root) -> Path:
    return save_w2vtk_checkpoint(root / "small.pt")


@pytest.fixture(scope="module")
def audio_dir(root) -> Path:
    """A data dir of two good 1-s utterances (pretrain and extract inputs)."""
    d = root / "audio"
    wavs = {f"good{i}": str(write_wav(d / f"good{i}.wav", noise(1.0, seed=i))) for i in range(2)}
    return write_data_dir(root / "data_good", wavs)


@pytest.fixture(scope="module")
def am(root):
    """(lang, train, valid, exp): learnable 16-dim feature dirs and a tiny AM trained on them for an
    epoch through ``w2vtk train-am``."""
    from w2vtk.tokens import build_lang

    train = write_feature_dir(root / "am_train", make_texts(8, seed=1, prefix="tr"), seed=3, feats_yaml=W2V_PROV)
    valid = write_feature_dir(root / "am_valid", make_texts(4, seed=2, prefix="dv"), seed=4, feats_yaml=W2V_PROV)
    lang = root / "lang"
    build_lang(train / "text", lang, "letters")
    exp = root / "am_exp"
    assert_ok(cli("train-am", "--lang", lang, "--train", train, "--valid", valid, "--exp", exp, *TINY,
                  "max_epochs=1"))
    assert (exp / "checkpoint_avg.pt").is_file() or (exp / "checkpoint_best.pt").is_file()
    return lang, train, valid, exp


# --------------------------------------------------------------- every loader of a checkpoint


def _fairseq_checkpoint() -> dict:
    """The fairseq 2019-format fixture as a dict (args Namespace + fairseq-named weights)."""
    from w2vtk.checkpoint import load_checkpoint
    from w2vtk.models.fairseq import ALLOWED_GLOBALS

    return load_checkpoint(FIXTURES / "small_base_args.pt", allow=ALLOWED_GLOBALS)


def _run_loader(kind: str, ckpt_path: Path, root: Path, audio_dir: Path, am) -> tuple[tuple[int, str, str], str]:
    """Hand ``ckpt_path`` to the stage ``kind`` where it loads a checkpoint; returns the CLI result
    and the path the stage knows the checkpoint by (its place in an exp dir)."""
    work = ckpt_path.parent
    if kind in ("extract", "extract-fairseq"):
        return cli("extract", "--in", audio_dir, "--out-dir", work / "feats_out", "--checkpoint", ckpt_path,
                   "--num-workers", "0"), str(ckpt_path)
    if kind == "decode":
        _, _, valid, exp = am
        am_dir = work / "am_exp"
        shutil.copytree(exp, am_dir)
        for name in ("checkpoint_avg.pt", "checkpoint_best.pt", "checkpoint_last.pt"):
            shutil.copyfile(ckpt_path, am_dir / name)
        return (cli("decode", "--am", am_dir, "--data", valid, "--out", work / "decode", "--decoder", "greedy"),
                str(am_dir / "checkpoint_avg.pt"))
    if kind == "train-am":
        lang, train, valid, _ = am
        exp = work / "am_resume"
        exp.mkdir()
        shutil.copyfile(ckpt_path, exp / "checkpoint_last.pt")
        # --allow-changes: the damage under test is the checkpoint's, not a changed config
        return (cli("train-am", "--lang", lang, "--train", train, "--valid", valid, "--exp", exp, "--allow-changes",
                    *TINY), str(exp / "checkpoint_last.pt"))
    if kind == "pretrain":
        exp = work / "w2v_resume"
        exp.mkdir()
        shutil.copyfile(ckpt_path, exp / "checkpoint_last.pt")
        return (cli("pretrain", "--data", audio_dir, "--exp", exp, *SMALL, "optim.max_update=2"),
                str(exp / "checkpoint_last.pt"))
    raise AssertionError(kind)


LOADERS = ["extract", "extract-fairseq", "decode", "train-am", "pretrain"]


def test_the_payload_is_live(tmp_path):
    """Control: unpickled without w2vtk's guard, the payload does run its command (so the tests
    below, where the marker never appears, show a refusal and not a dud payload)."""
    import torch

    marker = tmp_path / "ran"
    torch.save({"model": {}, "payload": evil(marker)}, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("kind", LOADERS)
def test_code_executing_pickle_is_refused_by_every_loader(kind, tmp_path, root, audio_dir, am):
    """A checkpoint whose pickle would run ``touch MARKER`` (os.system via __reduce__), in the layout
    each stage expects, is refused with a message naming the file; the command never runs."""
    import torch

    marker = tmp_path / "pwned"
    if kind == "extract-fairseq":
        ckpt = _fairseq_checkpoint()  # fairseq import: the 2019 args format
        ckpt["extra_state"]["payload"] = evil(marker)
    else:
        ckpt = {"kind": "wav2vec" if kind != "decode" and kind != "train-am" else "am",
                "config": {}, "model": {"w": torch.zeros(2)}, "payload": evil(marker)}
    path = tmp_path / "evil.pt"
    torch.save(ckpt, path)
    result, shown = _run_loader(kind, path, root, audio_dir, am)
    line = assert_error(result, shown, "refused")
    assert "nothing in it was executed" in line
    assert not marker.exists()


def test_code_executing_pickle_in_a_real_process(tmp_path, audio_dir):
    """The same through the console entry point in its own process (what a shell user sees):
    stderr is the one error line, the exit status 1, and the command never ran."""
    import subprocess
    import sys

    import torch

    marker = tmp_path / "pwned"
    ckpt = _fairseq_checkpoint()
    ckpt["extra_state"]["payload"] = evil(marker)
    torch.save(ckpt, tmp_path / "evil.pt")
    proc = subprocess.run([sys.executable, "-m", "w2vtk", "extract", "--in", str(audio_dir), "--out",
                           str(tmp_path / "f.ark"), "--checkpoint", str(tmp_path / "evil.pt")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert_error((proc.returncode, proc.stdout, proc.stderr), "evil.pt", "refused")
    assert not marker.exists() and not (tmp_path / "f.ark").exists()


def test_plain_and_legacy_pickles_are_refused(tmp_path, audio_dir):
    """The same payload as a bare pickle stream and in torch's legacy (pre-1.6, non-zip) format, the
    format of the released wav2vec_large.pt."""
    import torch

    marker = tmp_path / "pwned"
    bare = tmp_path / "bare.pt"
    bare.write_bytes(pickle.dumps({"model": {}, "x": evil(marker)}, protocol=2))
    assert_error(cli("extract", "--in", audio_dir, "--out", tmp_path / "a.ark", "--checkpoint", bare), "bare.pt")
    legacy = tmp_path / "legacy.pt"
    ckpt = _fairseq_checkpoint()
    ckpt["extra_state"]["payload"] = evil(marker)
    torch.save(ckpt, legacy, _use_new_zipfile_serialization=False)
    assert_error(cli("extract", "--in", audio_dir, "--out", tmp_path / "b.ark", "--checkpoint", legacy),
                 "legacy.pt", "refused")
    assert not marker.exists()
    assert not (tmp_path / "a.ark").exists() and not (tmp_path / "b.ark").exists()


# ------------------------------------------------------------------------ truncated checkpoints


def _cuts(size: int) -> list[int]:
    """Cut points: inside the first header, a quarter, the middle, just before the end."""
    return sorted({10, size // 4, size // 2, size - 64, size - 1})


@pytest.mark.parametrize("kind", LOADERS)
def test_truncated_checkpoint(kind, tmp_path, root, audio_dir, am, w2v):
    """A checkpoint cut at several points is a one-line error naming it, for every loader, and for
    both torch serialisations (zip; legacy for the fairseq fixture)."""
    if kind == "extract":
        whole = w2v.read_bytes()
    elif kind == "extract-fairseq":
        whole = (FIXTURES / "small_base_args_legacy.pt").read_bytes()
    elif kind in ("decode", "train-am"):
        whole = (am[3] / "checkpoint_last.pt").read_bytes()
    else:
        from w2vtk.checkpoint import save_checkpoint
        from w2vtk.models.fairseq import w2vtk_checkpoint

        save_checkpoint(w2vtk_checkpoint(small_model(), train_state={}), tmp_path / "full.pt")
        whole = (tmp_path / "full.pt").read_bytes()
    for cut in _cuts(len(whole)):
        work = tmp_path / f"cut{cut}"
        work.mkdir()
        path = work / "cut.pt"
        path.write_bytes(whole[:cut])
        result, shown = _run_loader(kind, path, root, audio_dir, am)
        assert_error(result, shown)
        assert not (work / "feats_out" / "feats.scp").exists()


BROKEN_AM = {
    # name: how a real AM checkpoint is damaged (the pickle itself is safe and loads)
    "no-tokens": lambda ck: {k: v for k, v in ck.items() if k != "tokens"},
    "no-model-config": lambda ck: {k: v for k, v in ck.items() if k != "model_config"},
    "model-is-a-string": lambda ck: {**ck, "model": "weights"},
    "wrong-shapes": lambda ck: {**ck, "model": {k: v[:1] for k, v in ck["model"].items()}},
}


@pytest.mark.parametrize("kind", ["decode", "train-am"])
@pytest.mark.parametrize("damage", sorted(BROKEN_AM))
def test_am_checkpoint_with_wrong_structure(damage, kind, tmp_path, root, audio_dir, am):
    """A safe pickle of the right kind whose entries are missing or ill-typed (another version, a
    hand-edited file): one line naming the checkpoint, not a traceback."""
    import torch

    from w2vtk.checkpoint import load_checkpoint

    ckpt = BROKEN_AM[damage](load_checkpoint(am[3] / "checkpoint_last.pt"))
    torch.save(ckpt, tmp_path / "broken.pt")
    result, shown = _run_loader(kind, tmp_path / "broken.pt", root, audio_dir, am)
    assert_error(result, shown)


def test_checkpoint_with_nan_weights_writes_no_features(tmp_path, audio_dir):
    """A checkpoint whose weights are NaN: extract stops naming the utterance; no feats.scp."""
    import torch

    from w2vtk.checkpoint import save_checkpoint
    from w2vtk.models.fairseq import w2vtk_checkpoint

    model = small_model()
    with torch.no_grad():
        model.encoder.layers[2].conv.weight[0, 0, 0] = float("nan")
    save_checkpoint(w2vtk_checkpoint(model), tmp_path / "nan.pt")
    out = tmp_path / "feats"
    assert_error(cli("extract", "--in", audio_dir, "--out-dir", out, "--checkpoint", tmp_path / "nan.pt"),
                 "good0", "NaN or Inf")
    assert not (out / "feats.scp").exists() and not (out / "feats.ark").exists()


@pytest.mark.parametrize("record", ["manifest.json", "shard.1.json"])
def test_extract_resume_with_corrupt_work_record(record, tmp_path, audio_dir, w2v):
    """A damaged ``.feats.work`` record (disk trouble, a hand edit) on ``extract --resume``: one line
    naming it (or a redo of that shard), not a traceback."""
    import reliability_resume_helpers as rr

    out = tmp_path / "out"
    args = ["extract", "--in", audio_dir, "--out-dir", out, "--checkpoint", w2v, "--num-shards", "2"]
    # killed as the second shard's archive lands: the manifest and shard 1's record are on disk
    # (a finished run removes .feats.work)
    assert rr.cli(args, fault="shard_done:2").returncode != 0
    path = out / ".feats.work" / record
    path.write_text(path.read_text()[:25])
    code, _, err = cli(*args, "--resume")
    if code != 0:
        assert_error((code, "", err), record)


# ------------------------------------------------------------------------ broken feature archives


def _feature_copy(src: Path, dst: Path) -> Path:
    """A copy of a feature dir whose feats.scp points into its own copy of the ark."""
    shutil.copytree(src, dst)
    scp = dst / "feats.scp"
    scp.write_text(scp.read_text().replace(str(src / "feats.ark"), str(dst / "feats.ark")))
    assert str(src) not in scp.read_text()
    return dst


def _train_and_decode(am, feats: Path, work: Path) -> list[str]:
    """train-am (a fresh exp) and decode (greedy) over ``feats``; both must fail with one line."""
    lang, _, valid, exp = am
    lines = [assert_error(cli("train-am", "--lang", lang, "--train", feats, "--valid", valid,
                              "--exp", work / "exp", *TINY, "max_epochs=1"))]
    lines.append(assert_error(cli("decode", "--am", exp, "--data", feats, "--out", work / "dec",
                                  "--decoder", "greedy")))
    assert not (work / "exp" / "checkpoint_last.pt").exists()
    assert not (work / "dec" / "hyp.txt").exists()
    return lines


@pytest.mark.parametrize("where", ["mid-matrix", "in-header", "after-first"])
def test_truncated_ark(where, tmp_path, am):
    """feats.scp into an ark cut inside the last matrix's data, inside its header, or right after
    the first record: train-am and decode name the damaged utterance."""
    feats = _feature_copy(am[1], tmp_path / "feats")
    ark = feats / "feats.ark"
    data = ark.read_bytes()
    entries = [line.split() for line in (feats / "feats.scp").read_text().splitlines()]
    utt, offset = entries[-1][0], int(entries[-1][1].rsplit(":", 1)[1])
    damaged = {utt}
    if where == "mid-matrix":
        cut = offset + 15 + (len(data) - offset - 15) // 2
    elif where == "in-header":
        cut = offset + 4
    else:
        second, loc = entries[1]
        cut = int(loc.rsplit(":", 1)[1]) - len(second) - 1
        damaged = {e[0] for e in entries[1:]}
    ark.write_bytes(data[:cut])
    for line in _train_and_decode(am, feats, tmp_path):
        assert any(u in line for u in damaged) and "feats.scp" in line, line


def test_scp_offset_past_end_of_ark(tmp_path, am):
    """A feats.scp entry pointing 4 kB past the end of its ark: the offset and the utterance named."""
    feats = _feature_copy(am[1], tmp_path / "feats")
    size = (feats / "feats.ark").stat().st_size
    lines = (feats / "feats.scp").read_text().splitlines()
    utt = lines[3].split()[0]
    lines[3] = f"{utt} {feats / 'feats.ark'}:{size + 4096}"
    (feats / "feats.scp").write_text("\n".join(lines) + "\n")
    for line in _train_and_decode(am, feats, tmp_path):
        assert utt in line and f"offset {size + 4096} is past the end" in line, line


def _replace_record(feats: Path, utt: str, record: bytes) -> None:
    """Append ``utt``'s new record (``record``: what follows the key) to the dir's ark and point
    feats.scp at it."""
    ark = feats / "feats.ark"
    with open(ark, "ab") as fh:
        fh.write(utt.encode() + b" ")
        offset = fh.tell()
        fh.write(record)
    lines = (feats / "feats.scp").read_text().splitlines()
    lines = [f"{utt} {ark}:{offset}" if line.split()[0] == utt else line for line in lines]
    (feats / "feats.scp").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("kind", ["pickle", "audio"])
def test_ark_record_that_is_not_a_matrix(kind, tmp_path, am):
    """kaldiio's reader would unpickle a ``PKL`` ark record (running the code it names) and decode
    ``RIFF`` audio records; w2vtk refuses both, naming the utterance, and runs nothing."""
    marker = tmp_path / "pwned"
    feats = _feature_copy(am[1], tmp_path / "feats")
    utt = (feats / "feats.scp").read_text().split()[0]  # the first: read when the dir is opened
    if kind == "pickle":
        record = b"PKL" + pickle.dumps(evil(marker), protocol=2)
    else:
        record = riff_wav(data=PCM)
    _replace_record(feats, utt, record)
    for line in _train_and_decode(am, feats, tmp_path):
        assert utt in line and "refused" in line, line
    assert not marker.exists()


def test_safe_reader_still_reads_every_legitimate_record(tmp_path):
    """The reader that refuses PKL records reads what Kaldi and w2vtk write: float32 (FM), float16
    (kaldiio NPY), Kaldi CM compression, text matrices, range specifiers and ``cmd |`` entries."""
    import kaldiio

    from w2vtk.features.archive import ScpReader, write_matrix
    from w2vtk.errors import W2vtkError

    mat = np.arange(60, dtype=np.float32).reshape(12, 5) / 7.0
    table = {}
    with open(tmp_path / "f.ark", "wb") as fh:
        for utt, dtype, compress in (("a", "float32", False), ("b", "float16", False), ("c", "float32", True)):
            table[utt] = f"{tmp_path / 'f.ark'}:{write_matrix(fh, utt, mat, dtype, compress)}"
    kaldiio.save_ark(str(tmp_path / "t.ark"), {"d": mat}, scp=str(tmp_path / "t.scp"), text=True)
    table["d"] = (tmp_path / "t.scp").read_text().split()[1]
    table["e"] = table["a"] + "[2:4,1:3]"
    kaldiio.save_mat(str(tmp_path / "one.mat"), mat)
    table["f"] = f"cat {tmp_path / 'one.mat'} |"
    table["g"] = "exit 3 |"
    reader = ScpReader(tmp_path / "x.scp", table)
    np.testing.assert_array_equal(reader["a"], mat)
    np.testing.assert_allclose(reader["b"], mat, rtol=1e-3)
    np.testing.assert_allclose(reader["c"], mat, atol=0.05)
    np.testing.assert_allclose(reader["d"], mat, rtol=1e-6)
    np.testing.assert_array_equal(reader["e"], mat[2:5, 1:4])
    np.testing.assert_array_equal(reader["f"], mat)
    with pytest.raises(W2vtkError, match=r"x\.scp: 'g': command failed with exit status 3"):
        reader["g"]


def test_utt2num_frames_that_lies(tmp_path, am):
    """utt2num_frames claiming another length than the matrix (batching and the CTC feasibility
    check plan with it): one line naming the utterance, not a 'non-finite loss' later."""
    feats = _feature_copy(am[1], tmp_path / "feats")
    lines = (feats / "utt2num_frames").read_text().splitlines()
    utt, n = lines[2].split()
    lines[2] = f"{utt} {int(n) * 3}"
    (feats / "utt2num_frames").write_text("\n".join(lines) + "\n")
    for line in _train_and_decode(am, feats, tmp_path):
        assert utt in line and "utt2num_frames" in line, line


def test_nan_features_in_an_ark_are_refused(tmp_path, am):
    """An archive holding NaN / Inf frames (written by another tool) is not trained or decoded on."""
    texts = make_texts(8, seed=1, prefix="tr")
    bad = np.full((20, 16), np.nan, dtype=np.float32)
    bad[:10] = np.inf
    feats = write_feature_dir(tmp_path / "feats", texts, seed=3, feats_yaml=W2V_PROV,
                              extra_feats={"tr005": bad})
    for line in _train_and_decode(am, feats, tmp_path):
        assert "tr005" in line and "NaN or Inf" in line, line


# ------------------------------------------------------------------------ hostile audio


PCM = (np.sin(np.arange(16000) / 10.0) * 8000).astype("<i2").tobytes()
# int16 pairs that read as the float32 bit pattern 0x7FC00000 (a quiet NaN) when the header lies
# that 16-bit PCM is IEEE float
NAN_AS_PCM = np.tile(np.array([0x0000, 0x7FC0], dtype="<u2"), 8000).tobytes()

LYING = {
    # name: (file bytes, text of the one-line error)
    "data-size-larger-than-file": (riff_wav(data=PCM, data_len=4 * len(PCM)), "truncated WAV"),
    "float-header-over-nan-bits": (riff_wav(fmt_tag=3, bits=32, data=NAN_AS_PCM), "NaN or Inf"),
    "float-tag-with-16-bits": (riff_wav(fmt_tag=3, bits=16, data=PCM), "unreadable audio"),
    "mp3-tag-over-pcm": (riff_wav(fmt_tag=0x55, data=PCM), "unreadable audio"),
    "zero-channels": (riff_wav(channels=0, data=PCM), "unreadable audio"),
    "rate-0": (riff_wav(rate=0, data=PCM), "unreadable audio"),
    "rate-1": (riff_wav(rate=1, data=PCM), "sample rate of 1 Hz"),
    "rate-2GHz": (riff_wav(rate=2_000_000_000, data=PCM), "sample rate of 2000000000 Hz"),
    "stereo-header-over-mono": (riff_wav(channels=2, data=PCM), "2 channels"),
    "header-only": (riff_wav(data=b"")[:30], "unreadable audio"),
    "text-named-wav": (b"hello, this is not audio\n" * 10, "unreadable audio"),
}


@pytest.mark.parametrize("name", sorted(LYING))
def test_wav_with_lying_header(name, tmp_path, w2v):
    """extract over a data dir whose second utterance is the lying file: one line naming the
    utterance and the file, no feats.scp; ``prep validate`` (structure only, like Kaldi's) passes."""
    blob, message = LYING[name]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(blob)
    good = write_wav(tmp_path / "good.wav", noise(0.5))
    data = write_data_dir(tmp_path / "data", {"a-good": str(good), "b-bad": str(bad)})
    assert_ok(cli("prep", "validate", "--no-text", data))
    out = tmp_path / "out"
    assert_error(cli("extract", "--in", data, "--out-dir", out, "--checkpoint", w2v), "b-bad", "bad.wav",
                 message)
    assert not (out / "feats.scp").exists() and not (out / "feats.ark").exists()


def test_wav_headers_that_mislead_but_decode(tmp_path, w2v):
    """Headers a reader cannot catch, decoded as they declare (documented in w2vtk/audio.py): a data
    chunk shorter than the file (the rest is another chunk, per RIFF) reads the declared samples; a
    24-bit claim over 16-bit data and an A-law claim read as those formats.  Features are finite
    and their frame counts follow the declared sample counts."""
    import soundfile as sf

    files = {"short-data-chunk": (riff_wav(data=PCM, data_len=8000), 4000),
             "24-bit-claim": (riff_wav(bits=24, data=PCM), len(PCM) // 3),
             "alaw-claim": (riff_wav(fmt_tag=6, bits=8, data=PCM), len(PCM))}
    wavs = {}
    for name, (blob, _) in files.items():
        (tmp_path / f"{name}.wav").write_bytes(blob)
        wavs[name] = str(tmp_path / f"{name}.wav")
        assert sf.info(wavs[name]).frames == files[name][1]
    data = write_data_dir(tmp_path / "data", wavs)
    assert_ok(cli("extract", "--in", data, "--out-dir", tmp_path / "out", "--checkpoint", w2v))
    feats = read_ark(tmp_path / "out" / "feats.scp")
    model = small_model()
    for name, (_, samples) in files.items():
        assert feats[name].shape == (model.num_frames(samples), 16)
        assert np.isfinite(feats[name]).all()


def test_zero_length_audio(tmp_path, w2v, audio_dir):
    """An empty WAV: extract stops naming it; pretrain skips it and counts it as short."""
    empty = write_wav(tmp_path / "empty.wav", np.zeros(0, np.int16))
    wavs = {"a-empty": str(empty)}
    wavs.update({f"good{i}": str(write_wav(tmp_path / f"g{i}.wav", noise(1.0, seed=i))) for i in range(2)})
    data = write_data_dir(tmp_path / "data", wavs)
    assert_error(cli("extract", "--in", data, "--out-dir", tmp_path / "out", "--checkpoint", w2v),
                 "a-empty", "zero length")
    code, out, err = cli("pretrain", "--data", data, "--exp", tmp_path / "exp", *SMALL, "optim.max_update=1")
    assert code == 0, err
    assert re.search(r"2 utterances \(.*; 1 shorter than \d+ samples skipped\)", " ".join(err.split())), err
    assert (tmp_path / "exp" / "checkpoint_last.pt").is_file()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_samples(value, tmp_path, w2v):
    """A float WAV holding NaN / +-Inf: extract and pretrain stop naming the utterance."""
    x = noise(1.0, seed=3)
    x[1234] = float(value)
    bad = write_wav(tmp_path / "bad.wav", x, subtype="FLOAT")
    good = write_wav(tmp_path / "good.wav", noise(1.0, seed=4))
    data = write_data_dir(tmp_path / "data", {"a-good": str(good), "b-bad": str(bad)})
    assert_error(cli("extract", "--in", data, "--out-dir", tmp_path / "out", "--checkpoint", w2v),
                 "b-bad", "NaN or Inf")
    assert_error(cli("pretrain", "--data", data, "--exp", tmp_path / "exp", *SMALL, "optim.max_update=2"),
                 "b-bad", "NaN or Inf")
    assert not (tmp_path / "exp" / "checkpoint_last.pt").exists()


@pytest.mark.parametrize("feature", ["wav2vec", "logmel"])
@pytest.mark.parametrize("amp", [3e38, 1e15])
def test_huge_finite_samples_write_no_inf_features(feature, amp, tmp_path, w2v):
    """Finite but absurd samples (a float header over garbage): where the features would overflow
    (log-mel from 1e15, wav2vec at 3e38; kaldi-native-fbank itself raised a RuntimeError traceback
    at 3e38), extract refuses the utterance instead of writing Inf / NaN."""
    x = np.full(16000, amp, dtype=np.float32)
    x[::2] = -amp
    bad = write_wav(tmp_path / "loud.wav", x, subtype="FLOAT")
    data = write_data_dir(tmp_path / "data", {"loud": str(bad)})
    out = tmp_path / "out"
    model = ["--checkpoint", w2v] if feature == "wav2vec" else ["--type", "logmel"]
    result = cli("extract", "--in", data, "--out-dir", out, *model)
    if result[0] == 0:  # the wav2vec model's norms absorb 1e15: then the features must be finite
        assert feature == "wav2vec" and amp < 1e38
        assert np.isfinite(read_ark(out / "feats.scp")["loud"]).all()
    else:
        assert_error(result, "loud", "NaN or Inf")
        assert not (out / "feats.scp").exists()


@pytest.mark.parametrize("rate", [8000, 48000])
def test_other_sample_rates_are_resampled_as_documented(rate, tmp_path, w2v):
    """8 and 48 kHz audio is resampled to 16 kHz with soxr (quality HQ) before the model, as
    w2vtk/audio.py documents: features equal those of the soxr-resampled signal given at 16 kHz."""
    import soxr

    x = noise(1.3, seed=rate, rate=rate)
    native = write_wav(tmp_path / "native.wav", x, rate=rate, subtype="FLOAT")
    y = soxr.resample(x, rate, 16000, quality="HQ").astype(np.float32)
    resampled = write_wav(tmp_path / "at16k.wav", y, subtype="FLOAT")
    data = write_data_dir(tmp_path / "data", {"native": str(native), "resampled": str(resampled)})
    assert_ok(cli("extract", "--in", data, "--out-dir", tmp_path / "out", "--checkpoint", w2v))
    feats = read_ark(tmp_path / "out" / "feats.scp")
    assert feats["native"].shape == (small_model().num_frames(len(y)), 16)
    np.testing.assert_array_equal(feats["native"], feats["resampled"])


def test_two_hour_file(tmp_path, w2v):
    """One 2-hour recording through extract (the exact chunked path above --long-chunk-seconds):
    finite features, exactly the model's frame count for 115.2 M samples."""
    n = 2 * 3600 * 16000
    write_long_wav(tmp_path / "wavs" / "long.wav", 2 * 3600)
    out = tmp_path / "out"
    out.mkdir()
    with torch_threads(1):  # OpenMP threads spinning on a shared 2-core machine cost 4x here
        assert_ok(cli("extract", "--in", tmp_path / "wavs", "--out", out / "feats.ark", "--checkpoint", w2v))
    [(utt, mat)] = read_ark(out / "feats.scp").items()
    assert utt == "long"
    assert mat.shape == (small_model().num_frames(n), 16)
    assert np.isfinite(mat).all()
    assert (out / "utt2num_frames").read_text() == f"long {mat.shape[0]}\n"


# ------------------------------------------------------------------------ wav.scp pipes


PIPES = {
    "false": ("false |", "command failed with exit status 1"),
    "missing-program": ("w2vtk-no-such-program --wav x |", "exit status 127"),
    "garbage": ("head -c 4000 /dev/urandom |", "not readable audio"),
    "text": ("echo this is not audio |", "not readable audio"),
    "nothing": ("true |", "no audio"),
    "reads-stdin": ("cat |", "no audio"),  # stdin is /dev/null: no hang waiting for input
}


@pytest.mark.parametrize("name", sorted(PIPES))
def test_failing_wav_scp_pipe(name, tmp_path, w2v):
    """A pipe that fails, names a missing program or writes garbage: extract and pretrain stop
    with one line naming the utterance."""
    cmd, message = PIPES[name]
    good = write_wav(tmp_path / "good.wav", noise(1.0))
    data = write_data_dir(tmp_path / "data", {"a-good": str(good), "b-pipe": cmd})
    assert_error(cli("extract", "--in", data, "--out-dir", tmp_path / "out", "--checkpoint", w2v),
                 "b-pipe", message)
    assert_error(cli("pretrain", "--data", data, "--exp", tmp_path / "exp", *SMALL, "optim.max_update=1"),
                 "b-pipe", message)


def test_pipe_that_truncates_its_wav(tmp_path, w2v):
    """A pipe that exits 0 but delivers only part of the WAV its header declares (a decoder that
    died, ``head -c``) is refused; a pipe whose header says 'unknown length' (ffmpeg on a pipe
    writes 0xFFFFFFFF) is read to its end."""
    good = write_wav(tmp_path / "good.wav", noise(1.0))
    data = write_data_dir(tmp_path / "data", {"cut": f"head -c 20000 {good} |"})
    assert_error(cli("extract", "--in", data, "--out-dir", tmp_path / "out", "--checkpoint", w2v),
                 "cut", "truncated WAV")
    blob = bytearray(good.read_bytes())
    blob[40:44] = b"\xff\xff\xff\xff"  # data chunk size: unknown
    (tmp_path / "stream.wav").write_bytes(bytes(blob))
    data2 = write_data_dir(tmp_path / "data2", {"stream": f"cat {tmp_path / 'stream.wav'} |"})
    assert_ok(cli("extract", "--in", data2, "--out-dir", tmp_path / "out2", "--checkpoint", w2v))
    [mat] = read_ark(tmp_path / "out2" / "feats.scp").values()
    assert mat.shape == (small_model().num_frames(16000), 16)
