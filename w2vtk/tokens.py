"""Token sets shared by training, the lexicon, the language model and scoring (``w2vtk prep lang``).

A lang dir holds:

- ``tokens.txt``: ``<token> <index>`` per line, as k2/icefall write it; index 0 is the CTC blank
  ``<blk>``; for letters the word boundary ``|`` comes next (index 1).  An ASG set
  (``prep lang --criterion asg``) has no blank: ASG scores one token per frame and has no use for
  one, so ``|`` is index 0 and the repetition labels ``<1>`` .. ``<N>`` close the set (wav2letter's
  layout; WSJ's letters then make the paper's 31 graphemes, ``lang.yaml`` ``blank: null``).
- ``lang.yaml``: type, boundary index, case, the options used and the sha256 of the source text.
- ``spm.model`` (type ``spm`` only): the sentencepiece model; token index == sentencepiece id, so
  the blank is sentencepiece's user-defined symbol ``<blk>`` at id 0 (icefall's layout).

Three types:

- ``letters``: wav2letter's letter targets: a word's characters, words joined by one ``|``, no
  leading or trailing ``|``.  The set follows the transcripts' case.  When every character of the
  text lies in a standard set, that whole set is used, so that the token set does not depend on
  which letters a particular subset happens to contain: lower case -> wav2letter's WSJ set
  ``| ' . a-z`` (29 tokens; the paper's "31 graphemes" add ASG's two repetition labels, which CTC
  does not need), upper case -> LibriSpeech's ``| ' A-Z`` (28).  Otherwise the set is the text's own
  characters (recorded as ``letters_set: data`` in lang.yaml).
- ``phones``: TIMIT's 48 phones (Kaldi's training set) or, with ``phone_set=39``, the 39 scoring
  phones; encoding folds 61/48-phone labels to 39 first, so a 48-phone ``text`` can feed a 39 set.
- ``spm``: sentencepiece (unigram or BPE) trained on the transcripts, ``character_coverage=1.0``.

A character (letters) or phone outside the set is a :class:`W2vtkError` naming the utterance,
unless an unknown token was chosen (``unk_token``), to which such symbols are then mapped.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable

import yaml

from w2vtk import __version__
from w2vtk.config import from_dict, read_yaml_file
from w2vtk.errors import W2vtkError
from w2vtk.data.kaldi_dir import read_kv
from w2vtk.io import atomic_write_bytes, atomic_write_text, decode_utf8, sha256_file

BLANK = "<blk>"
BOUNDARY = "|"

# --- TIMIT phone sets (the one copy: corpora/timit.py, scoring and lexicons read them here) ----------

# The 61 TIMIT phone labels (.PHN files).
PHONES_61 = (
    "aa ae ah ao aw ax ax-h axr ay b bcl ch d dcl dh dx eh el em en eng epi er ey f g gcl h# hh hv "
    "ih ix iy jh k kcl l m n ng nx ow oy p pau pcl q r s sh t tcl th uh uw ux v w y z zh").split()
PHONES_48 = (
    "aa ae ah ao aw ax ay b ch cl d dh dx eh el en epi er ey f g hh ih ix iy jh k l m n ng ow oy p r "
    "s sh sil t th uh uw v vcl w y z zh").split()
PHONES_39 = (
    "aa ae ah aw ay b ch d dh dx eh er ey f g hh ih iy jh k l m n ng ow oy p r s sh sil t th uh uw v "
    "w y z").split()

_61_TO_48_CHANGES = {
    "ax-h": "ax", "axr": "er", "bcl": "vcl", "dcl": "vcl", "gcl": "vcl", "pcl": "cl", "tcl": "cl",
    "kcl": "cl", "h#": "sil", "pau": "sil", "em": "m", "eng": "ng", "hv": "hh", "nx": "n", "ux": "uw",
}
_48_TO_39_CHANGES = {
    "ao": "aa", "ax": "ah", "cl": "sil", "vcl": "sil", "epi": "sil", "el": "l", "en": "n", "ix": "ih",
    "zh": "sh",
}
# 61 -> 48 (None = deleted: the glottal stop q), 48 -> 39, and 61 -> 39.
PHONE_MAP_48: dict[str, str | None] = {p: _61_TO_48_CHANGES.get(p, p) for p in PHONES_61}
PHONE_MAP_48["q"] = None
MAP_48_TO_39: dict[str, str] = {p: _48_TO_39_CHANGES.get(p, p) for p in PHONES_48}
PHONE_MAP_39: dict[str, str | None] = {
    p: (None if t is None else MAP_48_TO_39[t]) for p, t in PHONE_MAP_48.items()}


def fold_timit_phone(phone: str, phone_set: int = 39, *, strict: bool = True) -> str | None:
    """One phone of the 61, 48 or 39 set folded to ``phone_set`` (48 or 39); None = deleted (q).

    Unknown labels raise W2vtkError when ``strict``, else pass through unchanged.
    """
    if phone_set not in (48, 39):
        raise W2vtkError(f"phone set must be 48 or 39, not {phone_set}")
    if phone in PHONE_MAP_48:
        folded = PHONE_MAP_48[phone]
    elif phone in MAP_48_TO_39:  # already a 48-set label (cl, vcl, sil, ...)
        folded = phone
    else:
        if strict:
            raise W2vtkError(f"unknown TIMIT phone {phone!r}")
        return phone
    if folded is None or phone_set == 48:
        return folded
    return MAP_48_TO_39[folded]



def fold_phone(phone: str, phone_set: int = 39) -> str | None:
    """Fold one TIMIT label (61, 48 or 39 set) to the 48 or 39 set; None for a deleted label (q).

    Raises KeyError for a label in none of the sets (callers choose how to report it).
    """
    try:
        return fold_timit_phone(phone, phone_set)
    except W2vtkError:
        raise KeyError(phone) from None


def fold_phones(phones: Iterable[str], phone_set: int = 39, where: str = "") -> list[str]:
    """Fold a 61/48/39-label sequence to the 48 or 39 set (``q`` deleted, ``sil`` kept, repeats
    not merged); an unknown label is a W2vtkError prefixed with ``where`` (file / utterance)."""
    out = []
    for p in phones:
        try:
            folded = fold_timit_phone(p, phone_set)
        except W2vtkError as err:
            raise W2vtkError(f"{where}: {err}" if where else str(err)) from None
        if folded is not None:
            out.append(folded)
    return out


STANDARD_LOWER = ["'", "."] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
STANDARD_UPPER = ["'"] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]


# --- Kaldi text files ---------------------------------------------------------------------------

def read_transcripts(path: str | Path) -> dict[str, str]:
    """Read a Kaldi ``text`` file: ``<utt-id> <words...>`` per line -> {utt: "words ..."}.

    A line holding only the id is an empty transcript; runs of white space become one space.
    Order is the file's (hypothesis files need not be sorted).  Non-UTF-8 bytes, CR line ends,
    blank lines and duplicate ids are errors naming the file and line (:func:`w2vtk.data.read_kv`).
    """
    out = {}
    # no blank lines are allowed, so entry i is on line i + 1
    for line_no, (utt, words) in enumerate(read_kv(path, any_order=True, what="utterance id").items(), 1):
        if any(c.isspace() for c in utt):  # a vertical tab, a no-break space ...
            raise W2vtkError(f"{path}:{line_no}: utterance id {utt!r} holds white space")
        out[utt] = " ".join(words.split())
    return out


# --- TokenSet -----------------------------------------------------------------------------------

@dataclasses.dataclass
class LangInfo:
    """Contents of lang.yaml."""

    type: str
    blank: int | None = 0            # None: an ASG set without a blank
    boundary: int | None = None
    case: str | None = None          # "lower" | "upper" | "mixed" | None (no cased letters)
    letters_set: str | None = None   # "standard-lower" | "standard-upper" | "data"
    phone_set: int | None = None     # 48 | 39
    spm_type: str | None = None      # "unigram" | "bpe"
    vocab_size: int | None = None
    unk_token: str | None = None
    replabel: int = 0                # repetition labels <1> .. <N> at the end of the set (ASG)
    source_text: str | None = None
    source_text_sha256: str | None = None
    num_tokens: int = 0
    w2vtk_version: str = ""


class TokenSet:
    """A token inventory with encode (text -> ids) and decode (ids -> words).

    ``tokens[i]`` is the token of index i; ``blank`` is 0 (None for an ASG set, which has none);
    ``boundary`` the index of ``|`` (letters) or None; ``type`` one of ``letters``, ``phones``, ``spm``.  Ids are what the acoustic model
    emits: (T', V) emissions have V == len(tokens).
    """

    def __init__(self, tokens: list[str], info: LangInfo, spm_processor=None):
        if not tokens:
            raise W2vtkError("empty token set")
        if info.blank is None:
            if BLANK in tokens:
                raise W2vtkError(f"a token set without a blank (lang.yaml blank: null) lists {BLANK!r} "
                                 f"at index {tokens.index(BLANK)}")
        elif info.blank != 0 or tokens[0] != BLANK:
            raise W2vtkError(f"token index 0 must be the blank {BLANK!r}")
        self.tokens = list(tokens)
        self.info = info
        self.warnings: list[str] = []  # what build_lang noticed (e.g. digits in a letters set)
        self.type = info.type
        self.blank = info.blank
        self.boundary = self.tokens.index(BOUNDARY) if BOUNDARY in self.tokens and info.type == "letters" else None
        self._index = {t: i for i, t in enumerate(self.tokens)}
        self._unk = self._index.get(info.unk_token) if info.unk_token else None
        self._sp = spm_processor

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        return f"TokenSet(type={self.type!r}, size={len(self.tokens)}, boundary={self.boundary})"

    def index(self, token: str) -> int:
        return self._index[token]

    @property
    def symbols(self) -> list[str]:
        """Every token but the blank (an LM's token vocabulary, a lexicon's spelling units)."""
        return [t for i, t in enumerate(self.tokens) if i != self.blank]

    @property
    def replabel_ids(self) -> list[int]:
        """Ids of the repetition labels ``<1>`` .. ``<N>`` (``lang.yaml`` ``replabel: N``; empty for none)."""
        return [self._index[replabel_token(k)] for k in range(1, self.info.replabel + 1)]

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, lang_dir: str | Path) -> "TokenSet":
        """Load ``tokens.txt`` (+ ``lang.yaml``, ``spm.model``) from a lang dir (or an AM exp dir).

        Without lang.yaml (e.g. an exp dir holding only a copy of tokens.txt) the type is inferred:
        spm.model present -> spm, ``|`` among the tokens -> letters, else phones.
        """
        lang_dir = Path(lang_dir)
        tokens = read_tokens_txt(lang_dir / "tokens.txt")
        yaml_path = lang_dir / "lang.yaml"
        if yaml_path.is_file():
            data = read_yaml_file(yaml_path)
            if not isinstance(data, dict):
                raise W2vtkError(f"{yaml_path}: expected a mapping of lang settings, not "
                                 f"{type(data).__name__}")
            if "type" not in data:
                raise W2vtkError(f"{yaml_path}: no 'type' (letters, phones or spm)")
            # Strict keys and types, as every other w2vtk YAML: a hand-edited file fails here,
            # named, and not later with a TypeError.
            info = from_dict(LangInfo, data, where=str(yaml_path))
        else:
            if (lang_dir / "spm.model").is_file():
                kind = "spm"
            elif BOUNDARY in tokens:
                kind = "letters"
            else:
                kind = "phones"
            info = LangInfo(type=kind, num_tokens=len(tokens), blank=0 if tokens[0] == BLANK else None,
                            phone_set=(39 if len(tokens) == 40 else 48) if kind == "phones" else None)
        if info.type not in ("letters", "phones", "spm"):
            raise W2vtkError(f"{yaml_path}: type must be letters, phones or spm, not {info.type!r}")
        sp = None
        if info.type == "spm":
            sp = _load_spm(lang_dir / "spm.model")
            if sp.get_piece_size() != len(tokens):
                raise W2vtkError(f"{lang_dir}: spm.model has {sp.get_piece_size()} pieces but "
                                 f"tokens.txt has {len(tokens)} tokens")
            for i, tok in enumerate(tokens):
                if sp.id_to_piece(i) != tok:
                    raise W2vtkError(f"{lang_dir}/tokens.txt: token {i} is {tok!r} but spm.model "
                                     f"has {sp.id_to_piece(i)!r}")
        try:
            return cls(tokens, info, sp)
        except W2vtkError as err:
            raise W2vtkError(f"{lang_dir}: {err}") from None

    # -- encode / decode ---------------------------------------------------------------------
    def encode(self, text: str, utt: str = "") -> list[int]:
        """Transcript (words separated by spaces) -> token ids (no blanks).

        letters: the words' characters joined by one ``|`` (no leading/trailing ``|``); phones: one
        id per phone (folded to 39 first for a 39 set); spm: sentencepiece pieces.  ``utt`` names
        the utterance in the error raised for a symbol outside the set.
        """
        words = text.split()
        where = f"utterance {utt!r}" if utt else "transcript"
        if self.type == "letters":
            ids: list[int] = []
            for w_i, word in enumerate(words):
                if w_i:
                    ids.append(self.boundary)
                for ch in word:
                    ids.append(self._lookup(ch, where, "character"))
            return ids
        if self.type == "phones":
            # Fold 61/48 labels to the set's own size first, so a 48-phone text feeds a 39 set.
            ids = []
            for p in words:
                try:
                    folded = fold_timit_phone(p, self.info.phone_set or 48)
                except W2vtkError:
                    folded = p  # not a TIMIT label: _lookup maps it to unk or names it
                if folded is not None:
                    ids.append(self._lookup(folded, where, "phone"))
            return ids
        ids = self._sp.encode(" ".join(words), out_type=int)
        unk = self._sp.unk_id()
        if unk in ids and self._unk is None:
            # character_coverage=1.0 made every training character a piece: the unknown ones are new
            bad = sorted({c for c in "".join(words) if self._sp.piece_to_id(c) == unk})
            raise W2vtkError(f"{where}: characters {''.join(bad)!r} are not covered by the "
                             f"sentencepiece model (rebuild the lang dir from text containing them, or with "
                             f"`w2vtk prep lang ... --unk-token <unk>` to map them to one token)")
        if self.blank is not None and self.blank in ids:
            raise W2vtkError(f"{where}: the transcript contains the blank symbol {BLANK!r}")
        return ids

    def _lookup(self, sym: str, where: str, what: str) -> int:
        idx = self._index.get(sym)
        if idx is None or idx == self.blank or (idx == self.boundary and what == "character"):
            if self._unk is not None:
                return self._unk
            raise W2vtkError(f"{where}: {what} {sym!r} is not in the {self.type} token set "
                             f"(rebuild the lang dir from text containing it, or with "
                             f"`w2vtk prep lang ... --unk-token <unk>` to map such symbols to one token)")
        return idx

    def decode(self, ids: Iterable[int]) -> str:
        """Token ids (a label sequence: CTC repeats already collapsed) -> words joined by spaces.

        Blanks are dropped.  letters: split on ``|`` (empty words from doubled or edge ``|`` vanish);
        phones: the phones; spm: sentencepiece's detokenisation.
        """
        ids = [int(i) for i in ids if int(i) != self.blank]  # (nothing is dropped without a blank)
        for i in ids:
            if not 0 <= i < len(self.tokens):
                raise W2vtkError(f"token id {i} out of range for a set of {len(self.tokens)}")
        if self.type == "spm":
            return " ".join(self._sp.decode(ids).split())
        toks = [self.tokens[i] for i in ids]
        if self.type == "phones":
            return " ".join(toks)
        return " ".join(w for w in "".join(toks).split(BOUNDARY) if w)

    def pieces(self, word: str) -> list[str]:
        """Token strings spelling one word, without a boundary (for lexicons).

        letters: its characters; spm: its sentencepiece pieces; phones: not defined (a phone
        lexicon is needed), a W2vtkError.
        """
        if self.type == "letters":
            return [self.tokens[i] for i in self.encode(word, utt=word)]
        if self.type == "spm":
            return self._sp.encode(word, out_type=str)
        raise W2vtkError("phone token sets cannot spell words; a pronunciation lexicon is needed")


def read_tokens_txt(path: str | Path) -> list[str]:
    """Read ``<token> <index>`` lines; indices must run 0..N-1 in order, index 0 being ``<blk>``
    or, in an ASG set without a blank, the word boundary ``|`` or another non-blank token (a
    ``<blk>`` elsewhere is refused)."""
    path = Path(path)
    if not path.is_file():
        raise W2vtkError(f"{path}: no such file (make it with `w2vtk prep lang`)")
    content = decode_utf8(path.read_bytes(), path)
    lines = content.split("\n")
    if lines[-1] == "":
        lines.pop()  # the text after the final newline
    tokens: list[str] = []
    for line_no, line in enumerate(lines, start=1):
        fields = line.split()
        # isascii: str.isdigit is also true for '²' and other digits int() refuses
        if len(fields) != 2 or not (fields[1].isascii() and fields[1].isdigit()):
            raise W2vtkError(f"{path}:{line_no}: expected '<token> <index>', got {line!r}")
        # compared as text: int() refuses more than 4300 digits
        if (fields[1].lstrip("0") or "0") != str(len(tokens)):
            raise W2vtkError(f"{path}:{line_no}: index {fields[1]} out of order (expected {len(tokens)})")
        if fields[0] in tokens:
            raise W2vtkError(f"{path}:{line_no}: duplicate token {fields[0]!r}")
        tokens.append(fields[0])
    if not tokens:
        raise W2vtkError(f"{path}: no tokens")
    if BLANK in tokens[1:]:
        raise W2vtkError(f"{path}:{tokens.index(BLANK) + 1}: the blank {BLANK!r} must be index 0")
    return tokens


def _load_spm(path: Path):
    import sentencepiece as spm

    if not path.is_file():
        raise W2vtkError(f"{path}: no such file (an spm lang needs its sentencepiece model)")
    sp = spm.SentencePieceProcessor()
    try:
        sp.load(str(path))
    except (OSError, RuntimeError):
        raise W2vtkError(f"{path}: not a sentencepiece model") from None
    return sp


# --- building a lang dir ------------------------------------------------------------------------

def _letters_for(texts: dict[str, str]) -> tuple[list[str], str, str | None]:
    """Letter inventory for transcripts -> (letters, letters_set, case)."""
    chars = set()
    for text in texts.values():
        chars.update(text.replace(" ", ""))
    if BOUNDARY in chars:
        utt = next(u for u, t in texts.items() if BOUNDARY in t)
        raise W2vtkError(f"utterance {utt!r}: the transcript contains {BOUNDARY!r}, the word boundary token")
    if BLANK in " ".join(texts.values()):
        utt = next(u for u, t in texts.items() if BLANK in t)
        raise W2vtkError(f"utterance {utt!r}: the transcript contains the blank symbol {BLANK!r}")
    has_lower = any(c.islower() for c in chars)
    has_upper = any(c.isupper() for c in chars)
    case = "mixed" if has_lower and has_upper else "lower" if has_lower else "upper" if has_upper else None
    if chars <= set(STANDARD_LOWER):
        return list(STANDARD_LOWER), "standard-lower", case
    if chars <= set(STANDARD_UPPER):
        return list(STANDARD_UPPER), "standard-upper", case
    return sorted(chars), "data", case


def replabel_token(k: int) -> str:
    """The token of k repetitions (flashlight-text's dictionary names them ``<1>``, ``<2>``, ...)."""
    return f"<{k}>"


def _lang_criterion(token_type: str, criterion: str | None, replabel: int) -> str:
    """The token set's criterion (ctc: with the blank; asg: without), checked against the request."""
    if token_type not in ("letters", "phones", "spm"):
        raise W2vtkError(f"--type must be letters, phones or spm, not {token_type!r}")
    criterion = criterion or ("asg" if replabel else "ctc")
    if criterion not in ("ctc", "asg"):
        raise W2vtkError(f"--criterion must be ctc or asg, not {criterion!r}")
    if criterion == "ctc" and replabel:
        raise W2vtkError("--replabel: repetition labels are ASG's (use --criterion asg)")
    if criterion == "asg" and token_type == "spm":
        raise W2vtkError("--criterion asg: a sentencepiece set keeps its blank at id 0; use letters or phones")
    return criterion


def build_lang(text_path: str | Path, out_dir: str | Path, token_type: str = "letters", *,
               vocab_size: int = 500, spm_type: str = "unigram", phone_set: int = 48,
               unk_token: str | None = None, replabel: int = 0, criterion: str | None = None) -> TokenSet:
    """Build a lang dir (tokens.txt, lang.yaml[, spm.model]) from a Kaldi ``text`` file.

    ``token_type``: letters | phones | spm.  ``vocab_size`` and ``spm_type`` (unigram | bpe) apply
    to spm; ``phone_set`` (48 | 39) to phones; ``unk_token`` adds a token to which symbols outside
    the set are mapped at encode time (for spm it names sentencepiece's unknown piece).
    ``replabel`` N > 0 appends the repetition labels ``<1>`` .. ``<N>`` (ASG targets; letters and
    phones only).  ``criterion`` ``ctc`` keeps the blank ``<blk>`` at index 0; ``asg`` leaves it out
    (letters and phones; the default when ``replabel`` > 0, else ``ctc``).  Every transcript is encoded once as a check, so a bad utterance fails here, named.
    Files are written atomically, lang.yaml last.
    """
    text_path, out_dir = Path(text_path), Path(out_dir)
    criterion = _lang_criterion(token_type, criterion, replabel)
    texts = read_transcripts(text_path)
    if not any(t.strip() for t in texts.values()):
        raise W2vtkError(f"{text_path}: no transcripts (all lines empty)")
    if unk_token is not None and (not unk_token or any(c.isspace() for c in unk_token)
                                  or unk_token in (BLANK, BOUNDARY)):
        raise W2vtkError(f"--unk-token must be one non-blank token other than {BLANK} and {BOUNDARY}")
    info = LangInfo(type=token_type, unk_token=unk_token, source_text=str(text_path),
                    source_text_sha256=sha256_file(text_path), w2vtk_version=__version__)
    out_dir.mkdir(parents=True, exist_ok=True)
    spm_bytes = None
    if token_type == "letters":
        letters, info.letters_set, info.case = _letters_for(texts)
        if unk_token is not None and unk_token in letters:
            raise W2vtkError(f"--unk-token {unk_token!r} is already a letter of the set")
        tokens = [BLANK, BOUNDARY] + letters + ([unk_token] if unk_token else [])
    elif token_type == "phones":
        if phone_set not in (48, 39):
            raise W2vtkError(f"--phone-set must be 48 or 39, not {phone_set}")
        info.phone_set = phone_set
        info.case = "lower"
        tokens = [BLANK] + sorted(PHONES_48 if phone_set == 48 else PHONES_39) + ([unk_token] if unk_token else [])
    else:
        if spm_type not in ("unigram", "bpe"):
            raise W2vtkError(f"--spm-type must be unigram or bpe, not {spm_type!r}")
        info.spm_type, info.vocab_size = spm_type, vocab_size
        spm_bytes = _train_spm(texts, vocab_size, spm_type, unk_token or "<unk>", text_path)
        tokens = _spm_pieces(spm_bytes)
        info.case = _letters_for(texts)[2]
    if replabel:
        if token_type == "spm" or not 0 < replabel <= 9:
            raise W2vtkError(f"--replabel {replabel}: must be 1..9, for letters or phones")
        clash = [replabel_token(k) for k in range(1, replabel + 1) if replabel_token(k) in tokens]
        if clash:
            raise W2vtkError(f"--replabel: {clash[0]} is already a token of the set")
        tokens = tokens + [replabel_token(k) for k in range(1, replabel + 1)]
        info.replabel = replabel
    if criterion == "asg":
        tokens = tokens[1:]  # ASG has no blank: wav2letter's token sets start at '|'
        info.blank = None
    info.boundary = tokens.index(BOUNDARY) if token_type == "letters" else None
    info.num_tokens = len(tokens)

    sp = None
    if spm_bytes is not None:
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_proto=spm_bytes)
    tset = TokenSet(tokens, info, sp)
    for utt, text in texts.items():
        try:
            tset.encode(text, utt=utt)
        except W2vtkError as err:
            raise W2vtkError(f"{text_path}: {err}") from None

    if spm_bytes is not None:
        atomic_write_bytes(out_dir / "spm.model", spm_bytes)
    atomic_write_text(out_dir / "tokens.txt", "".join(f"{t} {i}\n" for i, t in enumerate(tokens)))
    atomic_write_text(out_dir / "lang.yaml", yaml.safe_dump(dataclasses.asdict(info), sort_keys=False))
    tset.warnings = _digit_warning(texts, text_path) if token_type == "letters" else []
    return tset


def _digit_warning(texts: dict[str, str], text_path: Path) -> list[str]:
    """Digits in a letters token set become letter tokens ('1', '9', ...) while the audio says the
    number in words: almost always an unnormalised transcript. Said once, with an example."""
    with_digits = [(u, t) for u, t in texts.items() if any(c.isdigit() for c in t)]
    if not with_digits:
        return []
    utt, text = with_digits[0]
    word = next(w for w in text.split() if any(c.isdigit() for c in w))
    return [f"{text_path}: {len(with_digits)} transcript(s) contain digits (e.g. {utt}: {word!r}); each digit "
            f"becomes a letter token while the audio says the number in words: write numbers as words "
            f"before building the lang (the corpus preps do), unless this is what you want"]


def _train_spm(texts: dict[str, str], vocab_size: int, model_type: str, unk_piece: str,
               text_path: Path) -> bytes:
    import io

    import sentencepiece as spm

    sentences = [t for t in texts.values() if t]
    writer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=writer, vocab_size=vocab_size,
            model_type=model_type, character_coverage=1.0,
            # icefall's layout: <blk> is id 0, so token index == sentencepiece id; no bos/eos for CTC.
            user_defined_symbols=[BLANK], unk_id=1, unk_piece=unk_piece, bos_id=-1, eos_id=-1,
            pad_id=-1, num_threads=1, minloglevel=2, input_sentence_size=2_000_000,
            shuffle_input_sentence=True)
    except RuntimeError as err:
        msg = str(err).splitlines()[-1] if str(err) else err.__class__.__name__
        msg = msg.rsplit("] ", 1)[-1]  # drop sentencepiece's "INTERNAL: file(line) [check]" prefix
        raise W2vtkError(f"{text_path}: sentencepiece training failed: {msg} "
                         f"(for a small text, lower --vocab-size)") from None
    return writer.getvalue()


def _spm_pieces(model_bytes: bytes) -> list[str]:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]


def ctc_collapse(ids: Iterable[int], blank: int = 0) -> list[int]:
    """CTC label sequence of a frame-level token path: repeats merged, then blanks dropped."""
    out, prev = [], -1
    for t in ids:
        t = int(t)
        if t != prev and t != blank:
            out.append(t)
        prev = t
    return out


# --- repetition labels (ASG) --------------------------------------------------------------------

def pack_replabels(ids: Iterable[int], replabel_ids: list[int]) -> list[int]:
    """wav2letter's repetition labels (``--replabel N``, flashlight-text ``pack_replabels``): a token
    repeated k more times (1 <= k <= N) becomes the token followed by ``replabel_ids[k - 1]`` (the
    tokens "1" .. "N" of wav2letter's recipes, ``<1>`` .. ``<N>`` in flashlight-text's dictionary);
    a run longer than N + 1 starts again (``a a a a`` with N = 2: ``a 2 a``).
    ASG cannot score two equal adjacent tokens, so its targets are packed first."""
    out: list[int] = []
    limit = len(replabel_ids)
    prev, count = None, 0
    for tok in ids:
        tok = int(tok)
        if tok == prev and count < limit:
            count += 1
            continue
        if count:
            out.append(replabel_ids[count - 1])
        out.append(tok)
        prev, count = tok, 0
    if count:
        out.append(replabel_ids[count - 1])
    return out


def unpack_replabels(ids: Iterable[int], replabel_ids: list[int]) -> list[int]:
    """Inverse of :func:`pack_replabels`: ``replabel_ids[k - 1]`` after a token repeats it k more
    times (a repetition label with no token before it, as a decoder may emit, is dropped)."""
    rep = {r: k + 1 for k, r in enumerate(replabel_ids)}
    out: list[int] = []
    for tok in ids:
        tok = int(tok)
        if tok in rep:
            if out:
                out.extend([out[-1]] * rep[tok])
            continue
        out.append(tok)
    return out


def asg_collapse(path: Iterable[int]) -> list[int]:
    """The token sequence of an ASG frame path: runs merged (no blank)."""
    out: list[int] = []
    for tok in path:
        tok = int(tok)
        if not out or out[-1] != tok:
            out.append(tok)
    return out


def asg_token_ids(path: Iterable[int], replabel_ids: list[int]) -> list[int]:
    """Token ids of an ASG frame path (a Viterbi path or a beam's tokens): runs merged, then the
    repetition labels undone. Greedy decoding in train-am's dev scoring and in ``decode`` both read
    paths through this."""
    return unpack_replabels(asg_collapse(path), replabel_ids)
