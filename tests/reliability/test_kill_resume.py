"""Kill every stage at fault points drawn from a seeded list, then rerun it (issue 8, item 2).

For each (stage, fault point, N) of :func:`reliability_resume_helpers.seeded_faults` the CLI runs in
a subprocess with ``W2VTK_FAULT=point:N`` and must die by SIGKILL; then:

(b) right after the kill, every file under its final name is complete: checkpoints load, archives,
    records, hypotheses and tuning results equal the uninterrupted run's (or are absent); only
    hidden ``.NAME.*.tmp`` temporaries may be partial, and no worker process outlives the run;
(a) the rerun without the fault finishes with exactly the uninterrupted run's model / archive /
    hypotheses (state dicts, ark bytes, hyp.txt bytes, trial rows except timings);
(c) at most one checkpoint interval (pretrain ``save_every``, train-am ``save_interval_updates``),
    one shard or one tuning trial is redone, and the rerun leaves no temporary behind.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
import yaml

from reliability_resume_helpers import (AM_SAVE_INTERVAL, EDGE_FAULTS, EXTRACT_SHARDS, PRETRAIN_SAVE_EVERY, assert_killed,
                                        assert_ok, cli, compare_am, compare_decode, compare_extract,
                                        compare_pretrain, decode_cmd, decode_equal, extract_cmd, extract_equal,
                                        hidden_files, inputs, leftover_processes, load_ckpt, norm_text,
                                        pretrain_cmd, read_jsonl, references, seeded_faults, temporaries,
                                        train_am_cmd, trial_rows, visible_files)

CASES = seeded_faults(0) + EDGE_FAULTS


def _cases(*stages):
    return [pytest.param(p, n, id=f"{s}-{p}:{n}") for s, p, n in CASES if s in stages]


@pytest.fixture(scope="module")
def inp(tmp_path_factory):
    return inputs(tmp_path_factory)


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    return references(tmp_path_factory)


def _kill(cmd: list, fault: str) -> None:
    marker = uuid.uuid4().hex
    proc = cli(cmd, fault=fault, marker=marker)
    assert_killed(proc, fault)
    assert leftover_processes(marker) == [], f"{fault}: processes outlived the killed run"


def _only_temporaries_hidden(root: Path, allowed_dirs: tuple[str, ...] = ()) -> None:
    """Hidden files are temporaries, or live in an allowed hidden work dir."""
    for p in hidden_files(root):
        rel = p.relative_to(root)
        if rel.parts[0] in allowed_dirs and len(rel.parts) > 1:
            continue
        assert p in temporaries(root), f"unexpected hidden file {rel}"


# ------------------------------------------------------------------------------------ pretrain


def _check_pretrain_after_kill(exp: Path, ref: Path) -> None:
    for f in visible_files(exp):
        if f.name == "config.yaml":
            assert f.read_text() == (ref / "config.yaml").read_text()
        elif f.name == "metrics.jsonl":
            for line in f.read_text().splitlines():
                json.loads(line)  # every line whole: written and fsynced one record at a time
        elif re.fullmatch(r"checkpoint_(\d+|last|best)\.pt", f.name):
            ck = load_ckpt(f)
            m = re.fullmatch(r"checkpoint_(\d+)\.pt", f.name)
            if m:
                assert ck["train_state"]["num_updates"] == int(m.group(1))
        else:
            raise AssertionError(f"unexpected file {f} after the kill")
    _only_temporaries_hidden(exp)


@pytest.mark.parametrize("point,n", _cases("pretrain"))
def test_pretrain_killed_then_resumed(point, n, inp, refs, tmp_path):
    exp = tmp_path / "exp"
    cmd = pretrain_cmd(inp, exp)
    _kill(cmd, f"{point}:{n}")
    _check_pretrain_after_kill(exp, refs["pretrain"])
    logged = [r["update"] for r in read_jsonl(exp / "metrics.jsonl") if r.get("split") == "train"]
    # updates applied before the kill (train_step fires after update n, before it is logged)
    done = max(logged, default=0) + (1 if point == "train_step" else 0)
    if point == "train_step":
        assert done == n
    had_ckpt = (exp / "checkpoint_last.pt").is_file()

    assert_ok(cli(cmd))
    compare_pretrain(refs["pretrain"], exp)
    start = [r for r in read_jsonl(exp / "metrics.jsonl") if r.get("split") == "start"][-1]
    assert start["resumed"] == had_ckpt
    assert 0 <= done - start["update"] <= PRETRAIN_SAVE_EVERY, (done, start)
    assert temporaries(exp) == [], "the resumed run left the killed run's temporaries behind"


# ------------------------------------------------------------------------------------ train-am

AM_COPIES = ("tokens.txt", "lang.yaml", "feats.yaml", "config.yaml", "global_cmvn.npz")


def _check_am_after_kill(exp: Path, ref: Path) -> None:
    for f in visible_files(exp):
        if f.name in AM_COPIES:
            assert f.read_bytes() == (ref / f.name).read_bytes(), f.name
        elif f.name == "metrics.jsonl":
            for line in f.read_text().splitlines():
                json.loads(line)
        elif f.suffix == ".pt":
            ck = load_ckpt(f)
            assert ck["kind"] == "w2vtk-am"
        else:
            raise AssertionError(f"unexpected file {f} after the kill")
    _only_temporaries_hidden(exp)


@pytest.mark.parametrize("point,n", _cases("train-am"))
def test_train_am_killed_then_resumed(point, n, inp, refs, tmp_path):
    exp = tmp_path / "exp"
    cmd = train_am_cmd(inp, exp)
    _kill(cmd, f"{point}:{n}")
    _check_am_after_kill(exp, refs["train-am"])
    if point == "train_step":
        done = n
    elif point == "data_load":
        done = n - 1  # one micro-batch per update: the n-th batch belongs to update n
    elif point == "ckpt_write":
        # the checkpoint being written when the kill came (complete bytes in the temporary file)
        tmps = temporaries(exp)
        assert len(tmps) == 1, tmps
        done = int(load_ckpt(tmps[0])["updates"])
    else:
        done = 0
    had_ckpt = (exp / "checkpoint_last.pt").is_file()

    proc = cli(cmd)
    assert_ok(proc)
    compare_am(refs["train-am"], exp)
    m = re.search(r"resuming \S+ at epoch (\d+), update (\d+)", " ".join((proc.stdout + proc.stderr).split()))
    start = int(m.group(2)) if m else 0
    assert bool(m) == had_ckpt
    assert 0 <= done - start <= AM_SAVE_INTERVAL, (done, start)
    assert temporaries(exp) == [], "the resumed run left the killed run's temporaries behind"


# ------------------------------------------------------------------------------------ extract


def _check_extract_after_kill(out: Path, ref: Path) -> None:
    ref_names = {str(p.relative_to(ref)) for p in visible_files(ref)}
    for f in visible_files(out):
        name = str(f.relative_to(out))
        assert name in ref_names, f"unexpected file {name}"
        assert extract_equal(ref, out, name), f"{name} looks complete but differs from the uninterrupted run's"
    work = out / ".feats.work"
    for f in (sorted(work.iterdir()) if work.is_dir() else []):
        if f in temporaries(out):
            continue
        assert (ref / ".feats.work" / f.name).is_file(), f.name
        assert norm_text(f, out) == norm_text(ref / ".feats.work" / f.name, ref), f.name
    _only_temporaries_hidden(out, allowed_dirs=(".feats.work",))


@pytest.mark.parametrize("point,n", _cases("extract"))
def test_extract_killed_then_resumed(point, n, inp, refs, tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    ckpt = refs["pretrain"] / "checkpoint_last.pt"
    _kill(extract_cmd(inp, ckpt, out), f"{point}:{n}")
    _check_extract_after_kill(out, refs["extract"])
    recorded = {}
    for k in range(1, EXTRACT_SHARDS + 1):
        if (out / ".feats.work" / f"shard.{k}.json").is_file():
            st = (out / f"feats.{k}.ark").stat()
            recorded[k] = (st.st_ino, st.st_mtime_ns)
    finished_unrecorded = [k for k in range(1, EXTRACT_SHARDS + 1)
                           if (out / f"feats.{k}.ark").is_file() and k not in recorded]
    assert len(finished_unrecorded) <= 1  # one process: at most the shard it was finishing
    if point == "shard_done":
        assert len(recorded) == n - 1 and finished_unrecorded == [n]

    assert_ok(cli(extract_cmd(inp, ckpt, out, resume=True)))
    compare_extract(refs["extract"], out)
    for k, stamp in recorded.items():  # finished shards are not redone
        st = (out / f"feats.{k}.ark").stat()
        assert (st.st_ino, st.st_mtime_ns) == stamp, f"shard {k} was redone"
    assert temporaries(out) == []


# ------------------------------------------------------------------------------------ decode


def _check_decode_after_kill(out: Path, ref: Path) -> None:
    ref_names = {p.name for p in visible_files(ref)}
    for f in visible_files(out):
        assert f.name in ref_names, f"unexpected file {f.name}"
        if f.name == "trials.json":
            ref_rows = trial_rows(ref / "trials.json")
            for i, row in enumerate(trial_rows(f)):
                assert row is None or row == ref_rows[i], f"trial {i} differs"
        else:
            assert decode_equal(ref, out, f.name), f"{f.name} looks complete but differs from the uninterrupted run's"
    if (out / "emissions.yaml").is_file():  # the cache is marked complete last
        assert (out / "emissions.ark").is_file() and (out / "emissions.scp").is_file()
    _only_temporaries_hidden(out)


def _raw_rows(path: Path) -> list:
    return json.loads(path.read_text())["rows"] if path.is_file() else []


@pytest.mark.parametrize("point,n", _cases("decode-tune"))
def test_decode_tune_killed_then_resumed(point, n, inp, refs, tmp_path):
    out = tmp_path / "dec"
    cmd = decode_cmd(inp, out, tune=True)
    _kill(cmd, f"{point}:{n}")
    _check_decode_after_kill(out, refs["decode-tune"])
    before = [r for r in _raw_rows(out / "trials.json") if r]
    if point == "decode_trial":
        assert len(before) == n  # the kill came right after the n-th trial was recorded

    assert_ok(cli(cmd))
    compare_decode(refs["decode-tune"], out)
    after = {r["trial"]: r for r in _raw_rows(out / "trials.json")}
    for r in before:  # recorded trials are kept, timings included: not decoded again
        assert after[r["trial"]] == r
    assert yaml.safe_load((out / "best.yaml").read_text()) == yaml.safe_load(
        (refs["decode-tune"] / "best.yaml").read_text())
    assert temporaries(out) == []


@pytest.mark.parametrize("point,n", _cases("decode"))
def test_decode_killed_then_resumed(point, n, inp, refs, tmp_path):
    out = tmp_path / "dec"
    cmd = decode_cmd(inp, out, tune=False)
    _kill(cmd, f"{point}:{n}")
    _check_decode_after_kill(out, refs["decode"])
    assert_ok(cli(cmd))
    compare_decode(refs["decode"], out)
    assert (out / "hyp.txt").read_text().split()  # the reference hypotheses are not all empty
    assert temporaries(out) == []


def test_the_fault_list_covers_every_point_and_stage():
    from w2vtk.faults import POINTS

    assert {p for _, p, _ in CASES} == set(POINTS)
    assert {s for s, _, _ in CASES} == {"pretrain", "train-am", "extract", "decode-tune", "decode"}
    assert CASES == seeded_faults(0) + EDGE_FAULTS  # seeded: the same list every run
