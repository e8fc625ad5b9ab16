"""A full disk (issue 8, item 5): checkpoint, archive, emissions-cache and output writes.

ENOSPC is injected with ``W2VTK_FAULT=NAME:N:enospc`` (raised where the bytes are written).  Each
stage must exit 1 with ONE line ``error: ...`` naming the file (no traceback), keep its earlier
outputs intact and loadable, leave no file under a final name that is not whole (and, unlike a
kill, no temporary either), and finish when rerun without the fault, with the uninterrupted run's
result.  One more test fills a real tiny tmpfs (root with mount permission only; skipped otherwise).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from reliability_resume_helpers import (EXTRACT_SHARDS, Campaign, assert_ok, assert_one_line_error,
                                        check_am_outputs, check_decode_outputs, check_extract_outputs,
                                        check_pretrain_outputs, cli, compare_am, compare_decode, compare_extract,
                                        compare_pretrain, decode_cmd, extract_cmd, extract_equal, load_ckpt,
                                        pretrain_cmd, selected_ids, temporaries,
                                        train_am_cmd)


def _checkpoint_write(stage, inp, refs, tmp_path):
    exp = tmp_path / "exp"
    if stage == "pretrain":
        cmd, check, compare = pretrain_cmd(inp, exp), check_pretrain_outputs, compare_pretrain
        # the 2nd checkpoint (update 4, written as checkpoint_4.pt, then linked as best and last)
        # hits the full disk; the one of update 2 must survive
        fault, named, survivors = "ckpt_write:2:enospc", "checkpoint_4.pt", ["checkpoint_2.pt", "checkpoint_best.pt",
                                                                          "checkpoint_last.pt"]
    else:
        cmd, check, compare = train_am_cmd(inp, exp), check_am_outputs, compare_am
        # writes: last @2, last @4, then epoch 1's checkpoint_best.pt, which fails
        fault, named, survivors = "ckpt_write:3:enospc", "checkpoint_best.pt", ["checkpoint_last.pt"]
    line = assert_one_line_error(cli(cmd, fault=fault), named)
    assert "no space left" in line
    check(exp, refs[stage])
    assert temporaries(exp) == []
    last = load_ckpt(exp / "checkpoint_last.pt")
    assert (last["train_state"]["num_updates"] if stage == "pretrain" else last["updates"]) == (2 if stage == "pretrain" else 4)
    assert sorted(p.name for p in exp.glob("checkpoint_*.pt")) == survivors
    assert_ok(cli(cmd))
    compare(refs[stage], exp)


def _extract(fault, names, intact, inp, refs, tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    ckpt = refs["pretrain"] / "checkpoint_last.pt"
    line = assert_one_line_error(cli(extract_cmd(inp, ckpt, out), fault=fault), *names)
    assert "no space left" in line.lower()
    check_extract_outputs(out, refs["extract"])
    assert temporaries(out) == []
    for k in range(1, intact + 1):  # the shards finished before the failure are whole and recorded
        assert extract_equal(refs["extract"], out, f"feats.{k}.ark")
        # recorded; check_extract_outputs above held the record to the reference's offsets and frames
        assert (out / f".feats.work/shard.{k}.json").is_file()
    assert not (out / "feats.scp").exists()
    assert_ok(cli(extract_cmd(inp, ckpt, out, resume=True)))
    compare_extract(refs["extract"], out)


def _decode_emissions_cache(inp, refs, tmp_path):
    out = tmp_path / "dec"
    cmd = decode_cmd(inp, out, tune=False)
    line = assert_one_line_error(cli(cmd, fault="ark_write:2:enospc"), "emissions.ark")
    assert "no space left" in line.lower() and ".tmp" not in line  # names the cache, not a temporary
    check_decode_outputs(out, refs["decode"])
    assert temporaries(out) == []
    assert not list(out.glob("emissions.*"))
    assert_ok(cli(cmd))
    compare_decode(refs["decode"], out)


def _decode_output_write(inp, refs, tmp_path):
    out = tmp_path / "dec"
    cmd = decode_cmd(inp, out, tune=False)
    # writes: decode.yaml, emissions.scp, emissions.yaml, then hyp.txt
    line = assert_one_line_error(cli(cmd, fault="output_write:4:enospc"), "hyp.txt")
    assert "no space left" in line.lower()
    check_decode_outputs(out, refs["decode"])
    assert temporaries(out) == [] and not (out / "hyp.txt").exists()
    assert (out / "emissions.yaml").is_file()  # the finished cache is kept ...
    proc = cli(cmd)
    assert_ok(proc)
    assert "reusing" in proc.stdout + proc.stderr  # ... and reused
    compare_decode(refs["decode"], out)


SCENARIOS = {
    "pretrain-ckpt_write": functools.partial(_checkpoint_write, "pretrain"),
    "train_am-ckpt_write": functools.partial(_checkpoint_write, "train-am"),
    # the 5th utterance: the first of shard 3 (2 utterances per shard)
    "extract-ark_write": functools.partial(_extract, "ark_write:5:enospc", ("feats.3.ark",), 2),
    # shard 2's archive renamed, then its record cannot be written
    "extract-shard_done": functools.partial(_extract, "shard_done:2:enospc", ("feats.2.ark",), 1),
    # writes: manifest, 4 x (shard archive, shard record), then feats.scp
    "extract-output_write_scp": functools.partial(_extract, "output_write:10:enospc", ("feats.scp",), 4),
    "decode-emissions_cache": _decode_emissions_cache,
    "decode-output_write_hyp": _decode_output_write,
}


@pytest.fixture(scope="module")
def campaign(request, tmp_path_factory, inp, refs):
    """The selected scenarios, two at a time (see :class:`Campaign`)."""
    wanted = selected_ids(request)
    runs = Campaign({case: functools.partial(fn, inp, refs, tmp_path_factory.mktemp("full"))
                     for case, fn in SCENARIOS.items() if case in wanted})
    yield runs
    runs.close()


@pytest.mark.parametrize("case", list(SCENARIOS))
def test_disk_full_fails_cleanly_and_reruns(case, campaign):
    campaign.result(case)


# ------------------------------------------------------------------------------------ a real full disk


def _mount_tmpfs(path: Path, size: str) -> str | None:
    """Mount a tmpfs of ``size`` on ``path``; the reason it cannot be done, or None."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return "needs root and mount(8) to make a small tmpfs"
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return f"mount -t tmpfs is not permitted here ({proc.stderr.strip()[:100]})"
    return None


def test_extract_on_a_real_full_tmpfs(inp, refs):
    """8 utterances, 4 shard archives of ~20 kB: a 48 kB tmpfs holds two of them."""
    mnt = Path(tempfile.mkdtemp(prefix="w2vtk_full_"))
    try:
        reason = _mount_tmpfs(mnt, "48k")
        if reason:
            pytest.skip(reason)
        try:
            ckpt = refs["pretrain"] / "checkpoint_last.pt"
            line = assert_one_line_error(cli(extract_cmd(inp, ckpt, mnt)), "feats.")
            assert "no space left" in line.lower()
            check_extract_outputs(mnt, refs["extract"])
            assert temporaries(mnt) == []
            assert not (mnt / "feats.scp").exists()
            whole = [k for k in range(1, EXTRACT_SHARDS + 1) if (mnt / f".feats.work/shard.{k}.json").is_file()]
            assert whole and whole == list(range(1, len(whole) + 1))  # the first shards made it
            # the user frees space; the rerun finishes the remaining shards only
            subprocess.run(["mount", "-o", "remount,size=2m", str(mnt)], check=True)
            assert_ok(cli(extract_cmd(inp, ckpt, mnt, resume=True)))
            compare_extract(refs["extract"], mnt)
        finally:
            subprocess.run(["umount", str(mnt)], capture_output=True)
    finally:
        shutil.rmtree(mnt, ignore_errors=True)
