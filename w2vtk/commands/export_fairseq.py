"""``w2vtk export-fairseq CKPT OUT``: a wav2vec checkpoint as fairseq's own checkpoint format."""

from __future__ import annotations

from pathlib import Path

import typer

HELP = (
    "Write a wav2vec checkpoint (a w2vtk pretrain checkpoint, or a fairseq one) in fairseq's format: "
    "the `args` Namespace and fairseq's parameter names, the layout of the released wav2vec_large.pt, "
    "loadable by fairseq's load_model_ensemble_and_task and by `w2vtk extract --checkpoint`.\n\n"
    "The exported file is read back and its weights compared bit for bit before the command succeeds. "
    "Models with `norm: channel` (conf/tiny.yaml, conf/mini.yaml) have no fairseq equivalent and are "
    "refused before anything is written."
)


def register(app: typer.Typer, prep_app: typer.Typer) -> None:
    @app.command("export-fairseq", help=HELP)
    def export_fairseq_cmd(
        ckpt: Path = typer.Argument(..., metavar="CKPT", help="wav2vec checkpoint (e.g. exp/w2v/checkpoint_best.pt)."),
        out: Path = typer.Argument(..., metavar="OUT", help="Output .pt file (written atomically; its directory is created)."),
    ) -> None:
        from w2vtk.models.fairseq import export_checkpoint
        from w2vtk.progress import console

        info = export_checkpoint(ckpt, out)
        updates = "" if info.num_updates is None else f", {info.num_updates} updates"
        console.print(f"wrote {out} (fairseq args format; wav2vec from a {info.source} checkpoint{updates}); "
                      f"weights verified bit-exact after reading it back", highlight=False)
