"""Every recipe end to end (stages 0-6, --profile tiny) on a small fake corpus in its real layout:
results.json has both systems, the recipe's set names and its metrics; a --stage restart reuses
what earlier stages made; WSJ runs in two halves (--stop-stage 3, then --stage 4) with a fairseq
checkpoint given by --w2v-checkpoint; LibriSpeech extracts the encoder output z (--w2v-layer z);
mini trains two AM seeds per system (its tiny profile's --am-seeds '1 2') and runs stage 7 with
two small curve points.

The four recipe runs are single-threaded processes (OMP_NUM_THREADS=1), so they run two at a time
to use both cores of a CI machine; each test then checks one run's outputs."""

from __future__ import annotations

import json
import math
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from fake_corpora import make_librispeech, make_timit, make_wsj
from recipe_helpers import ROOT, run_script

pytestmark = pytest.mark.slow

FAIRSEQ = ROOT / "tests/fixtures/fairseq_wav2vec/small_large_cfg.pt"


def _check_results(exp: Path, sets: list[str], metrics: list[str]) -> dict:
    results = json.loads((exp / "results.json").read_text())
    assert list(results) == ["logmel", "wav2vec"]
    for system in results.values():
        assert list(system) == sets
        for row in system.values():
            assert sorted(row) == sorted(metrics)
            assert all(isinstance(v, float) and math.isfinite(v) and v >= 0 for v in row.values())
    md = (exp / "RESULTS.md").read_text()
    for name in sets:
        assert f"| {name} |" in md
    assert (exp / "run.cmd").read_text().startswith(str(ROOT / "recipes"))
    return results


def _ok(res: subprocess.CompletedProcess) -> None:
    assert res.returncode == 0, f"stdout:\n{res.stdout[-4000:]}\nstderr:\n{res.stderr[-4000:]}"


def _tiny(recipe: str, exp: Path, *args) -> list:
    return [ROOT / "recipes" / recipe / "run.sh", "--exp", exp, "--profile", "tiny", "--nproc", "1", *args]


# The recipe each test reads, so that `pytest -k mini` runs the mini recipe alone.
RECIPE_OF = {"test_timit_end_to_end": "timit", "test_stage_restart_reuses_earlier_outputs": "timit",
             "test_wsj_end_to_end_in_two_halves": "wsj", "test_librispeech_end_to_end": "librispeech",
             "test_mini_end_to_end_with_am_seeds": "mini", "test_mini_stage_7_curves": "mini"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, request) -> dict:
    """Builds the fake corpora and runs the recipes of the selected tests, two at a time."""
    selected = [getattr(item, "originalname", item.name) for item in request.session.items
                if getattr(getattr(item, "module", None), "__name__", None) == __name__]
    wanted = {RECIPE_OF.get(name) for name in selected}
    if None in wanted:  # a test not in RECIPE_OF: run everything
        wanted = set(RECIPE_OF.values())
    root = tmp_path_factory.mktemp("recipes")
    out: dict = {"root": root}
    work = {}
    if "timit" in wanted:
        out["timit_corpus"] = timit = make_timit(root / "timit_corpus")
        work["timit"] = (run_script, _tiny("timit", root / "timit", "--corpus", timit))
    if "wsj" in wanted:
        wsj0, wsj1 = make_wsj(root / "wsj_corpus")
        # WSJ's tiny run trains with ASG (the paper profile's criterion); the other recipes cover CTC
        wsj_args = _tiny("wsj", root / "wsj", "--wsj0", wsj0, "--wsj1", wsj1, "--w2v-checkpoint", FAIRSEQ,
                         "--criterion", "asg")

        def wsj_in_two_halves(args):
            first = run_script([*args, "--stop-stage", "3"])
            if first.returncode != 0:
                return first, None
            return first, run_script([*args, "--stage", "4"])

        work["wsj"] = (wsj_in_two_halves, wsj_args)
    if "librispeech" in wanted:
        libri = make_librispeech(root / "ls_corpus")
        work["librispeech"] = (run_script, _tiny("librispeech", root / "ls", "--corpus", libri, "--w2v-layer", "z"))
    if "mini" in wanted:
        work["mini"] = (run_script, _tiny("mini", root / "mini", "--curve-am-minutes", "0.5 1",
                                          "--curve-pretrain-minutes", "0.5"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = {name: pool.submit(fn, args) for name, (fn, args) in work.items()}
        out.update({name: job.result() for name, job in jobs.items()})
    return out


def test_timit_end_to_end(runs):
    _ok(runs["timit"])
    exp = runs["root"] / "timit"
    _check_results(exp, ["dev", "test"], ["per"])
    tokens = (exp / "data/lang/tokens.txt").read_text().split()
    assert "sil" in tokens and "ao" not in tokens  # the 39-phone set (ao folds to aa)
    for feat in ("fbank", "w2v"):
        assert (exp / f"am_{feat}/decode_test/hyp.txt").is_file()
        assert (exp / f"data/test_{feat}/feats.scp").is_file()


def test_stage_restart_reuses_earlier_outputs(runs):
    _ok(runs["timit"])
    exp = runs["root"] / "timit"
    made = [exp / "w2v/checkpoint_best.pt", exp / "data/train_w2v/feats.ark", exp / "am_w2v/checkpoint_last.pt",
            exp / "am_fbank/decode_dev/hyp.txt"]
    before = {p: p.stat().st_mtime_ns for p in made}
    (exp / "results.json").unlink()
    res = run_script(_tiny("timit", exp, "--corpus", runs["timit_corpus"], "--stage", "2"))
    _ok(res)
    for step in ("pretrain", "extract_w2v_train", "am_w2v", "decode_fbank_dev"):
        assert f"skip {step}: done" in res.stderr
    assert {p: p.stat().st_mtime_ns for p in made} == before
    _check_results(exp, ["dev", "test"], ["per"])
    assert (exp / "cmd.log").read_text().count("recipes/timit/run.sh") == 2  # both command lines kept


def test_wsj_end_to_end_in_two_halves(runs):
    first, second = runs["wsj"]
    _ok(first)
    assert "stage 2: skipped, --w2v-checkpoint" in first.stderr
    assert "stage 4" not in first.stderr
    _ok(second)
    assert "stage 0" not in second.stderr
    exp = runs["root"] / "wsj"
    assert not (exp / "w2v").exists()
    assert str(FAIRSEQ) in (exp / ".done/extract_w2v_test_eval92").read_text()
    assert (exp / "data/lang_4g/lm.arpa").is_file() and (exp / "data/lang_4g/lexicon.txt").is_file()
    _check_results(exp, ["test_dev93", "test_eval92"], ["wer", "ler"])
    # --criterion asg: repetition labels in the lang, ASG AMs (transitions), ASG emissions decoded
    assert [line.split()[0] for line in (exp / "data/lang/tokens.txt").read_text().splitlines()[-2:]] == ["<1>", "<2>"]
    for feat in ("fbank", "w2v"):
        assert yaml.safe_load((exp / f"am_{feat}/config.yaml").read_text())["model"]["criterion"] == "asg"
        assert yaml.safe_load((exp / f"am_{feat}/decode_test_eval92/emissions.yaml").read_text())["criterion"] == "asg"
    # wav2letter transcripts (lower case); tuned on nov93dev, applied to nov92
    assert "wsj one train" in (exp / "data/train_si284/text").read_text()
    for feat in ("fbank", "w2v"):
        assert (exp / f"am_{feat}/decode_test_dev93/best.yaml").is_file()
        assert not (exp / f"am_{feat}/decode_test_eval92/best.yaml").exists()


def test_librispeech_end_to_end(runs):
    _ok(runs["librispeech"])
    exp = runs["root"] / "ls"
    # the fake release has dev-clean and test-clean only: those are the evaluation sets
    _check_results(exp, ["dev_clean", "test_clean"], ["wer", "ler"])
    # pre-training on the seeded hours subset of train-clean-100 (the tiny profile's 0.002 h)
    pretrain_set = exp / "data/train_clean_100_0.002h"
    assert (pretrain_set / "wav.scp").is_file()
    assert f"--data {pretrain_set}" in (exp / ".done/pretrain").read_text()
    # --w2v-layer z reaches extract: the feature provenance names the layer
    import yaml

    assert yaml.safe_load((exp / "data/test_clean_w2v/feats.yaml").read_text())["layer"] == "z"


SEEDED_KEYS = ["wer", "ler", "wer_min", "wer_max", "ler_min", "ler_max", "seeds"]


def test_mini_end_to_end_with_am_seeds(runs):
    _ok(runs["mini"])
    exp = runs["root"] / "mini"
    results = json.loads((exp / "results.json").read_text())
    assert list(results) == ["logmel", "wav2vec"]
    for system in results.values():
        assert list(system) == ["dev", "test"]
        for row in system.values():
            assert list(row) == SEEDED_KEYS and list(row["seeds"]) == ["1", "2"]
            for metric in ("wer", "ler"):
                seeds = [row["seeds"][s][metric] for s in ("1", "2")]
                assert all(isinstance(v, float) and math.isfinite(v) and v >= 0 for v in seeds)
                assert (row[f"{metric}_min"], row[f"{metric}_max"]) == (min(seeds), max(seeds))
    md = (exp / "RESULTS.md").read_text()
    assert "| dev |" in md and "| test | 2 |" in md
    assert (exp / "data/train_am/wav.scp").is_file()
    assert not (exp / "am_fbank").exists() and not (exp / "am_w2v").exists()
    for feat in ("fbank", "w2v"):
        for seed in (1, 2):
            am = exp / f"am_{feat}_s{seed}"
            assert (am / "checkpoint_last.pt").is_file() and (am / "decode_test/score.json").is_file()
            assert f"seed={seed}" in (exp / f".done/am_{feat}_s{seed}").read_text()
            assert (exp / f"log/am_{feat}_s{seed}.log").stat().st_size > 0  # trained in the background
        # tuned once, on the first seed's AM; applied to every seed's dev and test
        assert (exp / f"am_{feat}_s1/decode_dev/best.yaml").is_file()
        assert not (exp / f"am_{feat}_s2/decode_dev/best.yaml").exists()
        assert f"--params {exp}/am_{feat}_s1/decode_dev/best.yaml" in (exp / f".done/decode_{feat}_s2_dev").read_text()
    # stage 6 draws the report (w2vtk report) and RESULTS.md links it
    from report_checks import check_report

    pngs = check_report(exp / "report" / "index.html")
    names = {p.name for p in pngs}
    assert "results.png" in names and "pretrain_w2v.png" in names
    assert {f"am_am_{f}_s{s}.png" for f in ("fbank", "w2v") for s in (1, 2)} <= names
    assert {"tune_am_fbank_s1_decode_dev.png", "tune_am_w2v_s1_decode_dev.png"} <= names
    assert "report/index.html" in md


def test_mini_stage_7_curves(runs):
    _ok(runs["mini"])
    exp = runs["root"] / "mini"
    curves = json.loads((exp / "curves.json").read_text())
    assert list(curves) == ["am_minutes", "pretrain_minutes"]
    for system in ("logmel", "wav2vec"):
        assert list(curves["am_minutes"][system]) == ["0.5", "1"]
    pre = list(curves["pretrain_minutes"]["wav2vec"])
    assert pre[0] == "0.5" and len(pre) == 2 and float(pre[1]) > 0.5  # the main model: all of train
    for points in (*curves["am_minutes"].values(), curves["pretrain_minutes"]["wav2vec"]):
        for per_set in points.values():
            assert list(per_set) == ["dev", "test"]
            assert all(list(row) == SEEDED_KEYS and list(row["seeds"]) == ["1", "2"] for row in per_set.values())
    # the 1-minute point is stage 4's AMs; 0.5 minute and the 0.5-minute model are new
    assert curves["am_minutes"]["logmel"]["1"]["test"] == json.loads((exp / "results.json").read_text())["logmel"]["test"]
    assert not list((exp / "curves").glob("am_*_1m_s*"))
    for name in ("am_fbank_0.5m_s2", "am_w2v_0.5m_s1", "am_w2v_p0.5m_s2"):
        assert (exp / "curves" / name / "decode_test/score.json").is_file()
    assert (exp / "w2v_p0.5m/checkpoint_best.pt").is_file() and (exp / "data/pretrain_0.5m/wav.scp").is_file()
    assert (exp / "data/train_am_0.5m/wav.scp").is_file()
    import yaml

    main_layer = yaml.safe_load((exp / "data/dev_w2v/feats.yaml").read_text())["layer"]
    assert yaml.safe_load((exp / "data/dev_w2v_p0.5m/feats.yaml").read_text())["layer"] == main_layer
    for png in ("curve_am_minutes.png", "curve_pretrain_minutes.png"):
        assert (exp / png).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    md = (exp / "RESULTS.md").read_text()
    assert "](curve_am_minutes.png)" in md and "](curve_pretrain_minutes.png)" in md
    assert md.index("## Curves") < md.index("## Provenance")
