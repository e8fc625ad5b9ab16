"""``w2vtk decode`` end to end: emissions cache, tuning that finds the known-best weights, applying
them, outputs and scoring, worker processes, and the refusals (test set, other AM, empty set)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from decode_synth import DEV, emissions_for, inject_emissions, make_am, write_feature_dir
from w2vtk.decoding import BeamConfig, DecodeConfig, Decoder, SearchRanges, error_rates, sample_trials
from w2vtk.decoding.emissions import load_or_compute_emissions
from w2vtk.decoding.run import check_not_test_set, decode_dir, set_name
from w2vtk.lm import LMResources
from w2vtk.errors import W2vtkError

QUIET = {"log": lambda msg: None, "progress_enabled": False}


def _known_emissions(tok) -> dict[str, np.ndarray]:
    """dv1 leans to "cat mat" (an LM weight >= ~1 repairs it); dv2 is "cat saw", right by 1.5 nats a
    frame over the LM's favourite "cat sat" (too much LM weight breaks it); dv3 is clean."""
    def at(text, w, c):
        return sum(len(x) + 1 for x in text.split()[:w]) + c
    n = len(tok)
    return {
        "dv1": emissions_for(tok.encode(DEV["dv1"]), n, confuse={at(DEV["dv1"], 2, 0): (tok.index("m"), 1.0)}),
        "dv2": emissions_for(tok.encode(DEV["dv2"]), n, confuse={at(DEV["dv2"], 2, 2): (tok.index("t"), -1.5)}),
        "dv3": emissions_for(tok.encode(DEV["dv3"]), n),
    }


def _decode_set(tmp_path: Path, am: Path, name: str = "dev", texts: dict | None = None) -> tuple[Path, Path]:
    """A feature data dir ``name`` and a decode dir whose emissions cache holds the known matrices."""
    data = write_feature_dir(tmp_path / name, texts or DEV)
    out = tmp_path / f"decode_{name}"
    em = load_or_compute_emissions(am, data, out, log=lambda m: None, progress_enabled=False)
    inject_emissions(out, _known_emissions(em.tokens))
    return data, out


def test_tuning_finds_the_known_best_lm_weight(lm_case, fake_am, tmp_path):
    _, _, word_lm, _, tok = lm_case
    mats = _known_emissions(tok)
    # the WER of every grid value, computed directly with one decoder per weight
    res = LMResources(word_lm, tok, "lexicon")
    alphas = [round(a, 6) for a in np.linspace(0, 5, 11)]
    direct = {}
    for a in alphas:
        dec = Decoder("lexicon", tok, BeamConfig(lm_weight=a, beam_size=100), res)
        direct[a] = error_rates(DEV, {u: dec.decode(m)[0].words for u, m in mats.items()})["wer"]
    assert direct[0.0] > 0 and direct[5.0] > 0  # no LM: dv1 wrong; all LM: dv2 wrong
    expected = min(a for a in alphas if direct[a] == min(direct.values()))
    assert direct[expected] == 0.0 and 0.5 <= expected <= 2.0

    data, out = _decode_set(tmp_path, fake_am)
    cfg = DecodeConfig(decoder="lexicon", beam=BeamConfig(beam_size=100), search="grid", trials=11, nj=1,
                       ranges=SearchRanges(lm_weight=(0.0, 5.0), word_score=(0.0, 0.0), sil_score=(0.0, 0.0)))
    result = decode_dir(cfg, am_dir=fake_am, data_dir=data, out_dir=out, lang_dir=word_lm, tune=True, **QUIET)
    rows = [line.split("\t") for line in (out / "trials.tsv").read_text().splitlines()]
    assert rows[0] == ["trial", "lm_weight", "word_score", "sil_score", "wer", "ler", "seconds"]
    assert {float(r[1]): float(r[4]) for r in rows[1:]} == pytest.approx(direct)
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["params"] == {"lm_weight": expected, "word_score": 0.0, "sil_score": 0.0}
    assert best["wer"] == 0.0 and result.wer == 0.0
    assert (out / "hyp.txt").read_text().splitlines() == [f"{u} {t}" for u, t in sorted(DEV.items())]
    assert "%WER 0.00 [ 0 / 18," in (out / "wer.txt").read_text()


def test_random_search_in_workers_then_apply_with_params(lm_case, fake_am, tmp_path, capsys):
    from w2vtk.cli import main

    _, _, word_lm, _, _ = lm_case
    data, out = _decode_set(tmp_path, fake_am)
    args = ["decode", "--am", str(fake_am), "--lang", str(word_lm), "--data", str(data), "--out", str(out),
            "--tune", "--trials", "6", "--nj", "2", "--beam-size", "50"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "best 5 of 6 trials" in printed and "real-time factor" in printed
    rows = [line.split("\t") for line in (out / "trials.tsv").read_text().splitlines()[1:]]
    assert len(rows) == 6 and [int(r[0]) for r in rows] == list(range(6))
    for r in rows:
        assert 0 <= float(r[1]) <= 5 and -5 <= float(r[2]) <= 5 and -8 <= float(r[3]) <= 0
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["wer"] == min(float(r[4]) for r in rows) and best["tuned_on"] == str(data)
    # apply to another set, in one process this time, with n-best lists
    test_data, test_out = _decode_set(tmp_path, fake_am, name="test_eval92")
    with pytest.raises(SystemExit) as exc:
        main(["decode", "--am", str(fake_am), "--lang", str(word_lm), "--data", str(test_data), "--out",
              str(test_out), "--params", str(out / "best.yaml"), "--nj", "1", "--nbest", "2"])
    assert exc.value.code in (0, None)
    summary = json.loads((test_out / "decode.json").read_text())
    assert summary["params"]["lm_weight"] == best["params"]["lm_weight"] and summary["rtf"] > 0
    assert summary["audio_seconds"] == pytest.approx(3 * 30 * 0.01)
    for name in ("hyp.txt", "wer.txt", "alignments.txt", "score.json", "nbest.txt", "nbest.tsv", "decode.yaml"):
        assert (test_out / name).is_file(), name
    assert len((test_out / "nbest.txt").read_text().splitlines()) == 6
    score = json.loads((test_out / "score.json").read_text())
    assert score["metrics"]["wer"]["rate"] == pytest.approx(summary["wer"], abs=1e-3)


def test_workers_give_the_same_hypotheses(lm_case, fake_am, tmp_path):
    _, _, word_lm, _, _ = lm_case
    data, out = _decode_set(tmp_path, fake_am)
    hyps = []
    for nj in (1, 2):
        cfg = DecodeConfig(decoder="lexicon", beam=BeamConfig(lm_weight=1.0, beam_size=50), nj=nj)
        decode_dir(cfg, am_dir=fake_am, data_dir=data, out_dir=out, lang_dir=word_lm, **QUIET)
        hyps.append((out / "hyp.txt").read_text())
    assert hyps[0] == hyps[1]


def test_emissions_cache_is_reused_and_other_ams_refused(lm_case, fake_am, tmp_path):
    root, lang, *_ = lm_case
    data, out = _decode_set(tmp_path, fake_am)
    before = (out / "emissions.ark").stat().st_mtime_ns
    logs = []
    em = load_or_compute_emissions(fake_am, data, out, log=logs.append, progress_enabled=False)
    assert "reusing" in logs[0] and (out / "emissions.ark").stat().st_mtime_ns == before
    assert np.array_equal(em.mats["dv3"], _known_emissions(em.tokens)["dv3"])
    prov = yaml.safe_load((out / "emissions.yaml").read_text())
    assert prov["utterances"] == 3 and prov["am_checkpoint"].endswith(".pt")
    other = make_am(tmp_path, lang, DEV, seed=1)
    with pytest.raises(W2vtkError, match="another acoustic model"):
        load_or_compute_emissions(other, data, out, log=lambda m: None)
    # other features (same AM) are refused as well
    other_data = write_feature_dir(tmp_path / "dev2", DEV, seed=5)
    with pytest.raises(W2vtkError, match="other features"):
        load_or_compute_emissions(fake_am, other_data, out, log=lambda m: None)


def test_refusals(lm_case, fake_am, tmp_path, capsys):
    from w2vtk.cli import main

    _, _, word_lm, tok_lm, _ = lm_case

    def run(args):
        with pytest.raises(SystemExit) as exc:
            main(["decode", "--am", str(fake_am), "--lang", str(word_lm)] + args)
        err = capsys.readouterr().err
        assert exc.value.code == 1 and err.startswith("error:") and len(err.strip().splitlines()) == 1, err
        return err

    test_set = write_feature_dir(tmp_path / "test_clean_fbank", DEV)
    err = run(["--data", str(test_set), "--out", str(tmp_path / "t1"), "--tune"])
    assert "'test_clean' is a test set" in err and not (tmp_path / "t1" / "emissions.ark").exists()
    dev = write_feature_dir(tmp_path / "mydev", DEV)
    assert "'mydev' is a test set" in run(["--data", str(dev), "--out", str(tmp_path / "t2"), "--tune",
                                          "--test-sets", "eval,mydev"])
    empty = write_feature_dir(tmp_path / "dev_empty", {u: "" for u in DEV})
    assert "every transcript is empty" in run(["--data", str(empty), "--out", str(tmp_path / "t3"), "--tune"])
    (empty / "text").write_text("")
    assert "no utterances" in run(["--data", str(empty), "--out", str(tmp_path / "t4")])
    assert "--tune and --params" in run(["--data", str(dev), "--out", str(tmp_path / "t5"), "--tune",
                                         "--params", str(tmp_path / "best.yaml")])
    assert "greedy has nothing to tune" in run(["--data", str(dev), "--out", str(tmp_path / "t6"), "--tune",
                                                "--decoder", "greedy"])
    assert "token-level LM" in run(["--data", str(dev), "--out", str(tmp_path / "t7"), "--decoder", "lexfree"])
    bad = tmp_path / "best.yaml"
    bad.write_text("params: {lm_weight: 1.0, alpha: 2}\n")
    assert "unknown key(s) alpha" in run(["--data", str(dev), "--out", str(tmp_path / "t8"), "--params", str(bad)])
    assert not (tmp_path / "t8" / "hyp.txt").exists()
    # a test set renamed to look like a dev set is still refused: its role was recorded at prep time
    from w2vtk.data.kaldi_dir import write_role

    renamed = write_feature_dir(tmp_path / "dev_copy", DEV)
    write_role(renamed, "test")
    assert "is a test set (its 'role' file" in run(["--data", str(renamed), "--out", str(tmp_path / "t9"),
                                                   "--tune"])


def test_grid_and_random_trials():
    base = BeamConfig()
    grid = sample_trials(SearchRanges(), 27, "grid", 0, base)
    assert len(grid) == 27 and {t.lm_weight for t in grid} == {0.0, 2.5, 5.0}
    assert {t.sil_score for t in grid} == {-8.0, -4.0, 0.0}
    rnd = sample_trials(SearchRanges(), 10, "random", 3, base)
    assert rnd == sample_trials(SearchRanges(), 10, "random", 3, base)  # seeded
    assert len({t.lm_weight for t in rnd}) == 10
    free = sample_trials(SearchRanges(), 9, "grid", 0, base, tune_word_score=False)
    assert set_name("data/test_eval92_w2v") == "test_eval92" and set_name("data/test_dev93_fbank") == "test_dev93"
    check_not_test_set(Path("data/test_dev93_w2v"), DecodeConfig().test_sets)  # WSJ's dev set is allowed
    with pytest.raises(W2vtkError, match="'test_eval92' is a test set"):
        check_not_test_set(Path("data/test_eval92_w2v"), DecodeConfig().test_sets)
    assert len(free) == 9 and {t.word_score for t in free} == {0.0}
    with pytest.raises(W2vtkError, match="low"):
        sample_trials(SearchRanges(lm_weight=(3.0, 1.0)), 4, "random", 0, base)


def test_interrupted_tuning_resumes(lm_case, fake_am, tmp_path):
    _, _, word_lm, _, _ = lm_case
    data, out = _decode_set(tmp_path, fake_am)
    cfg = DecodeConfig(decoder="lexicon", beam=BeamConfig(beam_size=30), trials=4, nj=1)
    first = decode_dir(cfg, am_dir=fake_am, data_dir=data, out_dir=out, lang_dir=word_lm, tune=True, **QUIET)
    state = json.loads((out / "trials.json").read_text())
    assert len([r for r in state["rows"] if r]) == 4
    state["rows"][2] = None  # as if the run had stopped before trial 2 finished
    state["rows"][1]["wer"] = -1.0  # a marker: a kept row is not recomputed
    (out / "trials.json").write_text(json.dumps(state))
    logs = []
    again = decode_dir(cfg, am_dir=fake_am, data_dir=data, out_dir=out, lang_dir=word_lm, tune=True,
                       log=logs.append, progress_enabled=False)
    assert any("resuming, 3 of 4 trials" in m for m in logs)
    rows = {r["trial"]: r for r in again.trials}
    recomputed = {k: v for k, v in rows[2].items() if k != "seconds"}
    assert rows[1]["wer"] == -1.0
    assert recomputed == {k: v for k, v in first.trials[2].items() if k != "seconds"}
    # another search (other seed) starts over
    cfg.seed = 1
    third = decode_dir(cfg, am_dir=fake_am, data_dir=data, out_dir=out, lang_dir=word_lm, tune=True, **QUIET)
    assert all(r["wer"] >= 0 for r in third.trials)


def test_an_lm_only_the_worker_processes_load_fails_in_one_line(lm_case, fake_am, tmp_path):
    """With --nj > 1 the LM is loaded in the worker processes only: a damaged lm.bin must still end
    as the worker's one-line error (not a BrokenProcessPool traceback), with no hyp.txt."""
    import shutil

    _, _, word_lm, _, _ = lm_case
    bad = tmp_path / "bad_lm"
    shutil.copytree(word_lm, bad)
    (bad / "lm.bin").write_bytes((word_lm / "lm.bin").read_bytes()[:1000])
    data, out = _decode_set(tmp_path, fake_am)
    cfg = DecodeConfig(decoder="lexicon", beam=BeamConfig(beam_size=20), nj=2)
    with pytest.raises(W2vtkError, match=r"lm\.bin: flashlight cannot load it"):
        decode_dir(cfg, am_dir=fake_am, data_dir=data, out_dir=out, lang_dir=bad, **QUIET)
    assert not (out / "hyp.txt").exists()


def test_conf_and_key_value_overrides_like_every_stage(lm_case, fake_am, tmp_path, capsys):
    """decode takes --conf FILE and positional KEY=VALUE like pretrain and train-am; the old
    --config / --set still work, each with a one-line note naming the new form."""
    from w2vtk.cli import main

    _, _, word_lm, _, _ = lm_case
    data, out = _decode_set(tmp_path, fake_am)
    conf = tmp_path / "dec.yaml"
    conf.write_text("decoder: lexicon\nbeam: {beam_size: 40}\n")
    with pytest.raises(SystemExit) as exc:
        main(["decode", "--am", str(fake_am), "--lang", str(word_lm), "--data", str(data), "--out", str(out),
              "--conf", str(conf), "beam.lm_weight=1.5", "nj=1"])
    assert exc.value.code in (0, None)
    used = yaml.safe_load((out / "decode.yaml").read_text())
    assert "note:" not in capsys.readouterr().err
    assert "real-time factor" in (out / "log" / "decode.log").read_text()
    flat = json.dumps(used)
    assert '"beam_size": 40' in flat and '"lm_weight": 1.5' in flat
    with pytest.raises(SystemExit) as exc:
        main(["decode", "--am", str(fake_am), "--lang", str(word_lm), "--data", str(data), "--out", str(out),
              "--config", str(conf), "--set", "beam.lm_weight=0.5", "nj=1"])
    assert exc.value.code in (0, None)
    err = capsys.readouterr().err
    assert "--config is now --conf" in err and "--set KEY=VALUE is now a plain KEY=VALUE" in err
    with pytest.raises(SystemExit) as exc:
        main(["decode", "--am", str(fake_am), "--lang", str(word_lm), "--data", str(data), "--out", str(out),
              "beam.lm_wieght=1"])
    err = capsys.readouterr().err
    assert exc.value.code == 1 and "override 'beam.lm_wieght=1'" in err and "did you mean 'beam.lm_weight'" in err


def test_tuning_as_array_jobs_merges_to_the_one_process_search(lm_case, fake_am, tmp_path, capsys):
    # what `decode --tune --cmd slurm` runs, minus the scheduler: the parent's emissions and
    # decode.yaml, two array jobs (--trial-job K --trial-jobs 2) each taking every other trial, the
    # merge into trials.json; the parent's search then has nothing left to run and picks the same best
    from cli_helpers import run_main
    from w2vtk.config import save_config
    from w2vtk.decoding.tune import merge_job_trials

    _, _, word_lm, _, tok = lm_case
    cfg = DecodeConfig(decoder="lexicon", beam=BeamConfig(beam_size=50), trials=5, nj=1)
    data, whole = _decode_set(tmp_path, fake_am)
    decode_dir(cfg, am_dir=fake_am, data_dir=data, out_dir=whole, lang_dir=word_lm, tune=True, **QUIET)
    split = tmp_path / "split"
    load_or_compute_emissions(fake_am, data, split, log=lambda m: None, progress_enabled=False)
    inject_emissions(split, _known_emissions(tok))
    save_config(cfg, split / "decode.yaml")
    base = ["decode", "--am", str(fake_am), "--lang", str(word_lm), "--data", str(data), "--out", str(split),
            "--conf", str(split / "decode.yaml"), "--tune", "--nj", "1", "--trial-jobs", "2"]
    for k in (1, 2):
        code, out, err = run_main(capsys, base + ["--trial-job", str(k)])
        assert code == 0, err
        assert f"tune job {k} of 2: {3 if k == 1 else 2} trials, 0 already done" in out
    jobs = {k: json.loads((split / f"trials.job{k}.json").read_text())["rows"] for k in (1, 2)}
    assert [r["trial"] for r in jobs[1]] == [0, 2, 4] and [r["trial"] for r in jobs[2]] == [1, 3]
    code, out, _ = run_main(capsys, base + ["--trial-job", "1"])  # a rerun of a finished job does nothing
    assert code == 0 and "3 trials, 3 already done" in out
    assert merge_job_trials(cfg, cfg.beam, split, word_lm, True) == 0
    assert not list(split.glob("trials.job*.json"))
    logs = []
    decode_dir(cfg, am_dir=fake_am, data_dir=data, out_dir=split, lang_dir=word_lm, tune=True, log=logs.append,
               progress_enabled=False)
    assert any("5 of 5 trials already done" in m for m in logs)

    def rows(d):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in json.loads((d / "trials.json").read_text())["rows"]]
    assert rows(split) == rows(whole)
    assert yaml.safe_load((split / "best.yaml").read_text())["params"] == \
        yaml.safe_load((whole / "best.yaml").read_text())["params"]
    assert (split / "hyp.txt").read_text() == (whole / "hyp.txt").read_text()
    code, _, err = run_main(capsys, base[:8] + [str(tmp_path / "nothing"), "--tune", "--trial-job", "1",
                                                "--trial-jobs", "2"])
    assert code != 0 and "has no emissions cache" in err


def test_decode_as_array_jobs_equals_the_one_process_decode(lm_case, fake_am, tmp_path, monkeypatch):
    # decode_dir's array path (--cmd slurm) with its jobs run one after another on this machine by
    # w2vtk.cluster's local backend (real `w2vtk decode --decode-job K` processes; the Slurm submission
    # itself is tested in tests/test_cluster_slurm.py): the merged hypotheses are the one-process ones
    from w2vtk import cluster
    from w2vtk.decoding import run as decode_run

    _, _, word_lm, _, tok = lm_case
    cfg = DecodeConfig(decoder="lexicon", beam=BeamConfig(beam_size=50, lm_weight=1.0, nbest=2), nj=2)
    data, whole = _decode_set(tmp_path, fake_am)
    one = decode_dir(cfg, am_dir=fake_am, data_dir=data, out_dir=whole, lang_dir=word_lm, **QUIET)
    split = tmp_path / "split"
    load_or_compute_emissions(fake_am, data, split, log=lambda m: None, progress_enabled=False)
    inject_emissions(split, _known_emissions(tok))
    monkeypatch.setattr(decode_run, "run_jobs", lambda cmd, *a, **kw: cluster.run_jobs(cluster.CmdConfig(), *a, **kw))
    logs: list[str] = []
    arr = decode_dir(cfg, am_dir=fake_am, data_dir=data, out_dir=split, lang_dir=word_lm, log=logs.append,
                     progress_enabled=False, cmd=cluster.CmdConfig("slurm"))
    assert any("as a slurm array of 2 jobs" in m for m in logs)
    assert (split / "hyp.txt").read_text() == (whole / "hyp.txt").read_text()
    assert (split / "nbest.txt").read_text() == (whole / "nbest.txt").read_text()
    assert arr.wer == one.wer and not list(split.glob("hyps.job*.json"))
    job_logs = sorted(p.name for p in (split / "log").glob("decode.*.log"))
    assert job_logs == ["decode.1.log", "decode.2.log"]
    assert "decode job 2 of 2:" in (split / "log" / "decode.2.log").read_text()


def test_emissions_as_array_jobs_write_the_one_process_bytes_and_resume(lm_case, fake_am, tmp_path, monkeypatch,
                                                                         capsys):
    # decode_dir's emissions under --cmd slurm: array jobs (real `w2vtk decode --emissions-job K`
    # processes, run here by w2vtk.cluster's local backend) each computing whole batches of the
    # one-process run; the merged ark is that run's, byte for byte. A rerun keeps a finished job.
    from cli_helpers import run_main
    from w2vtk import cluster
    from w2vtk.config import save_config
    from w2vtk.decoding import run as decode_run
    from w2vtk.decoding.emissions import emission_shards
    from w2vtk.am.data import load_feature_dir

    texts = {f"u{i}": "the cat sat" for i in range(7)}
    data = write_feature_dir(tmp_path / "dev7", texts)
    cfg = DecodeConfig(decoder="greedy", nj=3, batch_frames=60)  # batches of two 30-frame utterances
    shards = emission_shards(load_feature_dir(data, need_text=False), 60, 3)
    assert sorted(len(b) for s in shards for b in s) == [1, 2, 2, 2] and len(shards) == 3
    whole = tmp_path / "whole"
    decode_dir(cfg, am_dir=fake_am, data_dir=data, out_dir=whole, **QUIET)

    split = tmp_path / "split"
    split.mkdir()
    save_config(cfg, split / "decode.yaml")
    base = ["decode", "--am", str(fake_am), "--data", str(data), "--out", str(split), "--conf",
            str(split / "decode.yaml"), "--emissions-jobs", "3", "--emissions-job"]
    code, out, err = run_main(capsys, base + ["1"])  # job 1 finished before the array was cut short
    assert code == 0 and "emissions job 1 of 3:" in out, err
    record = json.loads((split / "emissions.job1.json").read_text())
    assert record["signature"]["batches"] == shards[0]
    code, out, _ = run_main(capsys, base + ["1"])
    assert code == 0 and "already done" in out
    ark1 = split / "emissions.job1.ark"
    ark1.write_bytes(ark1.read_bytes()[:-100])  # the record outlived a crash, the archive did not
    code, out, _ = run_main(capsys, base + ["1"])
    assert code == 0 and "already done" not in out and record["ark_bytes"] == ark1.stat().st_size
    code, _, err = run_main(capsys, base + ["4"])
    assert code != 0 and "--emissions-job 4: must be 1..3" in err

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(decode_run, "run_jobs", lambda cmd, *a, **kw: cluster.run_jobs(cluster.CmdConfig(), *a, **kw))
    logs: list[str] = []
    arr = decode_dir(cfg, am_dir=fake_am, data_dir=data, out_dir=split, log=logs.append, progress_enabled=False,
                     cmd=cluster.CmdConfig("slurm"))
    assert any("emissions: 3 slurm array jobs" in m for m in logs)
    assert "already done" in (split / "log" / "emissions.1.log").read_text()
    assert "emissions job 3 of 3: 2 utterances" in (split / "log" / "emissions.3.log").read_text()
    assert (split / "emissions.ark").read_bytes() == (whole / "emissions.ark").read_bytes()
    assert (split / "emissions.scp").read_text() == (whole / "emissions.scp").read_text().replace(str(whole), str(split))
    info = yaml.safe_load((split / "emissions.yaml").read_text())
    assert info["array_jobs"] == 3 and info["utterances"] == 7
    assert not list(split.glob("emissions.job*")) and not list(split.glob(".*.tmp"))
    assert (split / "hyp.txt").read_text() == (whole / "hyp.txt").read_text() and arr.ler is not None

    # a record from another model's run is not "done": the job recomputes its shard
    other = tmp_path / "other"
    other.mkdir()
    save_config(cfg, other / "decode.yaml")
    bad = {"signature": {**record["signature"], "am_checkpoint_sha256": "0" * 64}, "seconds": 1.0}
    (other / "emissions.job1.json").write_text(json.dumps(bad))
    capsys.readouterr()
    code, out, _ = run_main(capsys, base[:6] + [str(other)] + base[7:] + ["1"])
    assert code == 0 and "already done" not in out
    assert f"emissions job 1 of 3: {sum(len(b) for b in shards[0])} utterances" in out
