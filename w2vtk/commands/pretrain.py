"""``w2vtk pretrain``: wav2vec 1.0 pre-training (thin shell over :func:`w2vtk.pretrain.pretrain`)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

HELP = (
    "Pre-train wav2vec 1.0 on unlabeled audio (the contrastive K-step objective of Schneider et al. "
    "2019).\n\n"
    "Writes EXP/config.yaml (the resolved config), EXP/metrics.jsonl (train / valid records), "
    "EXP/checkpoint_last.pt, checkpoint_best.pt (lowest valid loss) and checkpoint_<update>.pt (every "
    "save_every updates, the newest keep_last kept). Checkpoints load with `w2vtk extract --checkpoint` "
    "and hold everything needed to resume exactly; a run resumes by default when EXP/checkpoint_last.pt "
    "exists.\n\n"
    "Override any config field after the options as KEY=VALUE, dotted by section (model, data, optim, checkpoint): "
    "`w2vtk pretrain --conf conf/base.yaml --data data/train --valid data/dev --exp exp/w2v_base "
    "optim.max_update=40000 optim.update_freq=2 model.dropout=0.1`.\n\n"
    "Several GPUs or processes: `torchrun --nproc-per-node 8 -m w2vtk pretrain ...` (NCCL on GPUs, "
    "gloo on CPU); only rank 0 logs and writes.\n\n"
    "BATCHES: max_tokens is a budget in samples PER GPU (per process) PER FORWARD PASS: 1500000 = "
    "93.75 s of 16 kHz audio, the paper's value. One update consumes world_size x update_freq such "
    "micro-batches, so the GLOBAL batch is up to world_size x update_freq x max_tokens samples: 8 GPUs "
    "with update_freq 1 see up to 750 s of audio per update, and so does 1 GPU with update_freq 8. "
    "Utterances are sorted by length; every utterance of a global batch is cropped at a seeded random "
    "offset to min(shortest of them, max_sample_size) samples (150000 = 9.375 s), so a micro-batch "
    "holds max_tokens // crop utterances and nothing is padded. What an update sees depends only on "
    "world_size x update_freq and the seed (1 process x update_freq 2 = 2 processes x update_freq 1). "
    "Utterances shorter than the receptive field plus offset + prediction_steps - 1 frames (2705 "
    "samples = 0.17 s for base and large) are skipped and counted."
)


def register(app: typer.Typer, prep_app: typer.Typer) -> None:
    @app.command("pretrain", help=HELP, context_settings={"allow_extra_args": False})
    def pretrain_cmd(
        overrides: Optional[List[str]] = typer.Argument(
            None, metavar="[KEY=VALUE]...", help="Config overrides, e.g. optim.lr=1e-3 model.norm=channel."),
        conf: Optional[Path] = typer.Option(
            None, "--conf", help="YAML config (conf/base.yaml, conf/large.yaml, conf/tiny.yaml). "
            "Default: EXP/config.yaml when resuming, else the base model's defaults."),
        data: Path = typer.Option(..., "--data", help="Training audio: a Kaldi data dir, a wav.scp file, "
                                  "a fairseq .tsv manifest, or a directory of audio files (recursive)."),
        valid: Optional[Path] = typer.Option(None, "--valid", help="Validation audio (same kinds); "
                                             "without it checkpoint_best.pt follows the training loss."),
        exp: Path = typer.Option(..., "--exp", help="Experiment directory (created)."),
        resume: Optional[bool] = typer.Option(
            None, "--resume/--no-resume", help="Continue from EXP/checkpoint_last.pt (default: when it "
            "exists) / start over (existing checkpoints are replaced as the new run saves)."),
        allow_changes: bool = typer.Option(
            False, "--allow-changes", help="Resume with settings that differ from EXP/config.yaml (the old "
            "file is kept as config.<N>.yaml); without it such a rerun is refused with the differences listed."),
        stop_at: Optional[int] = typer.Option(
            None, "--stop-at-update", help="Stop with a checkpoint once this many updates are done (the "
            "schedule still aims at max_update); rerun to continue exactly (time-limited cluster jobs)."),
    ) -> None:
        from w2vtk.dist import env_info
        from w2vtk.logs import command_log
        from w2vtk.pretrain import load_pretrain_config, pretrain
        from w2vtk.progress import console

        if conf is None and resume is not False and (exp / "config.yaml").is_file() \
                and (exp / "checkpoint_last.pt").is_file():
            conf = exp / "config.yaml"  # a rerun continues the experiment as configured
        with command_log(exp, "pretrain"):
            cfg = load_pretrain_config(conf, list(overrides or []))
            result = pretrain(cfg, data, exp, valid=valid, resume=resume, stop_at=stop_at,
                              allow_changes=allow_changes)
            if env_info().is_main:
                _summary_table(exp, result, console)


def _summary_table(exp: Path, result, console) -> None:
    """The run's figures as a table (printed after a pretrain run, also into its log)."""
    from rich.table import Table

    table = Table(title=f"pretrain {exp}")
    for col in ("updates", "train loss", "valid loss", "valid rank-acc", "best valid loss",
                "skipped (non-finite)", "skipped (short)"):
        table.add_column(col, justify="right")
    v = result.valid or {}
    fmt = (lambda x, f=".4f": "-" if x is None else format(x, f))
    table.add_row(str(result.num_updates), fmt(result.train_loss), fmt(v.get("loss")),
                  fmt(v.get("rank_acc"), ".3f"), fmt(result.best_valid_loss),
                  str(result.skipped_nonfinite), str(result.train_data["skipped_short"]))
    console.print(table)
