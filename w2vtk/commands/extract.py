"""``w2vtk extract``: wav2vec (z, c, context-N) or log-mel features into Kaldi ark/scp."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer, prep_app: typer.Typer) -> None:
    @app.command("extract")
    def extract(
        input: Path = typer.Option(..., "--in", help="Audio: a Kaldi data dir (wav.scp [+ segments]), a "
                                   "wav.scp file, a fairseq .tsv manifest, or a directory of audio files "
                                   "(recursive; utterance id = relative path without extension, '/' -> '-')."),
        out: Optional[Path] = typer.Option(None, "--out", help="Archive DIR/feats.ark; feats.scp, "
                                           "utt2num_frames and feats.yaml are written beside it (for "
                                           "another name X.ark: X.scp, X.utt2num_frames, X.yaml)."),
        out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="New directory (e.g. data/train_w2v) "
                                               "holding feats.ark/scp; for a data-dir input also copies of "
                                               "its tables, so it is a data dir of its own."),
        checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="w2vtk or fairseq wav2vec "
                                                  "1.0 checkpoint (for --type wav2vec)."),
        layer: str = typer.Option("c", "--layer", help="c (context output), z (encoder output) or "
                                  "context-N (context layer N, 1-based, after its residual)."),
        feature_type: str = typer.Option("wav2vec", "--type", help="wav2vec or logmel (80 log-mel bins, "
                                         "25 ms / 10 ms, Kaldi-compatible)."),
        dtype: str = typer.Option("float32", "--dtype", help="Storage: float32 (Kaldi FM) or float16 "
                                  "(kaldiio NPY records, half the size)."),
        compress: bool = typer.Option(False, "--compress", help="Kaldi's lossy CM compression (float32)."),
        npy_dir: Optional[Path] = typer.Option(None, "--npy-dir", help="Also write <utt>.npy per utterance "
                                               "here (alone: .npy only)."),
        batch_samples: int = typer.Option(1_600_000, "--batch-samples", help="Padded samples per batch "
                                          "(utterances sorted by length)."),
        num_shards: int = typer.Option(1, "--num-shards", help="Fixed number of shards (archives); "
                                       "torchrun ranks take them round-robin; keep it on --resume."),
        resume: bool = typer.Option(False, "--resume", help="Finish an interrupted run (any number of "
                                    "processes)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
        precision: str = typer.Option("fp32", "--precision", help="fp32 (TF32 off on CUDA) or bf16 "
                                      "(CUDA autocast)."),
        num_workers: int = typer.Option(2, "--num-workers", help="Audio-decoding worker processes."),
        long_chunk_seconds: float = typer.Option(60.0, "--long-chunk-seconds", help="Utterances longer than "
                                                 "this are extracted in chunks of this length, exactly "
                                                 "(whole-utterance normalisation statistics)."),
        approx_chunks: bool = typer.Option(False, "--approx-chunks", help="Opt-in: normalise each chunk "
                                           "on its own (faster, not exact; the measured error is "
                                           "printed)."),
        dither: float = typer.Option(0.0, "--dither", help="log-mel: Gaussian dither in 16-bit units "
                                     "(seeded), 0 = none."),
        seed: int = typer.Option(0, "--seed", help="Seed of the log-mel dither."),
        fail_on_short: bool = typer.Option(False, "--fail-on-short", help="Fail on audio shorter than one "
                                           "frame's receptive field instead of skipping it."),
        cmd: str = typer.Option("local", "--cmd", help="local, or slurm: the --num-shards shards as a Slurm "
                                "array job (sbatch --array), merged here; rerun with --resume after a failure."),
        cmd_opts: str = typer.Option("", "--cmd-opts", help="Extra sbatch options for --cmd slurm, e.g. "
                                     "'--partition gpu --gres gpu:1 --time 60'."),
        jobs_log_dir: Optional[Path] = typer.Option(None, "--log-dir", help="--cmd slurm: the jobs' logs "
                                               "extract.JOB.log (default OUT_DIR/log)."),
        job: Optional[int] = typer.Option(None, "--job", hidden=True, help="One shard of a prepared array run."),
    ) -> None:
        """Extract features into Kaldi ark/scp (+ utt2num_frames, feats.yaml provenance)."""
        from w2vtk.cluster import CmdConfig
        from w2vtk.features.extract import ExtractOptions
        from w2vtk.features.run import ExtractRequest, run_extract
        from w2vtk.progress import console

        opts = ExtractOptions(dtype=dtype, compress=compress, batch_samples=batch_samples,
                              num_shards=num_shards, resume=resume, overwrite=overwrite,
                              num_workers=num_workers, fail_on_short=fail_on_short)
        req = ExtractRequest(input=input, out=out, out_dir=out_dir, npy_dir=npy_dir,
                             feature_type=feature_type, checkpoint=checkpoint, layer=layer, device=device,
                             precision=precision, long_chunk_seconds=long_chunk_seconds,
                             approx_chunks=approx_chunks, dither=dither, seed=seed, options=opts,
                             cmd=CmdConfig.parse(cmd, cmd_opts), job=job, log_dir=jobs_log_dir)
        from w2vtk.dist import cleanup, env_info
        from w2vtk.logs import command_log

        log_dir = out_dir or (out.parent if out is not None else npy_dir) or Path(".")
        import contextlib

        # an array job's output goes to its own log, extract.JOB.log (w2vtk.cluster)
        with (command_log(log_dir, "extract") if job is None else contextlib.nullcontext()):
            try:
                result = run_extract(req, log=lambda m: console.print(m, highlight=False, soft_wrap=True))
            finally:
                cleanup()
            _summary(result, env_info().is_main, console)


def _summary(result, is_main: bool, console) -> None:
    if is_main and result.complete:
        rate = result.audio_seconds / result.wall_seconds if result.wall_seconds > 0 else 0.0
        how = (f"{result.array_jobs} array jobs and the merge in {result.wall_seconds:.1f} s; their rates are in "
               f"their logs" if result.array_jobs else f"{result.audio_seconds:.1f} audio-s this run, {rate:.1f} audio-s/s")
        console.print(f"extracted {result.num_utterances} utterances, {result.num_frames} frames ({how})"
                      + (f"; skipped {len(result.skipped)} short" if result.skipped else "")
                      + (f" -> {result.scp}" if result.scp else ""), highlight=False, soft_wrap=True)
