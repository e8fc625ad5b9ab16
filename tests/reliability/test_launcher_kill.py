"""Kill one worker of a 2-process run under the launcher (``bin/launch.sh --nproc 2``, torchrun,
gloo on CPU), then rerun the launcher (issue 8, item 2).

``W2VTK_FAULT=POINT:N@1`` SIGKILLs worker rank 1 only; torchrun must then stop rank 0 and exit
non-zero, leaving no process behind and no file that looks whole but is not.  The rerun resumes from
the last checkpoint (at most one interval redone) and ends with exactly the model of an
uninterrupted 2-process run.
"""

from __future__ import annotations

import functools
import os
import random
import re
import sys
import uuid
from pathlib import Path

import pytest

from reliability_resume_helpers import (AM_ARGS, AM_SAVE_INTERVAL, PRETRAIN_ARGS, PRETRAIN_SAVE_EVERY, Campaign,
                                        assert_ok, check_am_outputs, check_pretrain_outputs, compare_am,
                                        compare_pretrain, describe, leftover_processes, read_jsonl, run,
                                        selected_ids, temporaries)

REPO = Path(__file__).resolve().parents[2]
# Seeded draws: pretrain updates 1..8, train-am: 2 processes x batches of 4 -> 3 updates per epoch, 6 in
# all.  (A data_load kill under the launcher passed too; left out to keep within the time budget.)
_rng = random.Random(1)
CASES = [("pretrain", "train_step", _rng.randint(1, 8)), ("train-am", "train_step", _rng.randint(1, 6))]


def launch(stage_args: list, *, fault: str | None = None, marker: str | None = None):
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return run(["bash", str(REPO / "bin" / "launch.sh"), "--nproc", "2", *stage_args], fault=fault, env=env,
               marker=marker, timeout=400)


def _pretrain_args(inp: dict, exp: Path) -> list:
    return ["pretrain", "--data", inp["audio"], "--exp", exp, *PRETRAIN_ARGS]


def _am_args(inp: dict, exp: Path) -> list:
    return ["train-am", "--lang", inp["lang"], "--train", inp["am_train"], "--valid", inp["dev"], "--exp", exp,
            *AM_ARGS]


@pytest.fixture(scope="module")
def refs2(request, inp, tmp_path_factory):
    """Uninterrupted 2-process runs (only of the stages the selected tests need), side by side."""
    stages = {case.split("-")[0] if not case.startswith("train-am") else "train-am"
              for case in selected_ids(request)}
    root = tmp_path_factory.mktemp("launcher_refs")
    refs = {"pretrain": root / "pretrain", "train-am": root / "am"}
    jobs = {}
    if "pretrain" in stages:
        jobs["pretrain"] = lambda: assert_ok(launch(_pretrain_args(inp, refs["pretrain"])))
    if "train-am" in stages:
        jobs["train-am"] = lambda: assert_ok(launch(_am_args(inp, refs["train-am"])))
    runs = Campaign(jobs)
    for key in jobs:
        runs.result(key)
    runs.close()
    return refs


def _scenario(stage: str, point: str, n: int, inp: dict, refs2: dict, tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    args = _pretrain_args(inp, exp) if stage == "pretrain" else _am_args(inp, exp)
    fault = f"{point}:{n}@1"
    marker = uuid.uuid4().hex
    proc = launch(args, fault=fault, marker=marker)
    assert proc.returncode not in (0, None), (f"{fault}: the launcher succeeded although worker 1 died\n"
                                              + describe(proc))
    assert re.search(r"(exitcode\s*:\s*-9|Signal 9|SIGKILL)", proc.stdout + proc.stderr), describe(proc)
    assert leftover_processes(marker) == [], "rank 0 or the agent outlived the failed job"
    if stage == "pretrain":
        check_pretrain_outputs(exp, refs2["pretrain"])
        logged = [r["update"] for r in read_jsonl(exp / "metrics.jsonl") if r.get("split") == "train"]
    else:
        check_am_outputs(exp, refs2["train-am"])

    proc = launch(args)
    assert_ok(proc)
    if stage == "pretrain":
        compare_pretrain(refs2["pretrain"], exp)
        start = [r for r in read_jsonl(exp / "metrics.jsonl") if r.get("split") == "start"][-1]
        # rank 1 died after (train_step) or during (data_load) update n; rank 0 got at most as far
        done = n if point == "train_step" else n - 1
        assert max(logged, default=0) <= done
        assert 0 <= done - start["update"] <= PRETRAIN_SAVE_EVERY, (done, start)
        assert start["world_size"] == 2
    else:
        compare_am(refs2["train-am"], exp)
        m = re.search(r"resuming \S+ at epoch (\d+), update (\d+)", " ".join((proc.stdout + proc.stderr).split()))
        start = int(m.group(2)) if m else 0
        assert 0 <= n - start <= AM_SAVE_INTERVAL, (n, start)
    assert temporaries(exp) == []


@pytest.fixture(scope="module")
def campaign(request, inp, refs2, tmp_path_factory):
    wanted = selected_ids(request)
    jobs = {f"{s}-{p}:{n}@1": functools.partial(_scenario, s, p, n, inp, refs2, tmp_path_factory.mktemp("launch"))
            for s, p, n in CASES if f"{s}-{p}:{n}@1" in wanted}
    runs = Campaign(jobs)
    yield runs
    runs.close()


@pytest.mark.parametrize("stage,point,n", [pytest.param(s, p, n, id=f"{s}-{p}:{n}@1") for s, p, n in CASES])
def test_killing_worker_1_then_relaunching(stage, point, n, campaign, request):
    campaign.result(request.node.callspec.id)
