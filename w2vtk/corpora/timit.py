"""TIMIT (LDC93S1) -> Kaldi data dirs ``train`` (3696), ``dev`` (400) and ``test`` (core, 192).

Layout: ``TIMIT/{TRAIN,TEST}/DR1..DR8/<SPK>/{SA1,SA2,SI*,SX*}.{WAV,PHN,WRD,TXT}``, all upper or all
lower case, optionally under a ``data/`` level, possibly with converted ``*.WAV.wav`` copies next
to the SPHERE originals (ignored: they are the same utterances).  SA1/SA2 (the two dialect
sentences every speaker reads) are in no standard set.

Id convention (lower case whatever the tree's case, so both copies give identical data dirs):
speaker = the speaker directory (gender letter + initials + digit, ``fcjf0``); utterance =
``<speaker>-<sentence>`` (``fcjf0-si1027``): the speaker is a prefix, ``-`` sorts before letters
and digits, and SX sentences (read by several speakers) stay unique.

``text`` holds the phone transcript folded 61 -> 48 (Kaldi's training set; ``phone_set=39`` folds
to 39), with the glottal stop ``q`` deleted; ``text.words`` holds the words of ``.WRD`` exactly as
written (never through the phone folding, which would delete every letter q).  ``wav.scp`` points
at the SPHERE ``.WAV`` files, which libsndfile reads directly.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from w2vtk.audio import audio_duration
from w2vtk.corpora.common import finish_prep, start_prep
from w2vtk.errors import W2vtkError
from w2vtk.tokens import (MAP_48_TO_39, PHONE_MAP_39, PHONE_MAP_48, PHONES_39,  # noqa: F401 (timit's tables)
                          PHONES_48, PHONES_61, fold_timit_phone as fold_phone)

DEV_SPEAKERS = (
    "faks0 fdac1 fjem0 mgwt0 mjar0 mmdb1 mmdm2 mpdf0 fcmh0 fkms0 mbdg0 mbwm0 mcsh0 fadg0 fdms0 fedw0 "
    "mgjf0 mglb0 mrtk0 mtaa0 mtdt0 mthc0 mwjg0 fnmr0 frew0 fsem0 mbns0 mmjr0 mdls0 mdlf0 mdvc0 mers0 "
    "fmah0 fdrw0 mrcs0 mrjm4 fcal1 mmwh0 fjsj0 majc0 mjsw0 mreb0 fgjd0 fjmg0 mroa0 mteb0 mjfc0 mrjr0 "
    "fmml0 mrws1").split()
CORE_TEST_SPEAKERS = (
    "mdab0 mwbt0 felc0 mtas1 mwew0 fpas0 mjmp0 mlnt0 fpkt0 mlll0 mtls0 fjlm0 mbpm0 mklt0 fnlp0 mcmj0 "
    "mjdh0 fmgd0 mgrt0 mnjm0 fdhc0 mjln0 mpam0 fmld0").split()
EXPECTED_COUNTS = {"train": 3696, "dev": 400, "test": 192}
SETS = ("train", "dev", "test")

_UTT_FILE = re.compile(r"^(s[aix]\d+)\.(wav|phn|wrd|txt)$")
_DIALECT_DIR = re.compile(r"^dr\d$")


def fold_phones(phones: Iterable[str], phone_set: int = 48, *, strict: bool = True) -> list[str]:
    """A phone sequence (61, 48 or 39 labels) folded to ``phone_set``, ``q`` deleted."""
    out = []
    for p in phones:
        f = fold_phone(p, phone_set, strict=strict)
        if f is not None:
            out.append(f)
    return out


def fold_to_39(phones: Iterable[str], *, strict: bool = True) -> list[str]:
    """Fold a 61/48/39-label phone sequence to the 39-phone scoring set (PER convention).

    ``sil`` stays a token and repeated ``sil`` are not merged; ``q`` is deleted.
    """
    return fold_phones(phones, 39, strict=strict)


# ------------------------------------------------------------------------------------ layout


def _child_ci(directory: Path, name: str) -> Path | None:
    """The child of ``directory`` named ``name`` in any case, or None."""
    for child in directory.iterdir():
        if child.name.lower() == name and child.is_dir():
            return child
    return None


def find_timit_root(corpus_dir: str | Path) -> tuple[Path, Path]:
    """(TRAIN dir, TEST dir) of a TIMIT copy: upper or lower case, optional ``data/`` level."""
    corpus = Path(corpus_dir)
    if not corpus.is_dir():
        raise W2vtkError(f"{corpus}: TIMIT corpus directory does not exist")
    candidates = [corpus]
    for level in ("data", "timit"):
        sub = _child_ci(corpus, level)
        if sub is not None:
            candidates.append(sub)
            deeper = _child_ci(sub, "data")
            if deeper is not None:
                candidates.append(deeper)
    for cand in candidates:
        train, test = _child_ci(cand, "train"), _child_ci(cand, "test")
        if train is not None and test is not None:
            return train, test
    raise W2vtkError(f"{corpus}: not a TIMIT tree (expected TRAIN/ and TEST/, possibly under data/; "
                     f"found: {', '.join(sorted(p.name for p in corpus.iterdir())) or 'nothing'})")


def _read_labels(path: Path) -> list[str]:
    """Third field of each ``<start> <end> <label>`` line of a .PHN / .WRD file."""
    labels = []
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise W2vtkError(f"{path}: not ASCII text") from None
    for num, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise W2vtkError(f"{path}:{num}: expected '<start> <end> <label>', got {line.strip()!r}")
        labels.append(parts[2])
    if not labels:
        raise W2vtkError(f"{path}: empty transcript")
    return labels


def speaker_utterances(spk_dir: Path) -> dict[str, dict[str, Path]]:
    """{sentence id (lower case, e.g. 'si1027'): {'wav': ..., 'phn': ..., 'wrd': ...}} of a speaker.

    Only exact ``<SENT>.<EXT>`` names count (``SI1027.WAV.wav`` copies are skipped).
    """
    utts: dict[str, dict[str, Path]] = {}
    for f in spk_dir.iterdir():
        m = _UTT_FILE.match(f.name.lower())
        if m and f.is_file():
            utts.setdefault(m.group(1), {})[m.group(2)] = f
    return utts


def scan_timit(corpus_dir: str | Path, phone_set: int = 48) -> dict[str, dict[str, dict[str, str]]]:
    """Read a TIMIT tree into per-set tables ready for :func:`w2vtk.data.write_data_dir`.

    Returns ``{set: {"wav_scp", "text", "utt2spk", "utt2dur", "spk2gender", "text.words"}}`` for
    ``train``, ``dev`` and ``test``; each a {id: value} dict.
    """
    if phone_set not in (48, 39):
        raise W2vtkError(f"--phone-set must be 48 or 39, not {phone_set}")
    train_dir, test_dir = find_timit_root(corpus_dir)
    dev, core = set(DEV_SPEAKERS), set(CORE_TEST_SPEAKERS)
    sets: dict[str, dict[str, dict[str, str]]] = {
        s: {"wav_scp": {}, "text": {}, "utt2spk": {}, "utt2dur": {}, "spk2gender": {}, "text.words": {}}
        for s in SETS}
    for part_dir, part in ((train_dir, "train"), (test_dir, "test")):
        dialects = [d for d in sorted(part_dir.iterdir()) if d.is_dir() and _DIALECT_DIR.match(d.name.lower())]
        if not dialects:
            raise W2vtkError(f"{part_dir}: no dialect region dirs (DR1..DR8)")
        for dr in dialects:
            for spk_dir in sorted(p for p in dr.iterdir() if p.is_dir()):
                spk = spk_dir.name.lower()
                if part == "train":
                    target = "train"
                elif spk in dev:
                    target = "dev"
                elif spk in core:
                    target = "test"
                else:
                    continue
                if spk[0] not in "mf":
                    raise W2vtkError(f"{spk_dir}: speaker dir must start with the gender letter m or f")
                tables = sets[target]
                for sent, files in sorted(speaker_utterances(spk_dir).items()):
                    if sent.startswith("sa"):
                        continue
                    for ext in ("wav", "phn", "wrd"):
                        if ext not in files:
                            raise W2vtkError(f"{spk_dir}: {sent.upper()}.{ext.upper()} is missing")
                    utt = f"{spk}-{sent}"
                    phones = fold_phones(_check_phones(files["phn"]), phone_set)
                    tables["wav_scp"][utt] = str(files["wav"].resolve())
                    tables["text"][utt] = " ".join(phones)
                    tables["text.words"][utt] = " ".join(_read_labels(files["wrd"]))
                    tables["utt2spk"][utt] = spk
                    tables["utt2dur"][utt] = f"{audio_duration(str(files['wav']), utt):.4f}"
                    tables["spk2gender"][spk] = spk[0]
    return sets


def _check_phones(path: Path) -> list[str]:
    labels = _read_labels(path)
    for label in labels:
        if label not in PHONE_MAP_48:
            raise W2vtkError(f"{path}: unknown TIMIT phone {label!r}")
    return labels


def prep_timit(corpus_dir: str | Path, out_dir: str | Path, *, phone_set: int = 48) -> dict | None:
    """Prepare ``OUT_DIR/{train,dev,test}`` and ``OUT_DIR/local/lm_text.txt`` from a TIMIT copy.

    The LM text is the training set's phone transcripts (folded like ``text``): the phone LM of
    Kaldi's TIMIT recipe; dev and test never enter it.  Returns finish_prep's summary, or None
    when a previous run with the same arguments had finished (nothing is redone).
    """
    if phone_set not in (48, 39):
        raise W2vtkError(f"--phone-set must be 48 or 39, not {phone_set}")
    signature = {"corpus": "timit", "corpus_dir": str(Path(corpus_dir).resolve()),
                 "phone_set": phone_set, "version": 1}
    if start_prep(out_dir, signature):
        print(f"{out_dir}: TIMIT already prepared with these options; nothing to do")
        return None
    tables = scan_timit(corpus_dir, phone_set)
    sets = {}
    for name in SETS:
        t = tables[name]
        sets[name] = dict(wav_scp=t["wav_scp"], text=t["text"], utt2spk=t["utt2spk"],
                          utt2dur=t["utt2dur"], spk2gender=t["spk2gender"],
                          extra={"text.words": t["text.words"]})
    train_text = tables["train"]["text"]
    lm_lines = (train_text[u] for u in sorted(train_text))
    return finish_prep(out_dir, "timit", sets, lm_lines=lm_lines,
                       expected_counts=EXPECTED_COUNTS, signature=signature)
