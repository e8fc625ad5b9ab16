"""``w2vtk decode --am EXP --lang LM_DIR --data FEATS_DIR --out DIR [--tune | --params best.yaml]``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer, prep_app: typer.Typer) -> None:
    @app.command("decode")
    def decode_cmd(
        am: Path = typer.Option(..., "--am", help="Acoustic-model exp dir (w2vtk train-am)."),
        data: Path = typer.Option(..., "--data", help="Feature data dir with feats.scp and text."),
        out: Path = typer.Option(..., "--out", help="Decode dir (emissions cache, hyp.txt, scores)."),
        lang: Path = typer.Option(None, "--lang", help="LM dir from `w2vtk prep lm` (lexicon / lexfree)."),
        decoder: str = typer.Option(None, "--decoder", help="greedy | lexicon | lexfree (default: the config's, lexicon)."),
        conf: Path = typer.Option(None, "--conf", help="conf/decode/*.yaml (DecodeConfig)."),
        config: Path = typer.Option(None, "--config", hidden=True, help="Old name of --conf."),
        tune: bool = typer.Option(False, "--tune", help="Search lm_weight / word_score / sil_score on this "
                                  "(dev) set; writes trials.tsv and best.yaml."),
        trials: int = typer.Option(None, "--trials", help="Number of tuning trials (default 64)."),
        grid: bool = typer.Option(False, "--grid", help="Grid instead of random search."),
        params: Path = typer.Option(None, "--params", help="Apply tuned parameters (best.yaml)."),
        test_sets: List[str] = typer.Option(None, "--test-sets", help="Sets that --tune refuses "
                                            "(repeatable or comma separated; default: the config's list)."),
        nj: int = typer.Option(None, "--nj", help="Decoder processes (default: all usable cores)."),
        nbest: int = typer.Option(None, "--nbest", help="Write the N best hypotheses (nbest.txt, nbest.tsv)."),
        beam_size: int = typer.Option(None, "--beam-size", help="Beam size (default 500)."),
        lm_weight: float = typer.Option(None, "--lm-weight", help="alpha: weight of the log10 LM score."),
        word_score: float = typer.Option(None, "--word-score", help="beta: score per word."),
        sil_score: float = typer.Option(None, "--sil-score", help="gamma: score per silence."),
        cmd: str = typer.Option("local", "--cmd", help="local, or slurm: the emissions, --tune's trials and the "
                                "decode as Slurm arrays of --nj jobs (sbatch --array; logs OUT/log/emissions.JOB.log, "
                                "tune.JOB.log, decode.JOB.log), merged and scored here."),
        cmd_opts: str = typer.Option("", "--cmd-opts", help="Extra sbatch options for --cmd slurm."),
        trial_job: int = typer.Option(None, "--trial-job", hidden=True, help="One array job of a --cmd slurm tuning."),
        trial_jobs: int = typer.Option(0, "--trial-jobs", hidden=True, help="The array's size."),
        decode_job: int = typer.Option(None, "--decode-job", hidden=True, help="One array job of a --cmd slurm decode."),
        decode_jobs: int = typer.Option(0, "--decode-jobs", hidden=True, help="The array's size."),
        emissions_job: int = typer.Option(None, "--emissions-job", hidden=True, help="One array job of the "
                                          "emissions of a --cmd slurm decode."),
        emissions_jobs: int = typer.Option(0, "--emissions-jobs", hidden=True, help="The array's size."),
        set_: List[str] = typer.Option(None, "--set", hidden=True, help="Old form of a KEY=VALUE override."),
        overrides: Optional[List[str]] = typer.Argument(None, metavar="[KEY=VALUE]...", help="Config overrides, "
                                                        "e.g. beam.beam_threshold=30 trials=16."),
    ) -> None:
        """Decode a feature set with greedy or flashlight-text beam search, tune on dev, score, report the RTF."""
        from w2vtk.config import load_config, print_notes
        from w2vtk.decoding import DecodeConfig
        from w2vtk.errors import W2vtkError
        from w2vtk.logs import command_log
        from w2vtk.progress import LoggedConsole

        notes = []
        if config is not None:
            if conf is not None:
                raise W2vtkError("--config is the old name of --conf; give only --conf")
            notes.append("decode --config is now --conf (the old name still works for now)")
            conf = config
        if set_:
            notes.append("decode --set KEY=VALUE is now a plain KEY=VALUE argument (the old form still works "
                         "for now)")
        overrides = list(set_ or []) + list(overrides or [])
        for key, value in (("decoder", decoder), ("trials", trials), ("nj", nj), ("beam.nbest", nbest),
                           ("beam.beam_size", beam_size), ("beam.lm_weight", lm_weight),
                           ("beam.word_score", word_score), ("beam.sil_score", sil_score)):
            if value is not None:
                overrides.append(f"{key}={value}")
        if grid:
            overrides.append("search=grid")
        cfg = load_config(DecodeConfig, conf, overrides, notes=notes)
        print_notes(notes)
        if test_sets:
            cfg.test_sets = [t for item in test_sets for t in item.split(",") if t]
        from w2vtk.cluster import CmdConfig

        cluster = CmdConfig.parse(cmd, cmd_opts)
        console = LoggedConsole()
        job = _array_job(emissions=(emissions_job, emissions_jobs), trial=(trial_job, trial_jobs),
                         decode=(decode_job, decode_jobs))
        if job is not None:  # an array job: its output is its own log
            from w2vtk.decoding.run import decode_dir

            decode_dir(cfg, am_dir=am, data_dir=data, out_dir=out, lang_dir=lang, tune=tune, params=params,
                       log=lambda m: console.print(m, highlight=False, markup=False), job=job)
            return
        with command_log(out, "decode"):
            _run(cfg, am, data, out, lang, tune, params, console, cluster)


def _array_job(**given: tuple):
    """The one array job of the hidden --KIND-job K --KIND-jobs N options (None: not a job)."""
    from w2vtk.decoding.run import ArrayJob
    from w2vtk.errors import W2vtkError

    jobs = [ArrayJob(kind, k, n) for kind, (k, n) in given.items() if k is not None]
    if len(jobs) > 1:
        raise W2vtkError("give one of --emissions-job, --trial-job and --decode-job")
    return jobs[0] if jobs else None


def _run(cfg, am, data, out, lang, tune, params, console, cluster=None) -> None:
    from w2vtk.decoding.run import decode_dir
    from w2vtk.decoding.tune import best_table

    def log(msg: str) -> None:
        console.print(msg, highlight=False, markup=False)

    res = decode_dir(cfg, am_dir=am, data_dir=data, out_dir=out, lang_dir=lang, tune=tune, params=params,
                     log=log, cmd=cluster)
    if res.trials:
        console.print(best_table(res.trials))
        log(f"wrote {out / 'trials.tsv'} and {out / 'best.yaml'}")
    for line in (out / "wer.txt").read_text(encoding="utf-8").splitlines():
        log(line)
    p = res.params
    weights = "" if res.decoder == "greedy" else (f"; lm_weight {p['lm_weight']}, word_score "
                                                  f"{p['word_score']}, sil_score {p['sil_score']}")
    log(f"{res.decoder}: {res.utterances} utterances, {res.audio_seconds:.1f} audio-s{weights}")
    emis = f", emissions RTF {res.emissions_rtf}" if res.emissions_rtf is not None else ""
    log(f"real-time factor (search wall time / audio): {res.rtf:.3g}{emis}; hyp.txt, wer.txt, score.json, "
        f"decode.json in {out}")
