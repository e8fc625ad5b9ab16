"""ARPA files: the pure-Python Kneser-Ney fallback that writes one, and readers of their header and unigrams."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from w2vtk.errors import W2vtkError
from w2vtk.io import atomic_open

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
    raw = _raw_counts(sentences, order, vocab)
    adj, discount = _adjusted_counts(raw, order)
    prob, backoff = _kn_probabilities(adj, discount, order)
    counts = {n: len(prob[n]) + (1 if n == 1 else 0) for n in range(1, order + 1)}
    _write_arpa(out_path, prob, backoff, counts, order)
    return counts


_BOS, _EOS = "<s>", "</s>"


def _raw_counts(sentences: Iterable[Sequence[str]], order: int, vocab: set[str] | None) -> list[Counter]:
    """raw[n][n-gram tuple]: counts of every n-gram up to ``order`` (``<s>`` alone not counted),
    n-grams with a word outside ``vocab`` dropped."""
    raw: list[Counter] = [Counter() for _ in range(order + 1)]
    for words in sentences:
        seq = [_BOS] + list(words) + [_EOS]
        for n in range(1, order + 1):
            for i in range(len(seq) - n + 1):
                g = tuple(seq[i:i + n])
                if g == (_BOS,):
                    continue
                raw[n][g] += 1
    if not raw[1]:
        raise W2vtkError("the LM text has no words")
    if vocab is not None:
        allowed = set(vocab) | {_BOS, _EOS}
        for n in range(1, order + 1):
            raw[n] = Counter({g: c for g, c in raw[n].items() if all(w in allowed for w in g)})
    return raw


def _adjusted_counts(raw: list[Counter], order: int) -> tuple[list[Counter], list[float]]:
    """Continuation counts below the top order (raw counts for n-grams starting with ``<s>``) and
    one discount per order from its count-of-counts."""
    adj: list[Counter] = [Counter() for _ in range(order + 1)]
    adj[order] = raw[order]
    for n in range(order - 1, 0, -1):
        cont = Counter()
        for g in raw[n + 1]:
            cont[g[1:]] += 1
        for g, c in raw[n].items():
            adj[n][g] = c if g[0] == _BOS else cont.get(g, 0) or c
    discount = [0.0] * (order + 1)
    for n in range(1, order + 1):
        coc = Counter(adj[n].values())
        n1, n2 = coc.get(1, 0), coc.get(2, 0)
        discount[n] = n1 / (n1 + 2 * n2) if n1 and n2 else 0.5
    return adj, discount


def _kn_probabilities(adj: list[Counter], discount: list[float], order: int) -> tuple[list[dict], dict]:
    """(prob[n][n-gram], backoff[context]): interpolated Kneser-Ney, unigrams interpolated with the
    uniform distribution over the vocabulary and ``<unk>``."""
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
    return prob, backoff


def _write_arpa(out_path: Path, prob: list[dict], backoff: dict, counts: dict[int, int], order: int) -> None:
    with atomic_open(out_path) as fh:
        fh.write("\\data\\\n")
        for n in range(1, order + 1):
            fh.write(f"ngram {n}={counts[n]}\n")
        for n in range(1, order + 1):
            fh.write(f"\n\\{n}-grams:\n")
            entries = sorted(prob[n].items())
            if n == 1:
                entries = [((_BOS,), None)] + entries
            for g, p in entries:
                lp = -99.0 if p is None else math.log10(p)
                line = f"{lp:.6f}\t{' '.join(g)}"
                if n < order and g in backoff:
                    line += f"\t{math.log10(backoff[g]):.6f}"
                elif n < order and g == (_BOS,):
                    line += "\t0.0"
                fh.write(line + "\n")
        fh.write("\n\\end\\\n")




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
