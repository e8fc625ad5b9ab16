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
    """Build an LM dir (see the module docstring) from an LM text and a lang dir.

    ``unit`` word | token; ``vocab`` a word list restricting the vocabulary; ``prune`` lmplz's
    per-order count thresholds (``"0 0 1"``); ``memory`` lmplz ``-S``; ``exclude_digits`` drops
    words containing a digit from the vocabulary (wav2letter's WSJ recipe); ``lexicon_dict`` the
    pronunciation dictionary (phones); ``arpa`` an existing ARPA to use instead of estimating one
    (its unigrams are the vocabulary; the case is compared with the lexicon's and a mismatch
    warned with the overlap rate); ``ppl_text`` a text whose perplexity is reported.
    Files are written atomically, lm.yaml last (its presence marks a finished dir).
    """
    text, lang, out = Path(text) if text is not None else None, Path(lang), Path(out)
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
                        seq = token_sequence(words, tokens, token_skipped)
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
            vocab_words = [w for w in vocab_words if not DIGIT.search(w)]
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
                run_tool(cmd, f"lmplz ({lmplz})")
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
            run_tool([str(build_binary), "-S", memory, "-T", str(tmp_dir), "probing", str(arpa_out),
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
