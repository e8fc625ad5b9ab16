"""Language models and lexicons for decoding (``w2vtk prep lm``).

An LM dir (``--out``, e.g. ``data/lang_4g``) holds:

- ``lm.arpa`` and ``lm.bin``: the n-gram model as ARPA text and as a KenLM binary (probing hash);
- ``words.txt``: the vocabulary, one word per line, in the decoder's (the tokens') case;
- ``lexicon.txt``: ``word<TAB>spelling`` lines, the spelling in tokens of ``tokens.txt``
  (letters: ``w o r d |``, the boundary ``|`` closing every word as in wav2letter / fairseq;
  phones: the dictionary's pronunciations; spm: the word's sentencepiece pieces);
- ``tokens.txt`` (+ ``lang.yaml``, ``spm.model``): a copy of the lang dir, so that decode can check
  that the AM, lexicon and LM agree;
- ``skipped_words.txt``: vocabulary words that cannot be spelled with the tokens (not in the lexicon);
- ``lm.yaml``: how it was built (order, unit, builder, counts, sha256 of the text, version).

Estimation.  KenLM's ``lmplz`` (interpolated modified Kneser-Ney, three discounts per order) with
``--discount_fallback`` (small texts lack the count-of-counts that the discount formula needs) and
``-S`` (memory cap, e.g. ``20%`` or ``2G``), then ``build_binary``.  The binaries are looked for in
``$KENLM_BIN``, then ``tools/kenlm/bin`` of the repository (``bin/install_kenlm.sh`` builds them),
then ``PATH``.  When ``lmplz`` is absent, a pure-Python fallback (:func:`estimate_kn_arpa`:
interpolated Kneser-Ney with one absolute discount per order, ``D = n1 / (n1 + 2 n2)``, the same
continuation counts as lmplz, no pruning) writes the ARPA, with a warning; it holds every n-gram in
memory and is therefore refused for texts over :data:`FALLBACK_MAX_WORDS` words.  Without
``build_binary`` the ARPA alone is used (KenLM loads ARPA directly, only more slowly).

Units.  ``word`` (default): an n-gram over words for the lexicon decoder.  ``token``: an n-gram
over the token strings of ``tokens.txt`` for the lexicon-free decoder (letters: ``w o r d | w o r d``,
the boundary being a token of the LM; spm: pieces; phones: the text must already be phones).
Orders above 6 (wav2letter used 10-20 for its character LMs) need every part of the KenLM toolchain
compiled with a larger ``KENLM_MAX_ORDER``: PyPI's ``kenlm`` module and flashlight-text wheels (and
``bin/install_kenlm.sh`` by default) use 6.  ``bash bin/install_kenlm.sh --max-order 20 --python``
rebuilds lmplz, the ``kenlm`` module and flashlight-text from source with 20.  Before estimating such
an LM, :func:`order_support_problems` loads a tiny LM of that order through each part, and the build
is refused, naming the parts that cannot, rather than producing an LM that never loads.

Vocabulary.  The LM text's words (optionally without words containing a digit, as wav2letter's WSJ
recipe), or with ``--vocab FILE`` only the words of that list (e.g. WSJ's ``wlist20o.nvp``; lines
starting with ``#`` are comments); n-grams with other words are then dropped by lmplz
(``--limit_vocab_file``).  Words are written in the tokens' case (a lower-case letter set gets
lower-case words).  Perplexity is measured with the PyPI ``kenlm`` module (:func:`perplexity`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import yaml

from w2vtk.errors import W2vtkError
from w2vtk.io import atomic_open, atomic_write_text, decode_utf8, sha256_file

KENLM_MAX_ORDER = 6  # KenLM's default, and that of PyPI's kenlm / flashlight-text wheels
MAX_LM_ORDER = 32  # largest order w2vtk accepts at all (a toolchain built with --max-order 32)
FALLBACK_MAX_WORDS = 2_000_000
_DIGIT = re.compile(r"\d")


# --- KenLM binaries -----------------------------------------------------------------------------

_ORDER_PROBES: dict[int, list[str]] = {}


def order_support_problems(order: int) -> list[str]:
    """The parts of the KenLM toolchain that cannot handle an order-``order`` LM ([] if none).

    Each part is tried for real on a tiny LM of that order (lmplz estimates it when present, else the
    pure-Python fallback; build_binary converts it; the ``kenlm`` module and flashlight-text's ``KenLM``
    load it), because the
    compiled ``KENLM_MAX_ORDER`` of a wheel cannot be read any other way.  Orders up to 6 need no
    probe.  Results are kept per process.
    """
    if order <= KENLM_MAX_ORDER:
        return []
    if order in _ORDER_PROBES:
        return _ORDER_PROBES[order]
    problems: list[str] = []
    words = [f"w{i}" for i in range(order + 2)]
    sentences = [words[i:] + words[:i] for i in range(len(words))]
    with tempfile.TemporaryDirectory(prefix="w2vtk-order-probe.") as tmp:
        tmp_dir = Path(tmp)
        arpa = tmp_dir / "probe.arpa"
        lmplz = find_kenlm_binary("lmplz")
        if lmplz is not None:
            text = tmp_dir / "probe.txt"
            text.write_text("\n".join(" ".join(s) for s in sentences) + "\n", encoding="utf-8")
            proc = subprocess.run([str(lmplz), "-o", str(order), "--discount_fallback", "-S", "100M",
                                   "-T", str(tmp_dir), "--text", str(text), "--arpa", str(arpa)],
                                  capture_output=True, text=True)
            if proc.returncode != 0 or not arpa.is_file():
                problems.append(f"lmplz ({lmplz})")
        if not arpa.is_file():
            estimate_kn_arpa(sentences, order, arpa)
        build_binary = find_kenlm_binary("build_binary")
        if build_binary is not None:
            proc = subprocess.run([str(build_binary), "-S", "100M", str(arpa), str(tmp_dir / "probe.bin")],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                problems.append(f"build_binary ({build_binary})")
        with _quiet_stderr():  # KenLM prints its loading progress bar on fd 2
            try:
                import kenlm

                kenlm.Model(str(arpa))
            except ImportError:
                pass  # perplexity is then unavailable anyway; the decoder is what matters
            except Exception:  # noqa: BLE001 - KenLM raises OSError / RuntimeError / its own types
                problems.append("the kenlm Python module")
            try:
                from flashlight.lib.text.decoder.kenlm import KenLM
                from flashlight.lib.text.dictionary import Dictionary

                KenLM(str(arpa), Dictionary(words))
            except ImportError:
                problems.append("flashlight-text (not importable)")
            except Exception:  # noqa: BLE001
                problems.append("flashlight-text")
    _ORDER_PROBES[order] = problems
    return problems


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 (where C++ libraries print) to /dev/null for the block."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_order_support(order: int, what: str) -> None:
    """Refuse (W2vtkError) an LM order that some part of the KenLM toolchain cannot load."""
    problems = order_support_problems(order)
    if problems:
        build = max(order, 20)
        raise W2vtkError(f"{what}: {', '.join(problems)} cannot load an LM of order {order} (compiled with "
                         f"a smaller KENLM_MAX_ORDER, {KENLM_MAX_ORDER} in PyPI's wheels); rebuild them with "
                         f"`bash bin/install_kenlm.sh --max-order {build} --python`")

def repo_root() -> Path:
    """The checkout that holds this package (``tools/kenlm/bin`` lives there)."""
    return Path(__file__).resolve().parents[1]


def find_kenlm_binary(name: str) -> Path | None:
    """``lmplz`` / ``build_binary`` / ``query``: from ``$KENLM_BIN``, ``tools/kenlm/bin``, then PATH."""
    candidates = []
    if os.environ.get("KENLM_BIN"):
        candidates.append(Path(os.environ["KENLM_BIN"]) / name)
    candidates.append(repo_root() / "tools" / "kenlm" / "bin" / name)
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    found = shutil.which(name)
    return Path(found) if found else None


# --- text and vocabulary ------------------------------------------------------------------------

def read_sentences(path: str | Path) -> Iterator[list[str]]:
    """LM text: one sentence per line, words separated by white space; empty lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise W2vtkError(f"{path}: no such file")
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise W2vtkError(f"{path}:{line_no}: not valid UTF-8") from None
            words = line.split()
            if words:
                yield words


def _utf8_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file; bad bytes are a W2vtkError naming the file and line."""
    return decode_utf8(path.read_bytes(), path).splitlines()


def read_word_list(path: str | Path) -> list[str]:
    """A vocabulary file: the first field of each line; ``#`` lines (wlist20o.nvp's header) skipped."""
    path = Path(path)
    if not path.is_file():
        raise W2vtkError(f"{path}: no such file")
    out: list[str] = []
    seen = set()
    for line in _utf8_lines(path):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0] not in seen:
            seen.add(fields[0])
            out.append(fields[0])
    if not out:
        raise W2vtkError(f"{path}: no words")
    return out


def case_mapper(case: str | None) -> Callable[[str], str]:
    """The function putting words into a token set's case (identity for mixed / caseless sets)."""
    if case == "lower":
        return str.lower
    if case == "upper":
        return str.upper
    return lambda w: w


def text_case(words: Iterable[str]) -> str | None:
    """"lower", "upper", "mixed" or None (no cased letter) for a collection of words."""
    lower = upper = False
    for w in words:
        lower = lower or any(c.islower() for c in w)
        upper = upper or any(c.isupper() for c in w)
        if lower and upper:
            return "mixed"
    return "lower" if lower else "upper" if upper else None


# --- lexicons -----------------------------------------------------------------------------------

@dataclasses.dataclass
class Lexicon:
    """``entries``: word -> list of spellings (token strings); ``skipped``: word -> reason."""

    entries: dict[str, list[list[str]]]
    skipped: dict[str, str]

    def write(self, path: Path) -> None:
        with atomic_open(path) as fh:
            for word, spellings in self.entries.items():
                for sp in spellings:
                    fh.write(f"{word}\t{' '.join(sp)}\n")


def read_pronunciations(path: str | Path) -> dict[str, list[list[str]]]:
    """A pronunciation dictionary: ``WORD ph1 ph2 ...`` lines (CMUdict / Kaldi lexicon.txt style).

    Alternative pronunciations are repeated lines (CMUdict's ``WORD(2)`` is read as ``WORD``);
    ``;;;`` and ``#`` lines are comments.  Phones are kept as written (see :func:`phone_lexicon`).
    """
    path = Path(path)
    if not path.is_file():
        raise W2vtkError(f"{path}: no such file")
    out: dict[str, list[list[str]]] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith(";;;") or fields[0].startswith("#"):
            continue
        if len(fields) < 2:
            raise W2vtkError(f"{path}:{line_no}: expected 'WORD phone ...', got {line!r}")
        word = re.sub(r"\(\d+\)$", "", fields[0])
        prons = out.setdefault(word, [])
        if fields[1:] not in prons:
            prons.append(fields[1:])
    if not out:
        raise W2vtkError(f"{path}: no pronunciations")
    return out


def build_lexicon(words: Sequence[str], tokens, pronunciations: dict[str, list[list[str]]] | None = None) -> Lexicon:
    """Spell ``words`` with a :class:`w2vtk.tokens.TokenSet`.

    letters: the word's characters then ``|`` (a word with a character outside the set is skipped);
    spm: the word's sentencepiece pieces (a word needing the unknown piece is skipped);
    phones: the dictionary's pronunciations, each phone lower-cased, CMUdict stress digits removed and
    folded to the token set (TIMIT 61 -> 48/39); a word absent from the dictionary, or with a phone
    outside the set, is skipped.
    """
    entries: dict[str, list[list[str]]] = {}
    skipped: dict[str, str] = {}
    if tokens.type == "letters":
        letters = set(tokens.tokens) - {"|", tokens.tokens[0]}
        for w in words:
            bad = [c for c in w if c not in letters]
            if bad:
                skipped[w] = f"characters {''.join(dict.fromkeys(bad))!r} not in tokens.txt"
                continue
            entries[w] = [list(w) + ["|"]]
    elif tokens.type == "spm":
        known = set(tokens.tokens[1:])
        unk = tokens.info.unk_token or "<unk>"
        for w in words:
            pieces = tokens.pieces(w)
            if not pieces or unk in pieces or any(p not in known for p in pieces):
                skipped[w] = "needs the sentencepiece unknown piece"
                continue
            entries[w] = [pieces]
    else:
        if pronunciations is None:
            raise W2vtkError("a phone token set needs a pronunciation dictionary (--lexicon-dict FILE)")
        from w2vtk.corpora.timit import fold_phone

        phone_set = tokens.info.phone_set or 48
        phones = set(tokens.tokens[1:])
        for w in words:
            prons = pronunciations.get(w)
            if prons is None:
                skipped[w] = "not in the pronunciation dictionary"
                continue
            spelled = []
            reason = ""
            for pron in prons:
                out = []
                for p in pron:
                    p = re.sub(r"\d$", "", p.lower())
                    try:
                        folded = fold_phone(p, phone_set)
                    except W2vtkError:
                        folded = p
                    if folded is None:
                        continue
                    if folded not in phones:
                        reason = f"phone {p!r} not in tokens.txt"
                        out = None
                        break
                    out.append(folded)
                if out:
                    if out not in spelled:
                        spelled.append(out)
            if spelled:
                entries[w] = spelled
            else:
                skipped[w] = reason or "empty pronunciation"
    return Lexicon(entries, skipped)


def read_lexicon(path: str | Path) -> dict[str, list[list[str]]]:
    """``word<TAB or space>t1 t2 ...`` lines -> word -> spellings (order of the file)."""
    path = Path(path)
    if not path.is_file():
        raise W2vtkError(f"{path}: no such file (make it with `w2vtk prep lm`)")
    out: dict[str, list[list[str]]] = {}
    for line_no, line in enumerate(_utf8_lines(path), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise W2vtkError(f"{path}:{line_no}: expected 'word token ...', got {line!r}")
        out.setdefault(fields[0], []).append(fields[1:])
    if not out:
        raise W2vtkError(f"{path}: empty lexicon")
    return out


# --- pure-Python ARPA fallback ------------------------------------------------------------------

def estimate_kn_arpa(sentences: Iterable[Sequence[str]], order: int, out_path: Path,
                     vocab: set[str] | None = None) -> dict[int, int]:
    """Write an interpolated Kneser-Ney ARPA of ``order`` for ``sentences``; returns n-gram counts.

    Counts as lmplz: the highest order uses raw counts, lower orders the number of distinct left
    extensions (continuation counts), except n-grams starting with ``<s>`` (nothing precedes it),
    which keep raw counts.  One discount per order ``D = n1 / (n1 + 2 n2)`` from that order's
    count-of-counts (0.5 when undefined).  For a seen n-gram ``h w``::

        p(w | h) = max(c(h w) - D, 0) / c(h .) + gamma(h) p(w | h')     gamma(h) = D N1+(h .) / c(h .)

    and ``gamma(h)`` is h's ARPA backoff weight, so the ARPA is normalised exactly. Unigrams
    interpolate with the uniform distribution over the vocabulary (``<unk>`` included).  With
    ``vocab``, n-grams holding another word are dropped (as lmplz's ``--limit_vocab_file``).
    """
    BOS, EOS = "<s>", "</s>"
    raw: list[Counter] = [Counter() for _ in range(order + 1)]  # raw[n][ngram tuple]
    for words in sentences:
        seq = [BOS] + list(words) + [EOS]
        for n in range(1, order + 1):
            for i in range(len(seq) - n + 1):
                g = tuple(seq[i:i + n])
                if g == (BOS,):
                    continue
                raw[n][g] += 1
    if not raw[1]:
        raise W2vtkError("the LM text has no words")
    if vocab is not None:
        allowed = set(vocab) | {BOS, EOS}
        for n in range(1, order + 1):
            raw[n] = Counter({g: c for g, c in raw[n].items() if all(w in allowed for w in g)})
    # Adjusted counts: continuation counts below the top order.
    adj: list[Counter] = [Counter() for _ in range(order + 1)]
    adj[order] = raw[order]
    for n in range(order - 1, 0, -1):
        cont = Counter()
        for g in raw[n + 1]:
            cont[g[1:]] += 1
        for g, c in raw[n].items():
            adj[n][g] = c if g[0] == BOS else cont.get(g, 0) or c
    discount = [0.0] * (order + 1)
    for n in range(1, order + 1):
        coc = Counter(adj[n].values())
        n1, n2 = coc.get(1, 0), coc.get(2, 0)
        discount[n] = n1 / (n1 + 2 * n2) if n1 and n2 else 0.5
    # Context totals and distinct followers.
    ctx_total: list[dict] = [defaultdict(int) for _ in range(order + 1)]
    ctx_types: list[dict] = [defaultdict(int) for _ in range(order + 1)]
    for n in range(1, order + 1):
        for g, c in adj[n].items():
            ctx_total[n][g[:-1]] += c
            ctx_types[n][g[:-1]] += 1

    vocab_words = sorted({g[0] for g in adj[1]} | {"<unk>"})
    prob: list[dict] = [dict() for _ in range(order + 1)]
    uniform = 1.0 / len(vocab_words)
    total1 = ctx_total[1][()]
    gamma0 = discount[1] * ctx_types[1][()] / total1
    for w in vocab_words:
        c = adj[1].get((w,), 0)
        prob[1][(w,)] = max(c - discount[1], 0.0) / total1 + gamma0 * uniform

    def lower(g: tuple) -> float:
        # p(w | h') through the already-computed lower orders, backing off as a reader of the ARPA would.
        k = len(g)
        if k == 1:
            return prob[1].get(g, prob[1][("<unk>",)])
        if g in prob[k]:
            return prob[k][g]
        return backoff.get(g[:-1], 1.0) * lower(g[1:])

    backoff: dict[tuple, float] = {}
    for n in range(2, order + 1):
        for h, tot in ctx_total[n].items():
            backoff[h] = discount[n] * ctx_types[n][h] / tot
        for g, c in adj[n].items():
            h = g[:-1]
            prob[n][g] = max(c - discount[n], 0.0) / ctx_total[n][h] + backoff[h] * lower(g[1:])

    counts = {n: len(prob[n]) + (1 if n == 1 else 0) for n in range(1, order + 1)}
    with atomic_open(out_path) as fh:
        fh.write("\\data\\\n")
        for n in range(1, order + 1):
            fh.write(f"ngram {n}={counts[n]}\n")
        for n in range(1, order + 1):
            fh.write(f"\n\\{n}-grams:\n")
            entries = sorted(prob[n].items())
            if n == 1:
                entries = [((BOS,), None)] + entries
            for g, p in entries:
                lp = -99.0 if p is None else math.log10(p)
                line = f"{lp:.6f}\t{' '.join(g)}"
                if n < order and g in backoff:
                    line += f"\t{math.log10(backoff[g]):.6f}"
                elif n < order and g == (BOS,):
                    line += "\t0.0"
                fh.write(line + "\n")
        fh.write("\n\\end\\\n")
    return counts


# --- building -----------------------------------------------------------------------------------

@dataclasses.dataclass
class LMBuildResult:
    """What :func:`build_lm` made: paths, counts and notes for the report."""

    out_dir: Path
    order: int
    unit: str
    builder: str                       # "lmplz" | "python-kn"
    binary: Path | None                # lm.bin, or None (ARPA only)
    num_sentences: int
    num_words: int                     # running words of the LM text
    vocab_size: int                    # words in words.txt
    lexicon_words: int
    skipped: dict[str, str]
    ngram_counts: dict[int, int]
    warnings: list[str]
    ppl: dict | None = None


def _parse_memory(memory: str) -> str:
    if not re.fullmatch(r"\d+(\.\d+)?(%|[bBkKmMgGtT])?", memory):
        raise W2vtkError(f"--memory {memory!r}: expected a percentage (20%) or a size (2G, 500M)")
    return memory


def _parse_prune(prune: str | None, order: int) -> list[int] | None:
    if prune is None or prune == "":
        return None
    try:
        values = [int(v) for v in prune.replace(",", " ").split()]
    except ValueError:
        raise W2vtkError(f"--prune {prune!r}: expected thresholds per order, e.g. '0 0 1'") from None
    if any(v < 0 for v in values) or len(values) > order or (values and values[0] != 0):
        raise W2vtkError(f"--prune {prune!r}: at most {order} non-negative thresholds, the first (unigrams) 0 "
                         f"(lmplz cannot prune unigrams)")
    if any(b < a for a, b in zip(values, values[1:])):
        raise W2vtkError(f"--prune {prune!r}: thresholds must not decrease with the order")
    return values


def arpa_counts(arpa: Path) -> dict[int, int]:
    """The ``ngram N=count`` header of an ARPA file."""
    counts = {}
    with open(arpa, encoding="utf-8", errors="replace") as fh:
        for line_no, line in enumerate(fh, 1):
            line = line.strip()
            if line.startswith("ngram ") and "=" in line:
                n, _, c = line[6:].partition("=")
                n, c = n.strip(), c.strip()
                if not (n.isascii() and n.isdigit() and c.isascii() and c.isdigit()) or len(n + c) > 30:
                    raise W2vtkError(f"{arpa}:{line_no}: expected 'ngram N=COUNT' in the ARPA "
                                     f"header, got {line[:80]!r}")
                counts[int(n)] = int(c)
            elif line.startswith("\\1-grams"):
                break
    return counts


def arpa_unigrams(arpa: Path) -> list[str]:
    """The words of an ARPA's 1-gram section (``<s>``, ``</s>``, ``<unk>`` included)."""
    words = []
    with open(arpa, encoding="utf-8", errors="replace") as fh:
        inside = False
        for line in fh:
            if line.startswith("\\1-grams"):
                inside = True
                continue
            if inside:
                if line.startswith("\\"):
                    break
                fields = line.split()
                if len(fields) >= 2:
                    words.append(fields[1])
    return words


def vocab_overlap(lm_words: Iterable[str], lexicon_words: Iterable[str]) -> tuple[float, str]:
    """(fraction of lexicon words known to the LM, a hint naming the case of each side)."""
    lm = {w for w in lm_words if w not in ("<s>", "</s>", "<unk>")}
    lex = set(lexicon_words)
    if not lex:
        return 0.0, ""
    rate = len(lex & lm) / len(lex)
    lm_case, lex_case = text_case(lm), text_case(lex)
    hint = f"LM words are {lm_case} case, lexicon words {lex_case} case" if lm_case != lex_case else ""
    return rate, hint


def _run(cmd: list[str], what: str, stdin=None) -> None:
    proc = subprocess.run(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:])
        raise W2vtkError(f"{what} failed (exit {proc.returncode}): {tail[-400:]}")


def build_lm(text: str | Path, lang: str | Path, out: str | Path, *, order: int = 4, unit: str = "word",
             vocab: str | Path | None = None, prune: str | None = None, memory: str = "20%",
             exclude_digits: bool = False, lexicon_dict: str | Path | None = None,
             arpa: str | Path | None = None, ppl_text: str | Path | None = None,
             allow_fallback: bool = True, log: Callable[[str], None] = print) -> LMBuildResult:
    """Build an LM dir (see the module docstring) from an LM text and a lang dir.

    ``unit`` word | token; ``vocab`` a word list restricting the vocabulary; ``prune`` lmplz's
    per-order count thresholds (``"0 0 1"``); ``memory`` lmplz ``-S``; ``exclude_digits`` drops
    words containing a digit from the vocabulary (wav2letter's WSJ recipe); ``lexicon_dict`` the
    pronunciation dictionary (phones); ``arpa`` an existing ARPA to use instead of estimating one
    (its unigrams are the vocabulary; the case is compared with the lexicon's and a mismatch
    warned with the overlap rate); ``ppl_text`` a text whose perplexity is reported.
    Files are written atomically, lm.yaml last (its presence marks a finished dir).
    """
    from w2vtk import __version__
    from w2vtk.tokens import TokenSet

    text, lang, out = Path(text) if text is not None else None, Path(lang), Path(out)
    if unit not in ("word", "token"):
        raise W2vtkError(f"--unit must be word or token, not {unit!r}")
    if not 1 <= order <= MAX_LM_ORDER:
        raise W2vtkError(f"--order {order}: choose 1..{MAX_LM_ORDER}")
    check_order_support(order, f"--order {order}")
    memory = _parse_memory(memory)
    prune_values = _parse_prune(prune, order)
    tokens = TokenSet.load(lang)
    if tokens.type == "phones" and unit == "word" and lexicon_dict is None:
        raise W2vtkError(f"{lang}: a phone token set needs a pronunciation dictionary (--lexicon-dict FILE)")
    if arpa is None and text is None:
        raise W2vtkError("give --text (an LM text) or --arpa (an existing ARPA)")
    if arpa is not None and unit == "token":
        raise W2vtkError("--arpa applies to word LMs; a token LM is estimated from --text")
    if ppl_text is not None:
        if not Path(ppl_text).is_file():
            raise W2vtkError(f"--ppl-text {ppl_text}: file not found")
        try:
            import kenlm  # noqa: F401
        except ImportError:
            raise W2vtkError("--ppl-text needs the kenlm Python module, which is not installed: "
                             "pip install kenlm (or bash bin/install.sh), or build without --ppl-text") from None
    to_case = case_mapper(tokens.info.case if tokens.type != "phones" else None)
    warnings: list[str] = []
    out.mkdir(parents=True, exist_ok=True)
    (out / "lm.yaml").unlink(missing_ok=True)  # an unfinished rebuild must not look finished

    # 1. normalised text (tokens' case; token unit: token strings) in a temporary file for lmplz
    tmp_dir = Path(tempfile.mkdtemp(prefix=".prep_lm.", dir=out))
    try:
        word_counts: Counter = Counter()
        num_sent = num_words = 0
        norm_text = tmp_dir / "text.txt"
        token_skipped: Counter = Counter()
        if text is not None:
            with open(norm_text, "w", encoding="utf-8") as fh:
                for words in read_sentences(text):
                    words = [to_case(w) for w in words]
                    num_sent += 1
                    num_words += len(words)
                    word_counts.update(words)
                    if unit == "token":
                        seq = _token_sequence(words, tokens, token_skipped)
                        if seq:
                            fh.write(" ".join(seq) + "\n")
                    else:
                        fh.write(" ".join(words) + "\n")
            if num_sent == 0:
                raise W2vtkError(f"{text}: no sentences (the LM text is empty)")

        # 2. vocabulary
        if unit == "token":
            vocab_words = [t for t in tokens.tokens[1:]]
        elif vocab is not None:
            vocab_words = [to_case(w) for w in read_word_list(vocab)]
            vocab_words = list(dict.fromkeys(vocab_words))
        elif arpa is not None:
            if not Path(arpa).is_file():
                raise W2vtkError(f"--arpa {arpa}: no such file")
            # the lexicon takes the tokens' case; an ARPA in another case is warned about below
            vocab_words = [to_case(w) for w in arpa_unigrams(Path(arpa)) if w not in ("<s>", "</s>", "<unk>")]
        else:
            vocab_words = sorted(word_counts)
        if exclude_digits and unit == "word":
            vocab_words = [w for w in vocab_words if not _DIGIT.search(w)]
        vocab_words = sorted(set(vocab_words))
        if not vocab_words:
            raise W2vtkError("the vocabulary is empty (every word excluded?)")

        # 3. lexicon
        skipped: dict[str, str] = {}
        if unit == "word":
            prons = read_pronunciations(lexicon_dict) if lexicon_dict is not None else None
            if prons is not None:
                prons = {to_case(w) if tokens.type != "phones" else w: p for w, p in prons.items()}
                if tokens.type == "phones":
                    # dictionaries are usually upper case (CMUdict); match the LM text's words
                    lc = text_case(vocab_words)
                    prons = {case_mapper(lc)(w): p for w, p in prons.items()}
            lexicon = build_lexicon(vocab_words, tokens, prons)
            skipped = lexicon.skipped
            if not lexicon.entries:
                first = next(iter(skipped.items()))
                raise W2vtkError(f"no vocabulary word can be spelled with {lang}/tokens.txt "
                                 f"(e.g. {first[0]!r}: {first[1]})")
            lexicon.write(out / "lexicon.txt")
            lex_words = list(lexicon.entries)
        else:
            atomic_write_text(out / "lexicon.txt", "".join(f"{t}\t{t}\n" for t in vocab_words))
            lex_words = vocab_words
            if token_skipped:
                skipped = {w: "not encodable with tokens.txt" for w in token_skipped}
        atomic_write_text(out / "words.txt", "".join(f"{w}\n" for w in vocab_words))
        atomic_write_text(out / "skipped_words.txt",
                          "".join(f"{w}\t{why}\n" for w, why in sorted(skipped.items())))
        if skipped:
            shown = ", ".join(list(sorted(skipped))[:8])
            warnings.append(f"{len(skipped)} word(s) cannot be spelled with the tokens and are not in the "
                            f"lexicon (listed in {out / 'skipped_words.txt'}): {shown}"
                            + (" ..." if len(skipped) > 8 else ""))

        # 4. ARPA
        arpa_out = out / "lm.arpa"
        if arpa is not None:
            arpa = Path(arpa)
            if not arpa.is_file():
                raise W2vtkError(f"--arpa {arpa}: no such file")
            if arpa.resolve() != arpa_out.resolve():
                shutil.copyfile(arpa, tmp_dir / "lm.arpa")
                os.replace(tmp_dir / "lm.arpa", arpa_out)
            builder = "given"
        else:
            lmplz = find_kenlm_binary("lmplz")
            limit_file = None
            if vocab is not None and unit == "word":
                limit_file = tmp_dir / "limit_vocab.txt"
                limit_file.write_text("\n".join(vocab_words) + "\n", encoding="utf-8")
            if lmplz is not None:
                cmd = [str(lmplz), "-o", str(order), "--discount_fallback", "-S", memory, "-T", str(tmp_dir),
                       "--text", str(norm_text), "--arpa", str(tmp_dir / "lm.arpa")]
                if prune_values:
                    cmd += ["--prune"] + [str(v) for v in prune_values]
                if limit_file is not None:
                    cmd += ["--limit_vocab_file", str(limit_file)]
                log(f"lmplz: order {order}, {num_words:,} words, vocabulary {len(vocab_words):,}")
                _run(cmd, f"lmplz ({lmplz})")
                builder = "lmplz"
            else:
                if not allow_fallback:
                    raise W2vtkError("lmplz not found ($KENLM_BIN, tools/kenlm/bin, PATH): run bin/install_kenlm.sh")
                if num_words > FALLBACK_MAX_WORDS:
                    raise W2vtkError(f"lmplz not found and the LM text has {num_words} words (the pure-Python "
                                     f"fallback takes at most {FALLBACK_MAX_WORDS}): run bin/install_kenlm.sh")
                if prune_values and any(prune_values):
                    raise W2vtkError("--prune needs lmplz (the pure-Python fallback does not prune): "
                                     "run bin/install_kenlm.sh")
                warnings.append("lmplz not found ($KENLM_BIN, tools/kenlm/bin, PATH): estimated with the "
                                "pure-Python interpolated Kneser-Ney fallback (one discount per order; fine "
                                "for small texts; run bin/install_kenlm.sh for modified Kneser-Ney)")
                estimate_kn_arpa((line.split() for line in norm_text.read_text(encoding="utf-8").splitlines()),
                                 order, tmp_dir / "lm.arpa",
                                 vocab=set(vocab_words) if limit_file is not None else None)
                builder = "python-kn"
            os.replace(tmp_dir / "lm.arpa", arpa_out)
        counts = arpa_counts(arpa_out)
        if not counts:
            raise W2vtkError(f"{arpa_out}: no '\\data\\' header (not an ARPA file)")
        lm_order = max(counts)
        check_order_support(lm_order, f"{arpa_out}: order {lm_order}")

        # 5. case / overlap check between the LM and the lexicon
        if unit == "word":
            rate, hint = vocab_overlap(arpa_unigrams(arpa_out), lex_words)
            if rate < 0.5:
                warnings.append(f"only {100 * rate:.1f}% of the lexicon's words are in the LM ({arpa_out})"
                                + (f": {hint}" if hint else ""))

        # 6. binary
        binary = None
        build_binary = find_kenlm_binary("build_binary")
        if build_binary is not None:
            log(f"build_binary: {arpa_out} -> {out / 'lm.bin'}")
            _run([str(build_binary), "-S", memory, "-T", str(tmp_dir), "probing", str(arpa_out),
                  str(tmp_dir / "lm.bin")], f"build_binary ({build_binary})")
            os.replace(tmp_dir / "lm.bin", out / "lm.bin")
            binary = out / "lm.bin"
        else:
            (out / "lm.bin").unlink(missing_ok=True)
            warnings.append("build_binary not found: decoding will load lm.arpa (slower to load)")

        # 7. the tokens travel with the LM
        for name in ("tokens.txt", "lang.yaml", "spm.model"):
            if (lang / name).is_file() and (lang / name).resolve() != (out / name).resolve():
                shutil.copyfile(lang / name, tmp_dir / name)
                os.replace(tmp_dir / name, out / name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)

    ppl = None
    if ppl_text is not None:
        ppl = perplexity(binary or arpa_out, ppl_text, to_case=to_case,
                         tokens=tokens if unit == "token" else None)
    result = LMBuildResult(out_dir=out, order=lm_order, unit=unit, builder=builder, binary=binary,
                           num_sentences=num_sent, num_words=num_words, vocab_size=len(vocab_words),
                           lexicon_words=len(lex_words), skipped=skipped, ngram_counts=counts,
                           warnings=warnings, ppl=ppl)
    meta = {"order": lm_order, "unit": unit, "builder": builder, "token_type": tokens.type,
            "text": str(text) if text is not None else None,
            "text_sha256": sha256_file(text) if text is not None else None,
            "arpa_source": str(arpa) if arpa is not None else None,
            "vocab": str(vocab) if vocab is not None else None, "exclude_digits": exclude_digits,
            "prune": prune_values, "memory": memory, "sentences": num_sent, "words": num_words,
            "vocab_size": len(vocab_words), "lexicon_words": len(lex_words), "skipped_words": len(skipped),
            "ngram_counts": counts, "silence": silence_token(tokens), "ppl": ppl,
            "w2vtk_version": __version__}
    atomic_write_text(out / "lm.yaml", yaml.safe_dump(meta, sort_keys=False))
    return result


def _token_sequence(words: list[str], tokens, bad: Counter) -> list[str]:
    """A sentence as token strings for a token-level LM (letters: words joined by ``|``)."""
    out: list[str] = []
    for w in words:
        try:
            if tokens.type == "phones":
                pieces = [tokens.tokens[i] for i in tokens.encode(w, utt=w)]
            else:
                pieces = tokens.pieces(w)
        except W2vtkError:
            bad[w] += 1
            continue
        if tokens.type == "letters" and out:
            out.append("|")
        out.extend(pieces)
    return out


def silence_token(tokens) -> str | None:
    """The decoder's silence token: ``|`` for letters, ``sil`` for TIMIT phones (the pause /
    closure class), none for sentencepiece (its pieces carry the word boundary ``▁``; the decoder
    then uses the blank as silence and the silence score is not tuned)."""
    if tokens.type == "letters":
        return "|"
    if tokens.type == "phones" and "sil" in tokens.tokens:
        return "sil"
    return None


# --- perplexity ---------------------------------------------------------------------------------

def perplexity(lm_path: str | Path, text: str | Path, *, to_case: Callable[[str], str] | None = None,
               tokens=None) -> dict:
    """Perplexity of a text (one sentence per line, ``</s>`` counted) with the ``kenlm`` module.

    ``text`` is a plain text, or a data dir whose Kaldi ``text`` is read without the utterance ids.
    With ``tokens`` the sentences are turned into token strings (token LMs).
    Returns {"ppl", "ppl_no_oov", "sentences", "words", "oov"}; log10 probabilities as KenLM.
    """
    import kenlm

    lm_path = Path(lm_path)
    try:
        model = kenlm.Model(str(lm_path))
    except (OSError, RuntimeError) as err:
        raise W2vtkError(f"{lm_path}: KenLM cannot load it ({' '.join(str(err).split())[:160]})") from None
    to_case = to_case or (lambda w: w)
    total = total_no_oov = 0.0
    n_tokens = n_oov = n_sent = 0
    text = Path(text)
    if text.is_dir():
        from w2vtk.tokens import read_transcripts

        sentences: Iterable[list[str]] = [t.split() for t in read_transcripts(text / "text").values() if t]
    else:
        sentences = read_sentences(text)
    for words in sentences:
        words = [to_case(w) for w in words]
        if tokens is not None:
            words = _token_sequence(words, tokens, Counter())
        n_sent += 1
        for logp, _ngram_len, oov in model.full_scores(" ".join(words), bos=True, eos=True):
            total += logp
            n_tokens += 1
            if oov:
                n_oov += 1
            else:
                total_no_oov += logp
    if n_tokens == 0:
        raise W2vtkError(f"{text}: no sentences")
    ppl = 10 ** (-total / n_tokens)
    ppl_no_oov = 10 ** (-total_no_oov / max(1, n_tokens - n_oov))
    return {"ppl": round(ppl, 3), "ppl_no_oov": round(ppl_no_oov, 3), "sentences": n_sent,
            "words": n_tokens - n_sent, "oov": n_oov}
