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

import functools
import json
import re
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from reliability_resume_helpers import (AM_SAVE_INTERVAL, EDGE_FAULTS, EXTRACT_SHARDS, PRETRAIN_SAVE_EVERY,
                                        Campaign, assert_killed, assert_ok, check_am_outputs,
                                        check_decode_outputs, check_extract_outputs, check_pretrain_outputs, cli,
                                        compare_am, compare_decode, compare_extract, compare_pretrain, decode_cmd,
                                        extract_cmd, leftover_processes, load_ckpt, pretrain_cmd,
                                        read_jsonl, run, seeded_faults, selected_ids, temporaries,
                                        train_am_cmd, assert_same_tensors)

CASES = seeded_faults(0) + EDGE_FAULTS


def _cases(*stages):
    return [pytest.param(p, n, id=f"{s}-{p}:{n}") for s, p, n in CASES if s in stages]


def _kill(cmd: list, fault: str) -> None:
    marker = uuid.uuid4().hex
    proc = cli(cmd, fault=fault, marker=marker)
    assert_killed(proc, fault)
    assert leftover_processes(marker) == [], f"{fault}: processes outlived the killed run"


# ------------------------------------------------------------------------------------ pretrain


def _pretrain(point, n, inp, refs, tmp_path):
    exp = tmp_path / "exp"
    cmd = pretrain_cmd(inp, exp)
    _kill(cmd, f"{point}:{n}")
    check_pretrain_outputs(exp, refs["pretrain"])
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


def _train_am(point, n, inp, refs, tmp_path):
    exp = tmp_path / "exp"
    cmd = train_am_cmd(inp, exp)
    _kill(cmd, f"{point}:{n}")
    check_am_outputs(exp, refs["train-am"])
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


def _extract(point, n, inp, refs, tmp_path, workers=0):
    out = tmp_path / "x"
    out.mkdir()
    ckpt = refs["pretrain"] / "checkpoint_last.pt"
    _kill(extract_cmd(inp, ckpt, out, workers=workers), f"{point}:{n}")
    check_extract_outputs(out, refs["extract"])
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

    assert_ok(cli(extract_cmd(inp, ckpt, out, resume=True, workers=workers)))
    compare_extract(refs["extract"], out)
    for k, stamp in recorded.items():  # finished shards are not redone
        st = (out / f"feats.{k}.ark").stat()
        assert (st.st_ino, st.st_mtime_ns) == stamp, f"shard {k} was redone"
    assert temporaries(out) == []


# ------------------------------------------------------------------------------------ decode


def _raw_rows(path: Path) -> list:
    return json.loads(path.read_text())["rows"] if path.is_file() else []


def _decode_tune(point, n, inp, refs, tmp_path):
    out = tmp_path / "dec"
    cmd = decode_cmd(inp, out, tune=True)
    _kill(cmd, f"{point}:{n}")
    check_decode_outputs(out, refs["decode-tune"])
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


def _decode(point, n, inp, refs, tmp_path):
    out = tmp_path / "dec"
    cmd = decode_cmd(inp, out, tune=False)
    _kill(cmd, f"{point}:{n}")
    check_decode_outputs(out, refs["decode"])
    assert_ok(cli(cmd))
    compare_decode(refs["decode"], out)
    assert (out / "hyp.txt").read_text().split()  # the reference hypotheses are not all empty
    assert temporaries(out) == []


# ------------------------------------------------------------------------------------ the tests

SCENARIOS = {"pretrain": _pretrain, "train-am": _train_am, "extract": _extract,
             "extract-workers": functools.partial(_extract, workers=2), "decode-tune": _decode_tune,
             "decode": _decode}


@pytest.fixture(scope="module")
def campaign(request, tmp_path_factory, inp, refs):
    """Every selected scenario, two at a time (see :class:`Campaign`)."""
    wanted = selected_ids(request)
    jobs = {}
    for stage, point, n in CASES:
        case = f"{stage}-{point}:{n}"
        if case in wanted:
            jobs[case] = functools.partial(SCENARIOS[stage], point, n, inp, refs, tmp_path_factory.mktemp("kill"))
    runs = Campaign(jobs)
    yield runs
    runs.close()


@pytest.mark.parametrize("point,n", _cases("pretrain"))
def test_pretrain_killed_then_resumed(point, n, campaign, request):
    campaign.result(request.node.callspec.id)


@pytest.mark.parametrize("point,n", _cases("train-am"))
def test_train_am_killed_then_resumed(point, n, campaign, request):
    campaign.result(request.node.callspec.id)


@pytest.mark.parametrize("point,n", _cases("extract", "extract-workers"))
def test_extract_killed_then_resumed(point, n, campaign, request):
    campaign.result(request.node.callspec.id)


@pytest.mark.parametrize("point,n", _cases("decode-tune"))
def test_decode_tune_killed_then_resumed(point, n, campaign, request):
    campaign.result(request.node.callspec.id)


@pytest.mark.parametrize("point,n", _cases("decode"))
def test_decode_killed_then_resumed(point, n, campaign, request):
    campaign.result(request.node.callspec.id)


KILL_AT_LINK = """
import os, signal, sys
import w2vtk.training as training
real, calls = training._atomic_link_or_copy, [0]
def link(src, dst):
    calls[0] += 1
    if calls[0] == int(os.environ["KILL_AT_LINK"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)
training._atomic_link_or_copy = link
from w2vtk.cli import main
main(sys.argv[1:])
"""


def test_pretrain_killed_between_checkpoint_files_keeps_every_numbered_one(inp, refs, tmp_path):
    """A kill between the files of one save (numbered, best and last hold the same state; one is
    written, the others linked): no fault point sits there, so the link itself kills.  Every
    checkpoint save is numbered and best here (2 links per save); the 3rd link is in the 2nd save.
    Once checkpoint_last.pt was written first and linked to checkpoint_4.pt after: that kill lost
    checkpoint_4.pt for good."""
    exp = tmp_path / "exp"
    args = pretrain_cmd(inp, exp) + ["checkpoint.keep_last=-1"]
    proc = run([sys.executable, "-c", KILL_AT_LINK, *args], env={"KILL_AT_LINK": "3"})
    assert_killed(proc, "the 3rd checkpoint link")
    check_pretrain_outputs(exp, exp)  # (its config.yaml differs from the reference's in keep_last)
    assert_ok(cli(args))
    assert sorted(p.name for p in exp.glob("checkpoint_*.pt")) == [
        "checkpoint_2.pt", "checkpoint_4.pt", "checkpoint_6.pt", "checkpoint_8.pt", "checkpoint_best.pt",
        "checkpoint_last.pt"]
    assert load_ckpt(exp / "checkpoint_4.pt")["train_state"]["num_updates"] == 4
    ref = load_ckpt(refs["pretrain"] / "checkpoint_last.pt")
    assert_same_tensors(ref["model"], load_ckpt(exp / "checkpoint_last.pt")["model"], "model")


def test_the_fault_list_covers_every_point_and_stage():
    from w2vtk.faults import POINTS

    assert {p for _, p, _ in CASES} == set(POINTS)
    assert {s for s, _, _ in CASES} == set(SCENARIOS)
    assert CASES == seeded_faults(0) + EDGE_FAULTS  # seeded: the same list every run


def test_stale_temporaries_of_named_outputs_only_are_removed(tmp_path):
    from w2vtk.io import remove_stale_temporaries

    names = [".checkpoint_last.pt.ab12_x9q.tmp", ".checkpoint_4.pt.zz.tmp", ".emissions.ark.tmp",
             ".config.yaml.k3j.tmp", ".notes.txt.k3j.tmp", ".checkpoint_last.pt", "checkpoint_last.pt.tmp"]
    for name in names:
        (tmp_path / name).write_text("x")
    removed = remove_stale_temporaries(tmp_path, ("checkpoint_*.pt", "config.yaml", "emissions.ark"))
    assert sorted(p.name for p in removed) == sorted(names[:4])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[4:])
    assert remove_stale_temporaries(tmp_path / "missing", ("*",)) == []
