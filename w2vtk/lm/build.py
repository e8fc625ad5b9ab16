"""``w2vtk prep lm``: estimate an n-gram LM (lmplz, or the Python fallback) and write an LM dir."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Callable

import yaml

from w2vtk import __version__
from w2vtk.errors import W2vtkError
from w2vtk.io import atomic_write_text, sha256_file
from w2vtk.lm.estimate import arpa_counts, arpa_unigrams, estimate_kn_arpa
from w2vtk.lm.lexicon import (build_lexicon, case_mapper, read_pronunciations, read_sentences, read_word_list,
                              text_case, token_sequence)
from w2vtk.lm.reading import perplexity, silence_token, vocab_overlap
from w2vtk.lm.toolchain import MAX_LM_ORDER, check_order_support, find_kenlm_binary, run_tool
from w2vtk.tokens import TokenSet

FALLBACK_MAX_WORDS = 2_000_000  # the Python fallback holds every n-gram in memory
DIGIT = re.compile(r"\d")

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


def parse_memory(memory: str) -> str:
    if not re.fullmatch(r"\d+(\.\d+)?(%|[bBkKmMgGtT])?", memory):
        raise W2vtkError(f"--memory {memory!r}: expected a percentage (20%) or a size (2G, 500M)")
    return memory


def parse_prune(prune: str | None, order: int) -> list[int] | None:
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


def build_lm(text: str | Path, lang: str | Path, out: str | Path, *, order: int = 4, unit: str = "word",
             vocab: str | Path | None = None, prune: str | None = None, memory: str = "20%",
             exclude_digits: bool = False, lexicon_dict: str | Path | None = None,
             arpa: str | Path | None = None, ppl_text: str | Path | None = None,
             allow_fallback: bool = True, log: Callable[[str], None] = print) -> LMBuildResult:
    """Build an LM dir (see the package docstring) from an LM text and a lang dir.

    ``unit`` word | token; ``vocab`` a word list restricting the vocabulary; ``prune`` lmplz's
    per-order count thresholds (``"0 0 1"``); ``memory`` lmplz ``-S``; ``exclude_digits`` drops
    words containing a digit from the vocabulary (wav2letter's WSJ recipe); ``lexicon_dict`` the
    pronunciation dictionary (phones); ``arpa`` an existing ARPA to use instead of estimating one
    (its unigrams are the vocabulary; the case is compared with the lexicon's and a mismatch
    warned with the overlap rate); ``ppl_text`` a text whose perplexity is reported.
    Files are written atomically, lm.yaml last (its presence marks a finished dir).
    """
    text, lang, out = Path(text) if text is not None else None, Path(lang), Path(out)
    arpa = Path(arpa) if arpa is not None else None
    tokens, memory, prune_values = _check_request(text, lang, order, unit, prune, memory, lexicon_dict, arpa,
                                                  ppl_text)
    to_case = case_mapper(tokens.info.case if tokens.type != "phones" else None)
    warnings: list[str] = []
    out.mkdir(parents=True, exist_ok=True)
    (out / "lm.yaml").unlink(missing_ok=True)  # an unfinished rebuild must not look finished
    tmp_dir = Path(tempfile.mkdtemp(prefix=".prep_lm.", dir=out))
    try:
        stats = _normalise_text(text, tokens, unit, to_case, tmp_dir / "text.txt")
        vocab_words = _vocabulary(unit, tokens, vocab, arpa, stats, to_case, exclude_digits)
        lex_words, skipped = _write_lexicon(out, lang, unit, tokens, vocab_words, lexicon_dict, to_case,
                                            stats.token_skipped, warnings)
        arpa_out = out / "lm.arpa"
        if arpa is not None:
            if arpa.resolve() != arpa_out.resolve():
                shutil.copyfile(arpa, tmp_dir / "lm.arpa")
                os.replace(tmp_dir / "lm.arpa", arpa_out)
            builder = "given"
        else:
            limit = vocab_words if vocab is not None and unit == "word" else None
            builder = _estimate(tmp_dir, order, memory, prune_values, limit, stats, len(vocab_words),
                                allow_fallback, warnings, log)
            os.replace(tmp_dir / "lm.arpa", arpa_out)
        counts = arpa_counts(arpa_out)
        if not counts:
            raise W2vtkError(f"{arpa_out}: no '\\data\\' header (not an ARPA file)")
        lm_order = max(counts)
        check_order_support(lm_order, f"{arpa_out}: order {lm_order}")
        if unit == "word":  # case / overlap check between the LM and the lexicon
            rate, hint = vocab_overlap(arpa_unigrams(arpa_out), lex_words)
            if rate < 0.5:
                warnings.append(f"only {100 * rate:.1f}% of the lexicon's words are in the LM ({arpa_out})"
                                + (f": {hint}" if hint else ""))
        binary = _build_binary(out, arpa_out, tmp_dir, memory, warnings, log)
        for name in ("tokens.txt", "lang.yaml", "spm.model"):  # the tokens travel with the LM
            if (lang / name).is_file() and (lang / name).resolve() != (out / name).resolve():
                shutil.copyfile(lang / name, tmp_dir / name)
                os.replace(tmp_dir / name, out / name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)

    ppl = None
    if ppl_text is not None:
        ppl = perplexity(binary or arpa_out, ppl_text, to_case=to_case, tokens=tokens if unit == "token" else None)
    result = LMBuildResult(out_dir=out, order=lm_order, unit=unit, builder=builder, binary=binary,
                           num_sentences=stats.sentences, num_words=stats.words, vocab_size=len(vocab_words),
                           lexicon_words=len(lex_words), skipped=skipped, ngram_counts=counts,
                           warnings=warnings, ppl=ppl)
    meta = {"order": lm_order, "unit": unit, "builder": builder, "token_type": tokens.type,
            "text": str(text) if text is not None else None,
            "text_sha256": sha256_file(text) if text is not None else None,
            "arpa_source": str(arpa) if arpa is not None else None,
            "vocab": str(vocab) if vocab is not None else None, "exclude_digits": exclude_digits,
            "prune": prune_values, "memory": memory, "sentences": stats.sentences, "words": stats.words,
            "vocab_size": len(vocab_words), "lexicon_words": len(lex_words), "skipped_words": len(skipped),
            "ngram_counts": counts, "silence": silence_token(tokens), "ppl": ppl,
            "w2vtk_version": __version__}
    atomic_write_text(out / "lm.yaml", yaml.safe_dump(meta, sort_keys=False))
    return result


def _check_request(text: Path | None, lang: Path, order: int, unit: str, prune: str | None, memory: str,
                   lexicon_dict, arpa: Path | None, ppl_text) -> tuple[TokenSet, str, list[int] | None]:
    """The one-line errors of a build request, before anything is written; (tokens, memory, prune)."""
    if unit not in ("word", "token"):
        raise W2vtkError(f"--unit must be word or token, not {unit!r}")
    if not 1 <= order <= MAX_LM_ORDER:
        raise W2vtkError(f"--order {order}: choose 1..{MAX_LM_ORDER}")
    check_order_support(order, f"--order {order}")
    memory = parse_memory(memory)
    prune_values = parse_prune(prune, order)
    tokens = TokenSet.load(lang)
    if tokens.type == "phones" and unit == "word" and lexicon_dict is None:
        raise W2vtkError(f"{lang}: a phone token set needs a pronunciation dictionary (--lexicon-dict FILE)")
    if arpa is None and text is None:
        raise W2vtkError("give --text (an LM text) or --arpa (an existing ARPA)")
    if arpa is not None and unit == "token":
        raise W2vtkError("--arpa applies to word LMs; a token LM is estimated from --text")
    if arpa is not None and not arpa.is_file():
        raise W2vtkError(f"--arpa {arpa}: no such file")
    if ppl_text is not None:
        if not Path(ppl_text).is_file():
            raise W2vtkError(f"--ppl-text {ppl_text}: file not found")
        try:
            import kenlm  # noqa: F401
        except ImportError:
            raise W2vtkError("--ppl-text needs the kenlm Python module, which is not installed: "
                             "pip install kenlm (or bash bin/install.sh), or build without --ppl-text") from None
    return tokens, memory, prune_values


@dataclasses.dataclass
class TextStats:
    """What :func:`_normalise_text` read: the normalised text's path and its counts."""

    path: Path
    word_counts: Counter
    token_skipped: Counter
    sentences: int = 0
    words: int = 0


def _normalise_text(text: Path | None, tokens: TokenSet, unit: str, to_case: Callable[[str], str],
                    path: Path) -> TextStats:
    """The LM text in the tokens' case (token unit: as token strings), written to ``path`` for lmplz."""
    stats = TextStats(path, Counter(), Counter())
    if text is None:
        return stats
    with open(path, "w", encoding="utf-8") as fh:
        for words in read_sentences(text):
            words = [to_case(w) for w in words]
            stats.sentences += 1
            stats.words += len(words)
            stats.word_counts.update(words)
            if unit == "token":
                seq = token_sequence(words, tokens, stats.token_skipped)
                if seq:
                    fh.write(" ".join(seq) + "\n")
            else:
                fh.write(" ".join(words) + "\n")
    if stats.sentences == 0:
        raise W2vtkError(f"{text}: no sentences (the LM text is empty)")
    return stats


def _vocabulary(unit: str, tokens: TokenSet, vocab, arpa: Path | None, stats: TextStats,
                to_case: Callable[[str], str], exclude_digits: bool) -> list[str]:
    """The sorted vocabulary: the tokens (token unit), --vocab's words, the ARPA's unigrams or the text's."""
    if unit == "token":
        words = list(tokens.symbols)
    elif vocab is not None:
        words = list(dict.fromkeys(to_case(w) for w in read_word_list(vocab)))
    elif arpa is not None:
        # the lexicon takes the tokens' case; an ARPA in another case is warned about later
        words = [to_case(w) for w in arpa_unigrams(arpa) if w not in ("<s>", "</s>", "<unk>")]
    else:
        words = sorted(stats.word_counts)
    if exclude_digits and unit == "word":
        words = [w for w in words if not DIGIT.search(w)]
    words = sorted(set(words))
    if not words:
        raise W2vtkError("the vocabulary is empty (every word excluded?)")
    return words


def _write_lexicon(out: Path, lang: Path, unit: str, tokens: TokenSet, vocab_words: list[str], lexicon_dict,
                   to_case: Callable[[str], str], token_skipped: Counter,
                   warnings: list[str]) -> tuple[list[str], dict[str, str]]:
    """lexicon.txt, words.txt and skipped_words.txt; returns (lexicon words, skipped word -> why)."""
    skipped: dict[str, str] = {}
    if unit == "word":
        prons = read_pronunciations(lexicon_dict) if lexicon_dict is not None else None
        if prons is not None:
            prons = {to_case(w) if tokens.type != "phones" else w: p for w, p in prons.items()}
            if tokens.type == "phones":
                # dictionaries are usually upper case (CMUdict); match the LM text's words
                prons = {case_mapper(text_case(vocab_words))(w): p for w, p in prons.items()}
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
    atomic_write_text(out / "skipped_words.txt", "".join(f"{w}\t{why}\n" for w, why in sorted(skipped.items())))
    if skipped:
        shown = ", ".join(list(sorted(skipped))[:8])
        warnings.append(f"{len(skipped)} word(s) cannot be spelled with the tokens and are not in the "
                        f"lexicon (listed in {out / 'skipped_words.txt'}): {shown}"
                        + (" ..." if len(skipped) > 8 else ""))
    return lex_words, skipped


def _estimate(tmp_dir: Path, order: int, memory: str, prune_values: list[int] | None, limit: list[str] | None,
              stats: TextStats, vocab_size: int, allow_fallback: bool, warnings: list[str],
              log: Callable[[str], None]) -> str:
    """``tmp_dir/lm.arpa`` from the normalised text with lmplz, else the Python fallback; the builder's name."""
    limit_file = None
    if limit is not None:
        limit_file = tmp_dir / "limit_vocab.txt"
        limit_file.write_text("\n".join(limit) + "\n", encoding="utf-8")
    lmplz = find_kenlm_binary("lmplz")
    if lmplz is not None:
        cmd = [str(lmplz), "-o", str(order), "--discount_fallback", "-S", memory, "-T", str(tmp_dir),
               "--text", str(stats.path), "--arpa", str(tmp_dir / "lm.arpa")]
        if prune_values:
            cmd += ["--prune"] + [str(v) for v in prune_values]
        if limit_file is not None:
            cmd += ["--limit_vocab_file", str(limit_file)]
        log(f"lmplz: order {order}, {stats.words:,} words, vocabulary {vocab_size:,}")
        run_tool(cmd, f"lmplz ({lmplz})")
        return "lmplz"
    if not allow_fallback:
        raise W2vtkError("lmplz not found ($KENLM_BIN, tools/kenlm/bin, PATH): run bin/install_kenlm.sh")
    if stats.words > FALLBACK_MAX_WORDS:
        raise W2vtkError(f"lmplz not found and the LM text has {stats.words} words (the pure-Python "
                         f"fallback takes at most {FALLBACK_MAX_WORDS}): run bin/install_kenlm.sh")
    if prune_values and any(prune_values):
        raise W2vtkError("--prune needs lmplz (the pure-Python fallback does not prune): run bin/install_kenlm.sh")
    warnings.append("lmplz not found ($KENLM_BIN, tools/kenlm/bin, PATH): estimated with the "
                    "pure-Python interpolated Kneser-Ney fallback (one discount per order; fine "
                    "for small texts; run bin/install_kenlm.sh for modified Kneser-Ney)")
    estimate_kn_arpa((line.split() for line in stats.path.read_text(encoding="utf-8").splitlines()),
                     order, tmp_dir / "lm.arpa", vocab=set(limit) if limit is not None else None)
    return "python-kn"


def _build_binary(out: Path, arpa_out: Path, tmp_dir: Path, memory: str, warnings: list[str],
                  log: Callable[[str], None]) -> Path | None:
    """``out/lm.bin`` (KenLM probing hash) with build_binary; None (and a warning) without it."""
    build_binary = find_kenlm_binary("build_binary")
    if build_binary is None:
        (out / "lm.bin").unlink(missing_ok=True)
        warnings.append("build_binary not found: decoding will load lm.arpa (slower to load)")
        return None
    log(f"build_binary: {arpa_out} -> {out / 'lm.bin'}")
    run_tool([str(build_binary), "-S", memory, "-T", str(tmp_dir), "probing", str(arpa_out), str(tmp_dir / "lm.bin")],
             f"build_binary ({build_binary})")
    os.replace(tmp_dir / "lm.bin", out / "lm.bin")
    return out / "lm.bin"
