"""Whole-directory operations, after Kaldi's utils/fix_data_dir.sh, subset_data_dir.sh and
combine_data.sh: fix (keep what every file agrees on), subset (speaker-balanced, seeded) and
combine (concatenate, refusing duplicate ids)."""

from __future__ import annotations

import math
import random
import shutil
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from w2vtk.data.checks import FORBIDDEN_TOKENS, check_tables, is_extra_name, is_positive, spk2utt_from_utt2spk
from w2vtk.data.kaldi_dir import (BACKUP_DIR, DataDir, _checked_dir, _raise_problems, _read_dir, _table_files,
                                  format_seconds, iter_text_lines, load_data_dir, write_kv,
                                  write_tables)
from w2vtk.data.kaldi_dir import ROLE_FILE, read_kv, read_role, write_role
from w2vtk.errors import W2vtkError

_PER_UTT = ("text", "utt2dur", "utt2num_frames", "feats.scp")


def _valid_segment(value: str, wav: Mapping[str, str]) -> bool:
    fields = value.split()
    if len(fields) != 3 or fields[0] not in wav:
        return False
    try:
        start, end = float(fields[1]), float(fields[2])
    except ValueError:
        return False
    return math.isfinite(start) and math.isfinite(end) and 0 <= start < end


def fix_data_dir(path: str | Path) -> tuple[int, int]:
    """Repair a data directory in place, as Kaldi's fix_data_dir.sh; returns (kept, total)
    utterances, total being the distinct utterances of the original utt2spk.

    Copies every table file to ``<dir>/.backup/`` first, then keeps the utterances that are valid
    and present in every per-utterance file (utt2spk, text, segments or wav.scp, utt2dur,
    utt2num_frames, feats.scp and extras such as text.words), the recordings their segments use,
    and the speakers they belong to (spk2gender, cmvn.scp).  Entries that break the contract are
    dropped (utt2spk lines without exactly one speaker, text with ``<s>``/``</s>``/``#0``,
    segments with end <= start or an unknown recording, durations or frame counts <= 0, wav.scp
    paths starting with ``~``).  CRs and blank lines are removed, duplicate keys keep their first
    line, everything is re-sorted and spk2utt is rebuilt.

    What fixing cannot repair (utt2spk not sorted by speaker, non-UTF-8) is left for
    :func:`validate_data_dir` to report or raises :class:`W2vtkError`.
    """
    path = _checked_dir(path)
    ignored: list[str] = []
    tables, _ = _read_dir(path, ignored, repair=True)
    for name in ("wav.scp", "utt2spk"):
        if name not in tables:
            raise W2vtkError(f"{path}/{name}: missing (required; nothing to fix from)")
    total = len(tables["utt2spk"])
    wav = {r: v for r, v in tables["wav.scp"].items() if v and not v.startswith("~")}
    utt2spk = {u: v for u, v in tables["utt2spk"].items() if len(v.split()) == 1}
    keep = _valid_everywhere(tables, wav, utt2spk)
    if not keep:
        raise W2vtkError(f"{path}: no utterance is present and valid in every file "
                         f"({', '.join(sorted(tables))}); nothing written")
    new = _kept_tables(tables, wav, utt2spk, keep)

    backup = path / BACKUP_DIR
    backup.mkdir(exist_ok=True)
    for name in _table_files(path):
        shutil.copy2(path / name, backup / name)
    for name in sorted(new):
        write_kv(path / name, new[name])
    return len(keep), total


def _valid_everywhere(tables: dict[str, dict[str, str]], wav: dict[str, str], utt2spk: dict[str, str]) -> set[str]:
    """fix_data_dir's first half: drops invalid entries from ``tables`` (in place) and returns the
    utterances valid in every per-utterance file whose speaker is in every speaker table."""
    keep = set(utt2spk)
    if "text" in tables:
        tables["text"] = {u: v for u, v in tables["text"].items()
                          if not (set(v.split()) & FORBIDDEN_TOKENS)}
    if "segments" in tables:
        tables["segments"] = {u: v for u, v in tables["segments"].items()
                              if _valid_segment(v, wav)}
        keep &= set(tables["segments"])
    else:
        keep &= set(wav)
    for name, integer in (("utt2dur", False), ("utt2num_frames", True)):
        if name in tables:
            tables[name] = {u: v for u, v in tables[name].items() if is_positive(v, integer)}
    if "feats.scp" in tables:
        tables["feats.scp"] = {u: v for u, v in tables["feats.scp"].items() if v}
    for name in tables:
        if name in _PER_UTT or is_extra_name(name):
            keep &= set(tables[name])
    # Speaker tables as Kaldi's filter_speakers: a speaker missing from spk2gender / cmvn.scp
    # (or with a gender other than m/f) loses its utterances, else the fixed dir fails validation.
    for name in ("spk2gender", "cmvn.scp"):
        if name in tables:
            ok = {s for s, v in tables[name].items() if v and (name != "spk2gender" or v in ("m", "f"))}
            keep = {u for u in keep if utt2spk[u] in ok}
    return keep


def _kept_tables(tables: dict[str, dict[str, str]], wav: dict[str, str], utt2spk: dict[str, str],
                 keep: set[str]) -> dict[str, dict[str, str]]:
    """fix_data_dir's second half: every table cut to the kept utterances, their recordings and
    speakers; spk2utt rebuilt."""
    new: dict[str, dict[str, str]] = {}
    new["utt2spk"] = {u: utt2spk[u] for u in keep}
    for name in tables:
        if name in _PER_UTT or is_extra_name(name) or name == "segments":
            new[name] = {u: v for u, v in tables[name].items() if u in keep}
    if "segments" in tables:
        recos = {new["segments"][u].split()[0] for u in keep}
    else:
        recos = keep
    new["wav.scp"] = {r: v for r, v in wav.items() if r in recos}
    for name in ("reco2dur", "reco2file_and_channel"):
        if name in tables:
            new[name] = {r: v for r, v in tables[name].items() if r in recos}
    speakers = set(new["utt2spk"].values())
    if "spk2gender" in tables:
        new["spk2gender"] = {s: v for s, v in tables["spk2gender"].items()
                             if s in speakers and v in ("m", "f")}
    if "cmvn.scp" in tables:
        new["cmvn.scp"] = {s: v for s, v in tables["cmvn.scp"].items() if s in speakers}
    new["spk2utt"] = spk2utt_from_utt2spk(new["utt2spk"])
    return new


# --------------------------------------------------------------------------------------------
# subset
# --------------------------------------------------------------------------------------------

def balanced_order(speakers: Mapping[str, Sequence[str]], seed: int = 0) -> list[str]:
    """All utterances in a seeded, speaker-balanced order.

    The speakers (sorted, then shuffled with ``random.Random(seed)``) take turns; each turn a
    speaker gives its next utterance from its own shuffled list, and a speaker with none left is
    skipped.  Any prefix of the result therefore has per-speaker counts that differ by at most
    one, except for speakers that ran out.  Same input and seed -> same order.
    """
    rng = random.Random(seed)
    order = sorted(speakers)
    rng.shuffle(order)
    queues = []
    for spk in order:
        utts = sorted(speakers[spk])
        rng.shuffle(utts)
        queues.append(utts)
    out: list[str] = []
    depth = 0
    while True:
        took = False
        for queue in queues:
            if depth < len(queue):
                out.append(queue[depth])
                took = True
        if not took:
            return out
        depth += 1


def _read_spk_list(spk_list: str | Path | Iterable[str]) -> list[str]:
    if isinstance(spk_list, (str, Path)):
        out = []
        for _, line in iter_text_lines(spk_list):
            fields = line.split()
            if fields:
                out.append(fields[0])  # Kaldi's --spk-list takes the first field of each line
        if not out:
            raise W2vtkError(f"{spk_list}: speaker list is empty")
        return out
    out = list(spk_list)
    if not out:
        raise W2vtkError("subset: speaker list is empty")
    return out


def _tables_of(dd: DataDir) -> dict[str, dict[str, str]]:
    tables = {"wav.scp": dd.wav_scp, "utt2spk": dd.utt2spk}
    if dd.text or (dd.path / "text").exists():
        tables["text"] = dd.text
    for name, table in (("segments", dd.segments), ("utt2dur", dd.utt2dur),
                        ("utt2num_frames", dd.utt2num_frames), ("feats.scp", dd.feats_scp),
                        ("spk2gender", dd.spk2gender)):
        if table is not None:
            tables[name] = table
    tables.update(dd.extra)
    return tables


def _write_selected(tables: dict[str, dict[str, str]], out: Path, keep: set[str],
                    src: Path) -> DataDir:
    """Write the tables restricted to utterances ``keep`` (with their recordings and speakers)."""
    src_reco2dur = read_kv(src / "reco2dur") if (src / "reco2dur").is_file() else None
    per_utt = {name: {u: v for u, v in t.items() if u in keep} for name, t in tables.items()
               if name in ("text", "utt2spk", "segments") + _PER_UTT or is_extra_name(name)}
    if "segments" in per_utt:
        recos = {v.split()[0] for v in per_utt["segments"].values()}
    else:
        recos = keep
    speakers = set(per_utt["utt2spk"].values())
    spk2gender = tables.get("spk2gender")
    reco2dur = {r: v for r, v in src_reco2dur.items() if r in recos} if src_reco2dur else None
    kept = {**per_utt, "wav.scp": {r: v for r, v in tables["wav.scp"].items() if r in recos},
            "spk2gender": {s: g for s, g in spk2gender.items() if s in speakers} if spk2gender else None,
            "reco2dur": reco2dur}
    dd = write_tables(out, kept)
    # Tables write_data_dir does not own: per-speaker CMVN stats and the recording->file map
    # follow the kept speakers / recordings, as in Kaldi's subset_data_dir.sh.
    for name, keys in (("cmvn.scp", speakers), ("reco2file_and_channel", recos)):
        if (src / name).is_file():
            write_kv(out / name, {k: v for k, v in read_kv(src / name).items() if k in keys})
        else:
            (out / name).unlink(missing_ok=True)
    return dd


def subset_data_dir(src: str | Path, out: str | Path, *, hours: float | None = None,
                    utts: int | None = None, spk_list: str | Path | Iterable[str] | None = None,
                    seed: int = 0) -> DataDir:
    """Write a subset of data dir ``src`` to ``out`` (every table kept in step); returns it.

    Exactly one of:

    - ``utts=N``: the first N utterances of :func:`balanced_order` (speakers take turns, so the
      per-speaker counts differ by at most one, as in Kaldi's balanced choice; which speakers and
      which of their utterances are picked depends only on ``seed``);
    - ``hours=H``: the shortest prefix of that same order that reaches H hours (at most one
      utterance over); durations come from utt2dur, else segments;
    - ``spk_list``: every utterance of the listed speakers (a file with one speaker id first on
      each line, like Kaldi's ``--spk-list``, or an iterable of ids).

    Asking for more than ``src`` holds, an unknown speaker or a missing duration source raises
    :class:`W2vtkError` naming it.
    """
    chosen = [x is not None for x in (hours, utts, spk_list)]
    if sum(chosen) != 1:
        raise W2vtkError("subset: give exactly one of hours, utts, spk_list")
    src_path = _checked_dir(src)
    out = Path(out)
    if out.resolve() == src_path.resolve():
        raise W2vtkError(f"subset: output {out} is the source directory")
    dd = load_data_dir(src_path, require_text=False)
    tables = _tables_of(dd)
    speakers = dd.speakers()
    if spk_list is not None:
        wanted = _read_spk_list(spk_list)
        unknown = [s for s in wanted if s not in speakers]
        if unknown:
            raise W2vtkError(f"subset: {len(unknown)} speaker(s) not in {src_path}/spk2utt: "
                             f"{', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''}")
        keep = {u for s in wanted for u in speakers[s]}
    elif utts is not None:
        if utts <= 0:
            raise W2vtkError(f"subset: --utts must be > 0, got {utts}")
        if utts > len(dd.utt2spk):
            raise W2vtkError(f"subset: asked for {utts} utterances but {src_path} has "
                             f"{len(dd.utt2spk)}")
        keep = set(balanced_order(speakers, seed)[:utts])
    else:
        assert hours is not None
        if not (hours > 0 and math.isfinite(hours)):
            raise W2vtkError(f"subset: --hours must be > 0, got {hours}")
        durations = dd.durations()
        if durations is None:
            raise W2vtkError(f"subset: {src_path} has neither utt2dur nor segments; "
                             "--hours needs durations")
        available = sum(durations.values())
        target = hours * 3600.0
        if target > available + 1e-6:
            raise W2vtkError(f"subset: asked for {hours:g} h but {src_path} has "
                             f"{available / 3600:.4f} h")
        keep = set()
        total = 0.0
        for utt in balanced_order(speakers, seed):
            if total >= target - 1e-9:
                break
            keep.add(utt)
            total += durations[utt]
    out_dd = _write_selected(tables, out, keep, src_path)
    _carry_role([src_path], out)
    return out_dd


# --------------------------------------------------------------------------------------------
# combine
# --------------------------------------------------------------------------------------------

_COMBINED = ("wav.scp", "text", "utt2spk", "segments", "utt2dur", "utt2num_frames", "feats.scp",
             "spk2gender", "reco2dur")


def combine_data_dirs(out: str | Path, dirs: Sequence[str | Path]) -> list[str]:
    """Concatenate data dirs into ``out``, as Kaldi's combine_data.sh; returns warning lines.

    Every source must be valid.  A table present in every source is combined; one missing from
    some sources is left out of ``out`` with a warning naming the sources that lack it (spk2utt is
    rebuilt, cmvn.scp is never combined).  When only some sources have ``segments``, the others
    get whole-recording segments from their utt2dur (an error if they have none).  An utterance
    id in two sources is an error naming the ids; a recording or speaker present in several
    sources must have the same wav.scp entry / gender everywhere.
    """
    if not dirs:
        raise W2vtkError("combine: no source directories given")
    out = Path(out)
    sources = [_checked_dir(d) for d in dirs]
    for d in sources:
        if d.resolve() == out.resolve():
            raise W2vtkError(f"combine: output {out} is also a source")
    if len({d.resolve() for d in sources}) != len(sources):
        raise W2vtkError("combine: the same source directory is given twice")
    all_tables = []
    for d in sources:
        problems: list[str] = []
        tables, lines = _read_dir(d, problems)
        problems.extend(check_tables(tables, lines, require_text=False))
        if problems:
            _raise_problems(d, problems)
        all_tables.append(tables)
    warnings: list[str] = []
    kept_names = _combinable_tables(out, sources, all_tables, warnings)
    merged = _merge_tables(sources, all_tables, kept_names)
    write_tables(out, merged)
    _carry_role([Path(d) for d in dirs], Path(out))
    return warnings


def _combinable_tables(out: Path, sources: list[Path], all_tables: list[dict], warnings: list[str]) -> list[str]:
    """The table names every source has (others are warned about and left out); sources without
    segments get whole-recording ones when others have segments (in place)."""
    names = set()
    for tables in all_tables:
        names.update(n for n in tables if n in _COMBINED or is_extra_name(n))
    with_segments = [t for t in all_tables if "segments" in t]
    if with_segments and len(with_segments) < len(all_tables):
        for d, tables in zip(sources, all_tables):
            if "segments" in tables:
                continue
            if "utt2dur" not in tables:
                raise W2vtkError(f"combine: {d} has no segments and no utt2dur, but other sources "
                                 "have segments (whole-recording segments need utt2dur)")
            tables["segments"] = {u: f"{u} 0 {tables['utt2dur'][u]}" for u in tables["utt2spk"]}
    if any("cmvn.scp" in t for t in all_tables):
        warnings.append("combine: cmvn.scp is not combined (recompute it for the combined set)")
    kept_names = []
    for name in sorted(names):
        lacking = [str(d) for d, t in zip(sources, all_tables) if name not in t]
        if lacking:
            warnings.append(f"combine: {name} missing in {', '.join(lacking)}; "
                            f"not written to {out}")
        else:
            kept_names.append(name)
    return kept_names


def _merge_tables(sources: list[Path], all_tables: list[dict], kept_names: list[str]) -> dict[str, dict[str, str]]:
    """The union of each kept table; W2vtkError on an utterance id in two sources or a recording /
    speaker whose entries differ between sources."""
    merged: dict[str, dict[str, str]] = {name: {} for name in kept_names}
    owner: dict[str, dict[str, Path]] = {name: {} for name in kept_names}
    duplicate_utts: dict[str, list[str]] = {}
    conflicts: list[str] = []
    for d, tables in zip(sources, all_tables):
        for name in kept_names:
            by_reco = name in ("reco2dur",) or (name == "wav.scp" and "segments" in kept_names)
            for key, value in tables[name].items():
                if key in merged[name]:
                    if name == "spk2gender" or by_reco:
                        if merged[name][key] != value:
                            conflicts.append(f"{name} {key!r} differs between "
                                             f"{owner[name][key]} and {d}")
                    elif name == "utt2spk":
                        duplicate_utts.setdefault(key, [str(owner[name][key])]).append(str(d))
                    continue
                merged[name][key] = value
                owner[name][key] = d
    if duplicate_utts:
        shown = "; ".join(f"{u} ({', '.join(ds)})" for u, ds in sorted(duplicate_utts.items())[:5])
        more = ", ..." if len(duplicate_utts) > 5 else ""
        raise W2vtkError(f"combine: {len(duplicate_utts)} utterance id(s) in more than one "
                         f"source: {shown}{more}")
    if conflicts:
        raise W2vtkError(f"combine: {conflicts[0]}" +
                         (f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""))
    return merged


__all__ = ["fix_data_dir", "subset_data_dir", "combine_data_dirs", "balanced_order",
           "format_seconds"]


def _carry_role(sources: Sequence[Path], out: Path) -> None:
    """A subset or combination keeps its sources' role; any test source makes it a test set."""
    roles = {read_role(s) for s in sources}
    role = "test" if "test" in roles else (roles.pop() if len(roles) == 1 else None)
    if role is not None:
        write_role(out, role)
    else:
        (Path(out) / ROLE_FILE).unlink(missing_ok=True)
