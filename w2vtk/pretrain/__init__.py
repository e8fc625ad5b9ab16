"""wav2vec 1.0 pre-training (``w2vtk pretrain``): config, data pipeline, training loop.

- :mod:`w2vtk.pretrain.config`: :class:`PretrainConfig`, :func:`load_pretrain_config`, BATCH_HELP
- :mod:`w2vtk.pretrain.data`: utterance lists (data dir, wav.scp, .tsv manifest, audio dir),
  the length-bucketed global batch plan, seeded crops, DataLoader worker loading
- :mod:`w2vtk.pretrain.trainer`: :func:`pretrain`, the loop (DDP, AMP, accumulation, exact resume)
"""

from w2vtk.pretrain.config import BATCH_HELP, PretrainConfig, load_pretrain_config  # noqa: F401


def pretrain(*args, **kwargs):
    """See :func:`w2vtk.pretrain.trainer.pretrain` (imported lazily: it pulls in torch)."""
    from w2vtk.pretrain.trainer import pretrain as _pretrain

    return _pretrain(*args, **kwargs)
