"""Language models and lexicons for decoding (``w2vtk prep lm``): the ``w2vtk.lm`` package.

Modules: ``toolchain`` (KenLM binaries, order support), ``lexicon`` (LM text, word lists, case,
lexicons), ``estimate`` (the Python Kneser-Ney fallback, ARPA readers), ``build`` (:func:`build_lm`:
the LM dir), ``reading`` (what decode reads back: :class:`LMResources`, perplexity).

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

from w2vtk.lm.build import FALLBACK_MAX_WORDS, LMBuildResult, build_lm, parse_memory, parse_prune  # noqa: F401
from w2vtk.lm.estimate import arpa_counts, arpa_unigrams, estimate_kn_arpa  # noqa: F401
from w2vtk.lm.lexicon import (Lexicon, build_lexicon, case_mapper, read_lexicon, read_pronunciations,  # noqa: F401
                              read_sentences, read_word_list, text_case, token_sequence)
from w2vtk.lm.reading import (LMResources, check_lm_tokens, perplexity, read_lm_yaml, silence_token,  # noqa: F401
                              vocab_overlap)
from w2vtk.lm.toolchain import (KENLM_MAX_ORDER, MAX_LM_ORDER, ORDER_PROBES, check_order_support,  # noqa: F401
                                find_kenlm_binary, order_support_problems, repo_root)
