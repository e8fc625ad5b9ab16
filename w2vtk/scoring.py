"""WER / LER / PER the way Kaldi's ``compute-wer`` counts them, with Kaldi's output lines.

Counting.  Unit-cost Levenshtein distance between the reference and hypothesis token sequences.
Several alignments can reach the minimum; which one is taken decides the ins/del/sub split (e.g.
ref ``a b``, hyp ``c a``: 2 sub, or 1 ins + 1 del).  Kaldi's ``LevenshteinEditDistance`` (used by
compute-wer) and ``LevenshteinAlignment`` (used by align-text) both keep, going back from the end,
a match/substitution only when it is strictly cheaper, else a deletion when strictly cheaper than
an insertion, else an insertion.  rapidfuzz's ``editops`` breaks ties differently (it gives
2 sub above where Kaldi gives 1 ins + 1 del), so the alignment comes from ``kaldialign``, which
wraps Kaldi's own C++ ``LevenshteinAlignment``; the split is read off that alignment, so
alignments.txt and the counts always agree, and both equal compute-wer's.

Metrics (each over the tokens of every scored utterance, summed, then divided):

- WER: words.
- LER: wav2letter's letter error rate: the words' characters joined by single ``|`` tokens, no
  leading or trailing ``|`` (``ab cd`` -> ``a b | c d``).
- PER: both sides folded to TIMIT's 39 phones (``q`` deleted, ``sil`` kept, repeats not merged).

Options applied to both sides before any metric, in this order: ``case_fold`` (lower-case),
``filter="kaldi-wsj"`` (Kaldi's WSJ scoring filter: the tokens ``<NOISE>``, ``<SPOKEN_NOISE>``,
``<UNK>`` are deleted (matched case-insensitively), the characters ``:`` (lengthened sound) and
``*`` (mispronunciation mark) are deleted from words, and a word left empty disappears).

Missing hypotheses (``mode``), as compute-wer's ``--mode``: ``all`` (default here) scores a missing
hypothesis as empty, i.e. every reference token a deletion; ``present`` leaves the utterance out;
``strict`` (compute-wer's default) refuses.  With ``all`` or ``present`` and any hypothesis missing,
each metric line ends in `` [PARTIAL]`` and the closing line counts them, exactly as compute-wer
prints (``Scored N sentences, M not present in hyp.``).  A hypothesis id absent from the
reference is always an error (compute-wer silently ignores it).

Empty references.  An utterance whose reference is empty adds its hypothesis tokens as insertions
and nothing to the denominator.  A rate over zero reference tokens is undefined: per utterance or
speaker it is reported as ``None`` (JSON null, ``-`` in tables); for the whole set it is an error
(compute-wer would print inf or nan).

Guard: when fewer than half of the hypothesis tokens (words for WER) occur anywhere in the
reference, scoring stops with one line (wrong case or wrong token set), instead of reporting a
meaningless ~100% error rate; ``check_tokens=False`` disables it (e.g. for an untrained model).
"""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path
from typing import Iterable, Sequence

from w2vtk.data.kaldi_dir import read_kv
from w2vtk.errors import W2vtkError
from w2vtk.io import atomic_write_text
from w2vtk.tokens import BOUNDARY, fold_phones, read_transcripts

METRICS = ("wer", "ler", "per")
FILTERS = ("kaldi-wsj",)
MODES = ("all", "present", "strict")
_WSJ_DROP = {"<noise>", "<spoken_noise>", "<unk>"}

Pair = tuple[str | None, str | None]  # (ref token or None for an insertion, hyp token or None)


@dataclasses.dataclass(frozen=True)
class Counts:
    """Edit counts: insertions, deletions, substitutions and the number of reference tokens."""

    ins: int = 0
    dels: int = 0
    subs: int = 0
    ref_len: int = 0

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.subs

    @property
    def rate(self) -> float | None:
        """Error rate in percent; None when there are no reference tokens."""
        if self.ref_len == 0:
            return None
        return 100.0 * self.errors / self.ref_len

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.ins + other.ins, self.dels + other.dels, self.subs + other.subs,
                      self.ref_len + other.ref_len)

    def kaldi_line(self, name: str = "WER", partial: bool = False) -> str:
        """compute-wer's line: ``%WER 4.68 [ 264 / 5643, 45 ins, 22 del, 197 sub ]``."""
        if self.ref_len == 0:
            raise W2vtkError(f"%{name} is undefined: the reference has no tokens to score")
        return (f"%{name} {kaldi_percent(self.errors, self.ref_len)} [ {self.errors} / {self.ref_len}, {self.ins} ins, "
                f"{self.dels} del, {self.subs} sub ]" + (" [PARTIAL]" if partial else ""))


def kaldi_percent(errors: int, total: int) -> str:
    """``100 * errors / total`` printed as compute-wer prints it: the value is stored in a 32-bit
    float (Kaldi's BaseFloat) before printing with two decimals, which changes the last digit in
    some cases (1462 / 1491: 98.06, where the exact value 98.05499... would print 98.05)."""
    value = struct.unpack("f", struct.pack("f", 100.0 * errors / total))[0]
    return f"{value:.2f}"


# --- alignment ----------------------------------------------------------------------------------

def align(ref: Sequence[str], hyp: Sequence[str]) -> list[Pair]:
    """Minimum-edit alignment with Kaldi's tie-breaking: a list of (ref token | None, hyp token | None).

    (tok, None) is a deletion, (None, tok) an insertion, (a, b) with a != b a substitution.
    """
    import kaldialign

    if list(ref) == list(hyp):  # the common case in a good system: nothing to align
        return [(t, t) for t in ref]
    ids: dict[str, int] = {}
    ref_i = [ids.setdefault(t, len(ids)) for t in ref]
    hyp_i = [ids.setdefault(t, len(ids)) for t in hyp]
    if not ref_i or not hyp_i:  # trivial; also spares kaldialign an empty side
        return [(t, None) for t in ref] + [(None, t) for t in hyp]
    pairs = kaldialign.align(ref_i, hyp_i, -1)
    inv = list(ids)  # dicts keep insertion order: inv[i] is the token numbered i
    return [(None if r == -1 else inv[r], None if h == -1 else inv[h]) for r, h in pairs]


def counts_of(alignment: Iterable[Pair]) -> Counts:
    """Read the ins/del/sub split and reference length off an alignment."""
    ins = dels = subs = ref_len = 0
    for r, h in alignment:
        if r is None:
            ins += 1
            continue
        ref_len += 1
        if h is None:
            dels += 1
        elif r != h:
            subs += 1
    return Counts(ins, dels, subs, ref_len)


def error_counts(refs: Sequence[Sequence[str]], hyps: Sequence[Sequence[str]]) -> Counts:
    """Summed edit counts over paired token sequences (what compute-wer adds up)."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    total = Counts()
    for ref, hyp in zip(refs, hyps):
        total = total + counts_of(align(list(ref), list(hyp)))
    return total


# --- token streams ------------------------------------------------------------------------------

def kaldi_wsj_filter(words: Iterable[str]) -> list[str]:
    """Kaldi WSJ scoring filter: drop <NOISE>, <SPOKEN_NOISE>, <UNK>; delete ':' and '*' in words."""
    out = []
    for w in words:
        if w.lower() in _WSJ_DROP:
            continue
        w = w.replace(":", "").replace("*", "")
        if w:
            out.append(w)
    return out


def letters_of(words: Sequence[str]) -> list[str]:
    """wav2letter's LER tokens: characters, words joined by one ``|``, none at the ends."""
    out: list[str] = []
    for i, w in enumerate(words):
        if i:
            out.append(BOUNDARY)
        out.extend(w)
    return out


def normalise(text: str, *, case_fold: bool = False, filter: str | None = None) -> list[str]:
    """Transcript -> words, after the optional case folding and filter."""
    words = text.split()
    if case_fold:
        words = [w.lower() for w in words]
    if filter == "kaldi-wsj":
        words = kaldi_wsj_filter(words)
    elif filter is not None:
        raise W2vtkError(f"unknown filter {filter!r} (known: {', '.join(FILTERS)})")
    return words


def metric_tokens(metric: str, words: list[str], where: str = "") -> list[str]:
    """The token sequence a metric compares: words (wer), letters (ler), 39 phones (per)."""
    if metric == "wer":
        return words
    if metric == "ler":
        return letters_of(words)
    if metric == "per":
        return fold_phones(words, 39, where)
    raise W2vtkError(f"unknown metric {metric!r} (known: {', '.join(METRICS)})")


# --- results ------------------------------------------------------------------------------------

@dataclasses.dataclass
class MetricResult:
    """One metric over a set: totals, and per utterance counts and alignments."""

    name: str                                    # "wer" | "ler" | "per"
    counts: Counts
    partial: bool
    utt_counts: dict[str, Counts]
    alignments: dict[str, list[Pair]]

    @property
    def label(self) -> str:
        return self.name.upper()

    def kaldi_line(self) -> str:
        return self.counts.kaldi_line(self.label, self.partial)


@dataclasses.dataclass
class ScoreResult:
    """Everything ``score`` reports: metric totals, sentence errors, missing ids, speakers."""

    metrics: dict[str, MetricResult]
    num_sent: int
    sent_errors: int
    missing: list[str]
    mode: str
    case_fold: bool = False
    filter: str | None = None
    per_speaker: dict[str, dict[str, Counts]] | None = None
    speaker_utts: dict[str, int] | None = None

    @property
    def ser(self) -> float | None:
        return 100.0 * self.sent_errors / self.num_sent if self.num_sent else None

    def lines(self) -> list[str]:
        """wer.txt: one compute-wer line per metric, then %SER and the 'Scored' line."""
        out = [m.kaldi_line() for m in self.metrics.values()]
        ser = kaldi_percent(self.sent_errors, self.num_sent) if self.num_sent else "0.00"
        out.append(f"%SER {ser} [ {self.sent_errors} / {self.num_sent} ]")
        out.append(f"Scored {self.num_sent} sentences, {len(self.missing)} not present in hyp.")
        return out

    def to_json(self) -> dict:
        metrics = {}
        for name, m in self.metrics.items():
            metrics[name] = {"rate": _round(m.counts.rate), "errors": m.counts.errors,
                             "ins": m.counts.ins, "del": m.counts.dels, "sub": m.counts.subs,
                             "ref_tokens": m.counts.ref_len, "partial": m.partial,
                             "missing": len(self.missing), "line": m.kaldi_line()}
        out = {"metrics": metrics,
               "ser": {"rate": _round(self.ser), "errors": self.sent_errors, "sentences": self.num_sent},
               "mode": self.mode, "case_fold": self.case_fold, "filter": self.filter,
               "missing_ids": self.missing}
        if self.per_speaker is not None:
            out["per_speaker"] = {
                spk: {"utterances": self.speaker_utts[spk],
                      **{name: {"rate": _round(c.rate), "errors": c.errors, "ins": c.ins,
                                "del": c.dels, "sub": c.subs, "ref_tokens": c.ref_len}
                         for name, c in per.items()}}
                for spk, per in self.per_speaker.items()}
        return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


# --- scoring ------------------------------------------------------------------------------------

def _check_metrics(metrics: Sequence[str]) -> list[str]:
    metrics = list(dict.fromkeys(m.lower() for m in metrics))
    if not metrics:
        raise W2vtkError("no metric chosen (choose from wer, ler, per)")
    for m in metrics:
        if m not in METRICS:
            raise W2vtkError(f"unknown metric {m!r} (known: {', '.join(METRICS)})")
    return metrics


def _names(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def score_texts(ref: dict[str, str], hyp: dict[str, str], metrics: Sequence[str] = ("wer",), *,
                case_fold: bool = False, filter: str | None = None, mode: str = "all",
                utt2spk: dict[str, str] | None = None, check_tokens: bool = True,
                ref_name: str = "reference", hyp_name: str = "hypothesis") -> ScoreResult:
    """Score transcripts ``{utt: "words ..."}`` against references; see the module docstring.

    ``metrics``: any of wer, ler, per (each line in that order).  ``mode``: all | present | strict
    (compute-wer's ``--mode``).  ``utt2spk`` adds per-speaker counts.  ``ref_name`` / ``hyp_name``
    name the inputs in error messages.
    """
    metrics = _check_metrics(metrics)
    if mode not in MODES:
        raise W2vtkError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
    if filter is not None and filter not in FILTERS:
        raise W2vtkError(f"unknown filter {filter!r} (known: {', '.join(FILTERS)})")
    unknown = [u for u in hyp if u not in ref]
    if unknown:
        raise W2vtkError(f"{hyp_name}: {len(unknown)} utterance id(s) not in {ref_name}: {_names(unknown)}")
    missing = [u for u in ref if u not in hyp]
    if missing and mode == "strict":
        raise W2vtkError(f"{hyp_name}: no hypothesis for {len(missing)} utterance(s) of {ref_name}: "
                         f"{_names(missing)} (mode strict)")
    scored = [u for u in ref if u in hyp or mode == "all"]
    if not scored:
        raise W2vtkError(f"{hyp_name}: no utterance to score")

    ref_words = {u: normalise(ref[u], case_fold=case_fold, filter=filter) for u in scored}
    hyp_words = {u: normalise(hyp.get(u, ""), case_fold=case_fold, filter=filter) for u in scored}
    toks: dict[str, tuple[dict, dict]] = {}
    for m in metrics:
        r = {u: metric_tokens(m, w, f"{ref_name}: utterance {u!r}") for u, w in ref_words.items()}
        h = {u: metric_tokens(m, w, f"{hyp_name}: utterance {u!r}") for u, w in hyp_words.items()}
        toks[m] = (r, h)

    primary = next(m for m in ("wer", "per", "ler") if m in metrics)
    if check_tokens:
        _token_guard(ref, hyp, *toks[primary], primary, case_fold, filter, hyp_name, ref_name)

    results: dict[str, MetricResult] = {}
    for m in metrics:
        r, h = toks[m]
        utt_counts, alis, total = {}, {}, Counts()
        for u in scored:
            ali = align(r[u], h[u])
            c = counts_of(ali)
            utt_counts[u], alis[u] = c, ali
            total = total + c
        if total.ref_len == 0:
            raise W2vtkError(f"{ref_name}: no reference tokens to score for {m.upper()} "
                             f"(every scored reference is empty{' after filtering' if filter else ''})")
        results[m] = MetricResult(m, total, bool(missing) and mode != "strict", utt_counts, alis)

    r, h = toks[primary]
    sent_errors = sum(1 for u in scored if r[u] != h[u])
    result = ScoreResult(results, len(scored), sent_errors, missing, mode, case_fold, filter)
    if utt2spk is not None:
        no_spk = [u for u in scored if u not in utt2spk]
        if no_spk:
            raise W2vtkError(f"utt2spk: no speaker for {len(no_spk)} utterance(s): {_names(no_spk)}")
        per: dict[str, dict[str, Counts]] = {}
        n_utts: dict[str, int] = {}
        for u in scored:
            spk = utt2spk[u]
            n_utts[spk] = n_utts.get(spk, 0) + 1
            slot = per.setdefault(spk, {m: Counts() for m in metrics})
            for m in metrics:
                slot[m] = slot[m] + results[m].utt_counts[u]
        result.per_speaker = dict(sorted(per.items()))
        result.speaker_utts = n_utts
    return result


def _token_guard(ref: dict, hyp: dict, ref_toks: dict, hyp_toks: dict, metric: str, case_fold: bool,
                 filter: str | None, hyp_name: str, ref_name: str) -> None:
    """Stop when fewer than half of the hypothesis tokens occur anywhere in the reference."""
    vocab = {t for seq in ref_toks.values() for t in seq}
    total = sum(len(seq) for seq in hyp_toks.values())
    found = sum(1 for seq in hyp_toks.values() for t in seq if t in vocab)
    if total == 0 or 2 * found >= total:
        return
    unit = {"wer": "word", "ler": "letter", "per": "phone"}[metric]
    hint = "wrong case or wrong token set?"
    if not case_fold:
        lower_vocab = {t.lower() for t in vocab}
        found_cf = sum(1 for seq in hyp_toks.values() for t in seq if t.lower() in lower_vocab)
        if 2 * found_cf >= total:
            hint = "the case differs from the reference: use --case-fold"
    raise W2vtkError(f"{hyp_name}: only {found} of {total} hypothesis {unit}s ({100.0 * found / total:.0f}%) "
                     f"occur anywhere in {ref_name}: {hint} (--no-token-check scores anyway)")


# --- files --------------------------------------------------------------------------------------

def format_alignment(utt: str, alignment: Sequence[Pair]) -> str:
    """Kaldi per_utt layout (steps/scoring/wer_per_utt_details.pl): ref / hyp / op / #csid lines.

    Gaps are ``***``; ops are C (correct), S, I, D; columns padded to a common width.
    """
    ref_row, hyp_row, op_row = [], [], []
    c = s = i = d = 0
    for r, h in alignment:
        if r is None:
            op, i = "I", i + 1
        elif h is None:
            op, d = "D", d + 1
        elif r != h:
            op, s = "S", s + 1
        else:
            op, c = "C", c + 1
        rt, ht = r if r is not None else "***", h if h is not None else "***"
        width = max(len(rt), len(ht))
        ref_row.append(rt.ljust(width))
        hyp_row.append(ht.ljust(width))
        op_row.append(op.ljust(width))
    return (f"{utt} ref  {' '.join(ref_row)}".rstrip() + "\n"
            + f"{utt} hyp  {' '.join(hyp_row)}".rstrip() + "\n"
            + f"{utt} op   {' '.join(op_row)}".rstrip() + "\n"
            + f"{utt} #csid {c} {s} {i} {d}\n")


def read_utt2spk(path: str | Path) -> dict[str, str]:
    """``utt2spk`` for per-speaker scores (any order, as hypothesis files)."""
    path = Path(path)
    out = read_kv(path, any_order=True, what="utterance id")
    for line_no, (utt, spk) in enumerate(out.items(), start=1):
        if len(spk.split()) != 1:
            raise W2vtkError(f"{path}:{line_no}: expected '<utt-id> <speaker-id>', got {utt} {spk!r}")
    return out


def score_files(ref_path: str | Path, hyp_path: str | Path, metrics: Sequence[str] = ("wer",), *,
                out_dir: str | Path | None = None, case_fold: bool = False, filter: str | None = None,
                mode: str = "all", utt2spk: str | Path | None = None, check_tokens: bool = True,
                write: bool = True) -> ScoreResult:
    """Score a hypothesis ``text`` file against a reference ``text`` file (or data dir) and write reports.

    Writes (atomically; wer.txt last) into ``out_dir`` or, by default, HYP's directory:
    ``wer.txt`` (compute-wer's lines), ``alignments.txt`` (per-utterance alignment of the first of
    wer, per, ler requested) and ``alignments_<metric>.txt`` for the others, ``score.json``
    (per metric: errors, ins, del, sub, ref tokens, rate, partial, missing), and with ``utt2spk``
    ``per_speaker.tsv``.
    """
    ref_path, hyp_path = Path(ref_path), Path(hyp_path)
    if ref_path.is_dir():  # a Kaldi data dir: its text file
        ref_path = ref_path / "text"
    ref = read_transcripts(ref_path)
    hyp = read_transcripts(hyp_path)
    spk = read_utt2spk(utt2spk) if utt2spk is not None else None
    result = score_texts(ref, hyp, metrics, case_fold=case_fold, filter=filter, mode=mode,
                         utt2spk=spk, check_tokens=check_tokens, ref_name=str(ref_path),
                         hyp_name=str(hyp_path))
    if write:
        out = Path(out_dir) if out_dir is not None else hyp_path.parent
        out.mkdir(parents=True, exist_ok=True)
        write_reports(result, out, ref_path=ref_path, hyp_path=hyp_path)
    return result


def report_suffix(hyp_path: Path | None) -> str:
    """"" for ``hyp.txt`` (what ``w2vtk decode`` writes) or no file; ``_<stem>`` for any other
    hypothesis file, so that scoring several hypotheses in one directory keeps one report each
    (``wer_hyp_greedy.txt`` ...), as Kaldi keeps one ``wer_*`` file per scoring."""
    if hyp_path is None or Path(hyp_path).stem == "hyp":
        return ""
    return f"_{Path(hyp_path).stem}"


def report_names(hyp_path: Path | None) -> list[str]:
    """The main report files :func:`write_reports` writes for ``hyp_path`` (wer, alignments, score)."""
    x = report_suffix(hyp_path)
    return [f"wer{x}.txt", f"alignments{x}.txt", f"score{x}.json"]


def write_reports(result: ScoreResult, out_dir: Path, *, ref_path: Path | None = None,
                  hyp_path: Path | None = None) -> None:
    """wer.txt, alignments*.txt, score.json[, per_speaker.tsv] in ``out_dir`` (wer.txt last); for a
    hypothesis file not named hyp.txt each name carries its stem (:func:`report_suffix`)."""
    x = report_suffix(hyp_path)
    order = [m for m in ("wer", "per", "ler") if m in result.metrics]
    for k, name in enumerate(order):
        m = result.metrics[name]
        text = "".join(format_alignment(u, ali) for u, ali in m.alignments.items())
        atomic_write_text(out_dir / (f"alignments{x}.txt" if k == 0 else f"alignments_{name}{x}.txt"), text)
    data = result.to_json()
    data["ref"] = str(ref_path) if ref_path else None
    data["hyp"] = str(hyp_path) if hyp_path else None
    atomic_write_text(out_dir / f"score{x}.json", json.dumps(data, indent=2) + "\n")
    if result.per_speaker is not None:
        names = list(result.metrics)
        rows = ["speaker\tutterances\t" + "\t".join(
            f"{n}\t{n}_errors\t{n}_ins\t{n}_del\t{n}_sub\t{n}_ref_tokens" for n in names)]
        for spk, per in result.per_speaker.items():
            cells = [spk, str(result.speaker_utts[spk])]
            for n in names:
                c = per[n]
                cells += ["" if c.rate is None else kaldi_percent(c.errors, c.ref_len), str(c.errors), str(c.ins),
                          str(c.dels), str(c.subs), str(c.ref_len)]
            rows.append("\t".join(cells))
        atomic_write_text(out_dir / f"per_speaker{x}.tsv", "\n".join(rows) + "\n")
    atomic_write_text(out_dir / f"wer{x}.txt", "\n".join(result.lines()) + "\n")


def score_table(result: ScoreResult, title: str = "score"):
    """A rich Table of the metric totals (rate, errors / ref tokens, ins, del, sub)."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("metric", "rate %", "errors", "ref tokens", "ins", "del", "sub", "utts", "missing"):
        table.add_column(col, justify="left" if col == "metric" else "right", no_wrap=True)
    for m in result.metrics.values():
        c = m.counts
        table.add_row(m.label + (" [PARTIAL]" if m.partial else ""), kaldi_percent(c.errors, c.ref_len), str(c.errors),
                      str(c.ref_len), str(c.ins), str(c.dels), str(c.subs), str(result.num_sent),
                      str(len(result.missing)))
    return table


def speaker_table(result: ScoreResult):
    """A rich Table with one row per speaker: utterances and each metric's rate and errors."""
    from rich.table import Table

    if result.per_speaker is None:
        raise ValueError("no per-speaker results (score with utt2spk)")
    table = Table(title="per speaker")
    table.add_column("speaker")
    table.add_column("utts", justify="right")
    for m in result.metrics.values():
        table.add_column(f"{m.label} %", justify="right")
        table.add_column(f"{m.label} err / ref", justify="right")
    for spk, per in result.per_speaker.items():
        cells = [spk, str(result.speaker_utts[spk])]
        for name in result.metrics:
            c = per[name]
            cells += ["-" if c.rate is None else kaldi_percent(c.errors, c.ref_len), f"{c.errors} / {c.ref_len}"]
        table.add_row(*cells)
    return table
