"""Shared pieces of the kill/resume, launcher-kill and disk-full tests (a uniquely named module).

Each stage (pretrain, train-am, extract, decode) runs through the real CLI (``python -m w2vtk``) in
a subprocess whose environment sets ``W2VTK_FAULT`` (see :mod:`w2vtk.faults`).  The uninterrupted
reference runs are expensive, so they are built once per pytest session and memoised here (pytest
would build a session fixture once per module that imports it).

Inputs are tiny: 8 chirps of 1-2 s (pre-training, extraction), the learnable 16-dim feature dirs of
tests/am/am_synth.py (train-am; its tiny conv model), a 3-gram word KenLM over the same words
(decoding with the reference AM).
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for _sub in ("pretrain", "am"):
    _p = str(REPO / "tests" / _sub)
    if _p not in sys.path:
        sys.path.append(_p)

from am_synth import TINY, W2V_PROV, make_texts, write_feature_dir  # noqa: E402
from pretrain_helpers import SMALL, write_audio  # noqa: E402

MARKER_ENV = "W2VTK_RELIABILITY_MARKER"

# pre-training: 8 updates, a checkpoint every 2 (checkpoint_last + numbered), dropout on so that the
# restored RNG state matters
PRETRAIN_SAVE_EVERY = 2
PRETRAIN_ARGS = SMALL + ["optim.max_update=8", f"checkpoint.save_every={PRETRAIN_SAVE_EVERY}", "model.dropout=0.1"]
# train-am: 24 utterances in batches of 4 -> 6 updates per epoch, 2 epochs, checkpoint_last every 2
AM_SAVE_INTERVAL = 2
AM_ARGS = TINY + ["max_epochs=2", "batch.max_utts=4", f"save_interval_updates={AM_SAVE_INTERVAL}",
                  "model.dropout=0.1"]
EXTRACT_SHARDS = 4
DECODE_TRIALS = 4


# ------------------------------------------------------------------------------------ running


def cli(args: list, *, fault: str | None = None, env: dict | None = None, timeout: float = 300,
        marker: str | None = None) -> subprocess.CompletedProcess:
    """``python -m w2vtk ARGS`` in the repo root, one intra-op thread, ``W2VTK_FAULT`` = ``fault``."""
    return run([sys.executable, "-m", "w2vtk", *map(str, args)], fault=fault, env=env, timeout=timeout,
               marker=marker)


def run(cmd: list, *, fault: str | None = None, env: dict | None = None, timeout: float = 300,
        marker: str | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.pop("W2VTK_FAULT", None)
    e.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", COLUMNS="1000")
    e[MARKER_ENV] = marker or uuid.uuid4().hex
    if fault:
        e["W2VTK_FAULT"] = fault
    e.update(env or {})
    return subprocess.run([str(c) for c in cmd], cwd=REPO, env=e, capture_output=True, text=True,
                          timeout=timeout)


def leftover_processes(marker: str, wait_s: float = 15.0) -> list[str]:
    """Command lines of processes still alive whose environment carries ``marker`` (children of a
    killed run: DataLoader or decoder workers must not outlive it).  Polls up to ``wait_s``
    (orphans notice their parent's death by polling)."""
    needle = f"{MARKER_ENV}={marker}".encode()
    end = time.monotonic() + wait_s
    while True:
        alive = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                if needle in (proc / "environ").read_bytes().split(b"\0"):
                    status = (proc / "status").read_text()
                    if "\nState:\tZ" in status:
                        continue
                    alive.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
        if not alive or time.monotonic() > end:
            return alive
        time.sleep(0.2)


def describe(proc: subprocess.CompletedProcess) -> str:
    return f"rc={proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"


def assert_killed(proc: subprocess.CompletedProcess, fault: str) -> None:
    assert proc.returncode == -9, (f"{fault}: expected death by SIGKILL (the fault point not reached?)\n"
                                   + describe(proc))


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, describe(proc)


def assert_one_line_error(proc: subprocess.CompletedProcess, *names: str) -> str:
    """Exit 1, no traceback, and exactly one ``error: ...`` line, the last of stderr (progress and
    log lines before it are stderr's normal contents), naming one of ``names``."""
    assert proc.returncode == 1, describe(proc)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, describe(proc)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    assert len(errors) == 1 and lines[-1] == errors[0] and errors[0].startswith("error: "), describe(proc)
    assert any(n in errors[0] for n in names), f"{errors[0]!r} names none of {names}"
    return errors[0]


# ------------------------------------------------------------------------------------ fault lists

#: (stage, fault point, highest N that the stage reaches) for every applicable point.
#: pretrain: 8 updates, checkpoints at 2/4/6/8, config.yaml is the only output_write before training.
#: train-am: 12 updates; ckpt_write covers last (every 2 updates), best, epoch and average files;
#: output_write: tokens.txt, feats.yaml, config.yaml.  extract: 8 utterances in 4 shards; output_write
#: = manifest, 4 x (shard archive, shard record), feats.scp, utt2num_frames, feats.yaml.  decode: 6 dev utterances;
#: output_write = decode.yaml, emissions.scp/yaml, (trials.json x 4, trials.tsv, best.yaml,) hyp.txt.
FAULT_RANGES = [
    ("pretrain", "ckpt_write", 4), ("pretrain", "train_step", 8), ("pretrain", "data_load", 8),
    ("pretrain", "output_write", 1),
    ("train-am", "ckpt_write", 11), ("train-am", "train_step", 12), ("train-am", "data_load", 12),
    ("train-am", "output_write", 3),
    ("extract", "ark_write", 8), ("extract", "shard_done", 4), ("extract", "output_write", 12),
    ("decode-tune", "decode_trial", DECODE_TRIALS), ("decode-tune", "ark_write", 6),
    ("decode-tune", "output_write", 10),
    ("decode", "ark_write", 6), ("decode", "output_write", 4),
]


#: Kills the seeded draw may miss: the very first write of an extraction (its manifest; --resume then
#: refused the directory), and a kill with audio-decoding worker processes (they must not outlive it).
EDGE_FAULTS = [("extract", "output_write", 1), ("extract-workers", "ark_write", 3)]


def seeded_faults(seed: int = 0) -> list[tuple[str, str, int]]:
    """(stage, point, N) with N drawn by ``random.Random(seed)`` in 1..highest for each entry."""
    rng = random.Random(seed)
    return [(stage, point, rng.randint(1, top)) for stage, point, top in FAULT_RANGES]


# ------------------------------------------------------------------------------------ files


# Diagnostics every run appends to (log/<command>.log, TensorBoard event files): not a stage's
# output, so neither compared with the uninterrupted run nor required to be whole.
DIAGNOSTIC_DIRS = ("log", "tensorboard")


def visible_files(root: Path) -> list[Path]:
    """Every regular file under ``root`` whose path has no hidden component, outside the
    diagnostic dirs."""
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts) \
                and rel.parts[0] not in DIAGNOSTIC_DIRS:
            out.append(p)
    return out


def hidden_files(root: Path) -> list[Path]:
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and any(part.startswith(".") for part in rel.parts):
            out.append(p)
    return out


TMP_NAME = re.compile(r"^\..+\.tmp$")


def temporaries(root: Path) -> list[Path]:
    """Hidden ``.NAME....tmp`` files (the only files allowed to be partial)."""
    return [p for p in hidden_files(root) if TMP_NAME.match(p.name)]


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSON-lines log, dropping a last line cut by a kill."""
    out = []
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def load_ckpt(path: Path):
    from w2vtk.checkpoint import load_checkpoint

    return load_checkpoint(path)


def assert_same_tensors(a: dict, b: dict, what: str) -> None:
    import torch

    assert a.keys() == b.keys(), what
    for k in a:
        assert torch.equal(a[k], b[k]), f"{what}: {k} differs"


def assert_same_tree(a, b, what: str) -> None:
    """Nested dicts / lists / tensors / scalars exactly equal."""
    import torch

    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), what
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (
            f"{what}: keys {sorted(map(str, a))} vs {sorted(map(str, b))}")
        for k in a:
            assert_same_tree(a[k], b[k], f"{what}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{what}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{what}: {a!r} != {b!r}"


# ------------------------------------------------------------------------------------ inputs and references

_MEMO: dict[str, object] = {}


def memo(key: str, build):
    if key not in _MEMO:
        _MEMO[key] = build()
    return _MEMO[key]


def inputs(factory) -> dict:
    """Session inputs: audio dir, AM feature dirs + letters lang, a word 3-gram LM dir."""
    def build():
        from w2vtk.lm import build_lm
        from w2vtk.tokens import build_lang

        root = factory.mktemp("reliability_inputs")
        audio = root / "audio"
        write_audio(audio, [1.0, 1.2, 1.4, 1.5, 1.6, 1.7, 1.9, 2.0], seed=1)
        train = write_feature_dir(root / "am_train", make_texts(24, seed=1, prefix="tr"), seed=3,
                                  feats_yaml=W2V_PROV)
        valid = write_feature_dir(root / "dev", make_texts(6, seed=2, prefix="dv"), seed=4,
                                  feats_yaml=W2V_PROV)
        build_lang(train / "text", root / "lang", "letters")
        lm_lines = make_texts(200, seed=9, prefix="lm")
        (root / "lm_text.txt").write_text("".join(t.upper() + "\n" for t in lm_lines.values()))
        build_lm(root / "lm_text.txt", root / "lang", root / "lm", order=3, memory="100M", log=lambda m: None)
        # decoding needs an AM that reads something (the 2-epoch train-am reference outputs blanks)
        import torch

        from w2vtk.am.config import TrainAMConfig
        from w2vtk.am.train import train_am
        from w2vtk.config import load_config

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            cfg = load_config(TrainAMConfig, None, TINY + ["max_epochs=30", "optim.lr=5e-3", "average_last=0"])
            train_am(cfg, lang_dir=root / "lang", train_dir=train, valid_dir=valid, exp_dir=root / "decode_am")
        finally:
            torch.set_num_threads(threads)
        return {"root": root, "audio": audio, "am_train": train, "dev": valid, "lang": root / "lang",
                "lm": root / "lm", "decode_am": root / "decode_am"}
    return memo("inputs", build)


def pretrain_cmd(inp: dict, exp: Path) -> list:
    return ["pretrain", "--data", inp["audio"], "--exp", exp, *PRETRAIN_ARGS]


def train_am_cmd(inp: dict, exp: Path) -> list:
    return ["train-am", "--lang", inp["lang"], "--train", inp["am_train"], "--valid", inp["dev"], "--exp", exp,
            *AM_ARGS]


def extract_cmd(inp: dict, checkpoint: Path, out: Path, resume: bool = False, workers: int = 0) -> list:
    return (["extract", "--in", inp["audio"], "--out", out / "feats.ark", "--type", "wav2vec", "--checkpoint",
             checkpoint, "--num-shards", str(EXTRACT_SHARDS), "--num-workers", str(workers)]
            + (["--resume"] if resume else []))


def decode_cmd(inp: dict, out: Path, tune: bool) -> list:
    """Tuning runs 2 decoder worker processes (they must not outlive a killed run); the plain decode one."""
    cmd = ["decode", "--am", inp["decode_am"], "--data", inp["dev"], "--out", out, "--lang", inp["lm"],
           "--decoder", "lexicon",
           "--beam-size", "8"]
    if tune:
        return cmd + ["--tune", "--trials", str(DECODE_TRIALS), "--nj", "2"]
    return cmd + ["--nj", "1", "--lm-weight", "0.5", "--word-score", "2.0"]


def references(factory) -> dict:
    """Uninterrupted runs of every stage (session-wide): exp / output dirs by stage name.  Two
    chains run side by side (the runs are single-threaded)."""
    def build():
        inp = inputs(factory)
        root = factory.mktemp("reliability_refs")
        refs = {"pretrain": root / "pretrain", "train-am": root / "am", "extract": root / "extract",
                "decode-tune": root / "decode_tune", "decode": root / "decode"}

        def chain_a():
            assert_ok(cli(pretrain_cmd(inp, refs["pretrain"])))
            refs["extract"].mkdir()
            assert_ok(cli(extract_cmd(inp, refs["pretrain"] / "checkpoint_last.pt", refs["extract"])))

        def chain_b():
            assert_ok(cli(train_am_cmd(inp, refs["train-am"])))
            assert_ok(cli(decode_cmd(inp, refs["decode-tune"], tune=True)))
            assert_ok(cli(decode_cmd(inp, refs["decode"], tune=False)))

        with ThreadPoolExecutor(2) as pool:
            for f in [pool.submit(chain_a), pool.submit(chain_b)]:
                f.result()
        return refs
    return memo("references", build)


class Campaign:
    """Runs independent scenarios (each a chain of subprocesses) two at a time in threads, so both
    cores work; each parametrized test then waits for its own scenario and re-raises its failure.

    Only the scenarios of the tests pytest selected are run (``-k`` keeps working)."""

    def __init__(self, jobs: dict, workers: int = 2):
        self._pool = ThreadPoolExecutor(workers)
        self._futures = {key: self._pool.submit(fn) for key, fn in jobs.items()}

    def result(self, key: str):
        return self._futures[key].result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def selected_ids(request) -> set[str]:
    """Parameter ids of the selected tests of ``request``'s module."""
    module = request.module.__name__
    return {item.callspec.id for item in request.session.items
            if getattr(item, "module", None) is not None and item.module.__name__ == module
            and hasattr(item, "callspec")}


# ------------------------------------------------------------------------------------ comparisons

AM_TIME_KEYS = ("time_s", "eval_time_s", "audio_s_per_s")


def _same_checkpoints(ref: Path, got: Path, pattern: str):
    """(name, ref checkpoint, got checkpoint) for every ``pattern`` file, once both dirs are shown to
    hold the same names and the same model weights in each."""
    names = sorted(p.name for p in ref.glob(pattern))
    assert sorted(p.name for p in got.glob(pattern)) == names
    for name in names:
        a, b = load_ckpt(ref / name), load_ckpt(got / name)
        assert_same_tensors(a["model"], b["model"], f"{name} model")
        yield name, a, b


def compare_pretrain(ref: Path, got: Path) -> None:
    for name, a, b in _same_checkpoints(ref, got, "checkpoint_*.pt"):
        assert_same_tree(a["optimizer"], b["optimizer"], f"{name} optimizer")
        ta, tb = dict(a["train_state"]), dict(b["train_state"])
        assert_same_tree(ta, tb, f"{name} train_state")
        assert_same_tree(a["rng"], b["rng"], f"{name} rng")
    strip = ("time", "audio_s_per_s")
    ra = [{k: v for k, v in r.items() if k not in strip} for r in read_jsonl(ref / "metrics.jsonl")
          if r["split"] == "train"]
    rb = [{k: v for k, v in r.items() if k not in strip} for r in read_jsonl(got / "metrics.jsonl")
          if r["split"] == "train"]
    assert ra == rb


def compare_am(ref: Path, got: Path) -> None:
    for name, a, b in _same_checkpoints(ref, got, "*.pt"):
        for key in ("epoch", "updates", "source", "normaliser"):
            assert_same_tree(a.get(key), b.get(key), f"{name} {key}")
        if name == "checkpoint_last.pt":
            assert_same_tree(a["optimizer"], b["optimizer"], f"{name} optimizer")
            assert_same_tree(a["rng"], b["rng"], f"{name} rng")
    ma = [{k: v for k, v in r.items() if k not in AM_TIME_KEYS} for r in read_jsonl(ref / "metrics.jsonl")]
    mb = [{k: v for k, v in r.items() if k not in AM_TIME_KEYS} for r in read_jsonl(got / "metrics.jsonl")]
    assert [r["epoch"] for r in ma] == [r["epoch"] for r in mb]
    for x, y in zip(ma, mb):
        # the epoch's train loss is a float sum that a resume splits in two: equal up to rounding
        assert abs(x.pop("train_loss") - y.pop("train_loss")) <= 1e-9 * max(1.0, abs(y.get("dev_loss") or 1))
        assert x == y


def norm_text(path: Path, root: Path) -> str:
    return path.read_text().replace(str(root), "ROOT")


def extract_equal(ref: Path, got: Path, name: str) -> bool:
    """Whether output file ``name`` of an extract dir equals the reference's (paths normalised,
    creation time ignored)."""
    a, b = ref / name, got / name
    if name.endswith(".ark"):
        return a.read_bytes() == b.read_bytes()
    if name == "feats.yaml":
        import yaml

        ya, yb = (yaml.safe_load(norm_text(p, r)) for p, r in ((a, ref), (b, got)))
        ya.pop("created_utc"), yb.pop("created_utc")
        return ya == yb
    return norm_text(a, ref) == norm_text(b, got)


def compare_extract(ref: Path, got: Path) -> None:
    names = sorted(str(p.relative_to(ref)) for p in visible_files(ref))
    assert sorted(str(p.relative_to(got)) for p in visible_files(got)) == names
    assert names and "feats.scp" in names
    for name in names:
        assert extract_equal(ref, got, name), name
    # a finished run keeps no work records (its manifest is in feats.yaml, compared above)
    assert not (ref / ".feats.work").exists() and not (got / ".feats.work").exists()
    # the archives read back through the scp: the same matrices
    import kaldiio
    import numpy as np

    ma, mb = kaldiio.load_scp(str(ref / "feats.scp")), kaldiio.load_scp(str(got / "feats.scp"))
    assert sorted(ma) == sorted(mb) and len(ma) == 8
    for k in ma:
        assert np.array_equal(ma[k], mb[k]), k


def trial_rows(path: Path) -> list[dict]:
    rows = json.loads(path.read_text())["rows"]
    return [{k: v for k, v in r.items() if k != "seconds"} if r else None for r in rows]


def decode_equal(ref: Path, got: Path, name: str) -> bool:
    """Whether decode output ``name`` equals the reference's (timings and paths ignored)."""
    a, b = ref / name, got / name
    if name in ("emissions.ark",):
        return a.read_bytes() == b.read_bytes()
    if name == "trials.json":
        return trial_rows(a) == trial_rows(b)
    if name == "trials.tsv":
        def cut(p):
            return [line.split("\t")[:-1] for line in p.read_text().splitlines()]
        return cut(a) == cut(b)
    if name == "emissions.yaml":
        import yaml

        ya, yb = yaml.safe_load(norm_text(a, ref)), yaml.safe_load(norm_text(b, got))
        for y in (ya, yb):
            for k in ("seconds", "rtf"):
                y.pop(k, None)
        return ya == yb
    if name == "decode.json":
        da, db = json.loads(norm_text(a, ref)), json.loads(norm_text(b, got))
        keys = ("decoder", "params", "wer", "ler", "utterances", "lines")
        return all(da.get(k) == db.get(k) for k in keys)
    return norm_text(a, ref) == norm_text(b, got)


def compare_decode(ref: Path, got: Path) -> None:
    names = sorted(p.name for p in visible_files(ref))
    assert sorted(p.name for p in visible_files(got)) == names
    assert "hyp.txt" in names
    assert (ref / "hyp.txt").read_bytes() == (got / "hyp.txt").read_bytes()
    for name in names:
        assert decode_equal(ref, got, name), name


# ------------------------------------------------------------------------------------ after a kill or a failure

AM_COPIES = ("tokens.txt", "lang.yaml", "feats.yaml", "config.yaml", "global_cmvn.npz")


def only_temporaries_hidden(root: Path, allowed_dirs: tuple[str, ...] = ()) -> None:
    """Hidden files are temporaries, or live in an allowed hidden work dir."""
    for p in hidden_files(root):
        rel = p.relative_to(root)
        if rel.parts[0] in allowed_dirs and len(rel.parts) > 1:
            continue
        assert p in temporaries(root), f"unexpected hidden file {rel}"


def check_pretrain_outputs(exp: Path, ref: Path) -> None:
    """Every file under a final name is whole (checkpoints load and hold the update they are named
    after); only hidden temporaries may be partial.  The same for the other check_* functions."""
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
            raise AssertionError(f"unexpected file {f}")
    only_temporaries_hidden(exp)


def check_am_outputs(exp: Path, ref: Path) -> None:
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
            raise AssertionError(f"unexpected file {f}")
    only_temporaries_hidden(exp)


def check_extract_outputs(out: Path, ref: Path) -> None:
    ref_names = {str(p.relative_to(ref)) for p in visible_files(ref)}
    for f in visible_files(out):
        name = str(f.relative_to(out))
        assert name in ref_names, f"unexpected file {name}"
        assert extract_equal(ref, out, name), f"{name} looks complete but differs from the uninterrupted run's"
    # The interrupted run's work records (the uninterrupted run removed its own when it finished):
    # the manifest equals the one the reference keeps in feats.yaml, and every shard record names
    # the reference's offsets and frame counts.
    import yaml

    ref_run = yaml.safe_load(norm_text(ref / "feats.yaml", ref))["run"]
    ref_scp = dict(line.split(None, 1) for line in norm_text(ref / "feats.scp", ref).splitlines())
    ref_frames = dict(line.split() for line in (ref / "utt2num_frames").read_text().splitlines())
    work = out / ".feats.work"
    for f in (sorted(work.iterdir()) if work.is_dir() else []):
        if f in temporaries(out):
            continue
        rec = json.loads(norm_text(f, out))
        if f.name == "manifest.json":
            assert rec == ref_run, f.name
            continue
        assert re.fullmatch(r"shard\.\d+\.json", f.name), f.name
        for utt, offset, frames in rec["entries"]:
            assert ref_scp[utt] == f"{rec['ark']}:{offset}" and int(ref_frames[utt]) == frames, (f.name, utt)
    only_temporaries_hidden(out, allowed_dirs=(".feats.work",))


def check_decode_outputs(out: Path, ref: Path) -> None:
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
    only_temporaries_hidden(out)
