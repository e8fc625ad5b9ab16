"""Corpus preparation: each module turns one corpus layout into Kaldi data dirs plus LM text.

``timit``, ``wsj``, ``librispeech`` and ``mini`` read their corpus, build the tables in memory and
hand them to :func:`w2vtk.corpora.common.finish_prep`, which writes and validates every set, writes
``OUT_DIR/local/lm_text.txt``, checks the expected counts, prints the summary table and leaves the
done marker that makes a rerun skip (see that module's docstring for the contract).
"""
