"""What every corpus preparer shares: skip a finished prep, write the sets, summarise.

Contract for a preparer (``w2vtk/corpora/<corpus>.py``)::

    from w2vtk.corpora.common import finish_prep, start_prep

    def prepare_foo(corpus_dir, out_dir, *, option=...) -> dict | None:
        signature = {"corpus": "foo", "corpus_dir": str(Path(corpus_dir).resolve()),
                     "option": option, "version": 1}
        if start_prep(out_dir, signature):       # done before with the same arguments: skip
            return None
        ... read the corpus, raise W2vtkError on a wrong layout ...
        sets = {"train": dict(wav_scp=..., text=..., utt2spk=..., utt2dur=...,
                              spk2gender=..., extra={"text.words": ...}),
                "test": dict(...)}
        return finish_prep(out_dir, "foo", sets, lm_lines=iter_of_lm_sentences,
                           expected_counts={"train": 3696, "test": 192}, signature=signature)

- A combined set (LibriSpeech ``train_960``) is just one more entry of ``sets`` whose tables are
  the merged dicts of its parts (ids must not collide); write nothing outside ``finish_prep``, or
  it would not be covered by the done marker.
- ``signature``: anything JSON-serialisable (paths become strings) that identifies the run:
  corpus path, options, and a version number to bump when the preparer's output changes.
- :func:`start_prep` returns True when ``OUT_DIR/local/prep_done.json`` holds the same signature
  and every set dir it lists still exists (print "already prepared" and return).  Otherwise it
  removes any old marker, so a run cut off midway can never look finished, and returns False.
- :func:`finish_prep` (each set value is the keyword arguments of
  :func:`w2vtk.data.write_data_dir`):
  1. removes the marker and any stale ``OUT_DIR/<set>`` left by an earlier run (only a directory
     that looks like a data dir or is empty; anything else is refused with an error);
  2. writes every set with ``write_data_dir`` (sorted, spk2utt derived, validated before writing:
     an invalid table raises :class:`W2vtkError` naming file and key);
  3. writes ``lm_lines`` (an iterable of sentences, streamed, blank ones skipped; training
     transcripts plus corpus LM text, never a dev/test sentence) atomically to
     ``OUT_DIR/local/lm_text.txt``;
  4. compares utterance counts with ``expected_counts`` (set -> count; sets missing from it are
     not checked): a mismatch prints a yellow ``warning:`` line naming the set, never an error,
     since partial corpora are legitimate;
  5. prints a rich table (set, utterances, speakers, hours; hours from utt2dur or segments, "-"
     without either) and writes the same as ``OUT_DIR/local/prep_summary.json``;
  6. writes the done marker last, and returns the summary dict.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping

from w2vtk import __version__
from w2vtk.data import DataDir, write_data_dir
from w2vtk.data.kaldi_dir import KNOWN_FILES, infer_role, write_role
from w2vtk.errors import W2vtkError
from w2vtk.io import atomic_open, atomic_write_text
from w2vtk.progress import LoggedConsole

DONE_MARKER = Path("local") / "prep_done.json"
SUMMARY = Path("local") / "prep_summary.json"
LM_TEXT = Path("local") / "lm_text.txt"


def _canonical(signature: Mapping[str, Any]) -> Any:
    """The signature as plain JSON data (paths -> str, tuples -> lists), for comparison."""
    return json.loads(json.dumps(signature, sort_keys=True, default=str))


def is_prep_done(out_dir: str | Path, signature: Mapping[str, Any]) -> bool:
    """True when ``out_dir`` holds a finished prep made with the same ``signature``."""
    out_dir = Path(out_dir)
    marker = out_dir / DONE_MARKER
    try:
        done = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # unreadable or garbled marker: not done
        return False
    if not isinstance(done, dict) or done.get("signature") != _canonical(signature):
        return False
    sets = done.get("sets", [])
    if not isinstance(sets, list) or not all(isinstance(name, str) for name in sets):
        return False
    return all((out_dir / name / "utt2spk").is_file() for name in sets) \
        and (out_dir / LM_TEXT).is_file()


def start_prep(out_dir: str | Path, signature: Mapping[str, Any]) -> bool:
    """True (skip) when the same prep is already finished; else drop any stale marker -> False."""
    if is_prep_done(out_dir, signature):
        return True
    (Path(out_dir) / DONE_MARKER).unlink(missing_ok=True)
    return False


def _remove_stale_set(set_dir: Path) -> None:
    if not set_dir.exists():
        return
    if not set_dir.is_dir():
        raise W2vtkError(f"{set_dir}: exists and is not a directory; remove it first")
    names = {p.name for p in set_dir.iterdir()}
    if names and not names & set(KNOWN_FILES):
        raise W2vtkError(f"{set_dir}: exists and does not look like a data directory; "
                         "refusing to replace it (choose another OUT_DIR or remove it)")
    shutil.rmtree(set_dir)


def set_summary(dd: DataDir) -> dict[str, Any]:
    """{"utterances", "speakers", "hours" (None without utt2dur/segments)} of a data dir."""
    durations = dd.durations()
    hours = None if durations is None else round(sum(durations.values()) / 3600.0, 6)
    return {"utterances": len(dd.utt2spk), "speakers": len(dd.spk2utt), "hours": hours}


def finish_prep(out_dir: str | Path, corpus: str, sets: Mapping[str, Mapping[str, Any]],
                lm_lines: Iterable[str], expected_counts: Mapping[str, int] | None = None,
                signature: Mapping[str, Any] | None = None, console=None) -> dict[str, Any]:
    """Write the prepared sets, the LM text, the summary and the done marker (see module doc).

    Returns ``{"corpus", "sets": {name: {"utterances", "speakers", "hours", "expected"}},
    "lm_text": {"path", "lines"}, "warnings": [...]}`` (also in local/prep_summary.json).
    """
    from rich.table import Table

    console = console or LoggedConsole()
    out_dir = Path(out_dir)
    for name in sets:
        if not name or "/" in name or name.startswith(".") or name == "local":
            raise W2vtkError(f"{corpus}: invalid set name {name!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / DONE_MARKER).unlink(missing_ok=True)
    for name in sets:
        _remove_stale_set(out_dir / name)

    summary_sets: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    expected_counts = expected_counts or {}
    for name, kwargs in sets.items():
        dd = write_data_dir(out_dir / name, **kwargs)
        write_role(out_dir / name, infer_role(name))  # decode --tune refuses a test set by this
        info = set_summary(dd)
        info["expected"] = expected_counts.get(name)
        summary_sets[name] = info
        if info["expected"] is not None and info["expected"] != info["utterances"]:
            msg = (f"{corpus} set {name}: {info['utterances']} utterances, expected "
                   f"{info['expected']} (incomplete or modified corpus?)")
            warnings.append(msg)
            console.print(f"warning: {msg}", style="yellow", markup=False,
                          highlight=False, soft_wrap=True)

    lm_path = out_dir / LM_TEXT
    num_lines = 0
    with atomic_open(lm_path, "w", make_parents=True) as fh:
        for line in lm_lines:
            line = " ".join(line.split())
            if line:
                fh.write(line + "\n")
                num_lines += 1

    table = Table(title=f"{corpus} -> {out_dir}")
    for col in ("set", "utterances", "speakers", "hours"):
        table.add_column(col, justify="left" if col == "set" else "right")
    for name, info in summary_sets.items():
        hours = "-" if info["hours"] is None else f"{info['hours']:.3f}"
        table.add_row(name, str(info["utterances"]), str(info["speakers"]), hours)
    console.print(table)
    console.print(f"LM text: {lm_path} ({num_lines} lines)")

    summary = {"corpus": corpus, "sets": summary_sets,
               "lm_text": {"path": str(LM_TEXT), "lines": num_lines}, "warnings": warnings}
    atomic_write_text(out_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
    marker = {"corpus": corpus, "signature": _canonical(signature or {}), "sets": list(sets),
              "w2vtk_version": __version__}
    atomic_write_text(out_dir / DONE_MARKER, json.dumps(marker, indent=2) + "\n")
    return summary
