"""PretrainConfig: the typed config of ``w2vtk pretrain`` (YAML in conf/base.yaml, conf/large.yaml,
conf/tiny.yaml), with fairseq's option names where fairseq has one.

The ``model`` section is a :class:`~w2vtk.models.wav2vec.Wav2VecConfig`; it may start with
``preset: base`` or ``preset: large`` (the paper's models), whose values the other keys override.
The resolved config (saved as ``<exp>/config.yaml`` and inside every checkpoint) lists every field
and no preset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from w2vtk.config import (apply_renames, build_config, check_override_keys, from_dict, merge_dicts, parse_overrides,
                          read_yaml, to_dict)
from w2vtk.errors import W2vtkError
from w2vtk.models.wav2vec import Wav2VecConfig, preset

BATCH_HELP = """\
Batch semantics (fairseq's --max-tokens / --update-freq / --max-sample-size):
max_tokens is a budget in samples PER GPU (per process) PER FORWARD PASS: 1500000 samples =
93.75 s of 16 kHz audio (the paper's value). One update consumes world_size x update_freq such
micro-batches (the global batch): on 8 GPUs with update_freq 1 that is up to 8 x 93.75 s = 750 s of
audio per update; on 1 GPU/CPU with update_freq 8 the same. Utterances are sorted by length and
grouped; every utterance of a global batch is cropped at a random offset to
min(shortest utterance in the global batch, max_sample_size) samples (150000 = 9.375 s), so a
micro-batch holds max_tokens // crop utterances. The data each update sees depends only on
world_size x update_freq and the seed, so 1 process x update_freq 2 trains exactly like
2 processes x update_freq 1. Utterances shorter than the receptive field plus
offset + prediction_steps - 1 frames (or min_sample_size) are skipped and counted."""


@dataclass
class PretrainDataConfig:
    """Batching and loading (the ``data`` section); see BATCH_HELP."""

    max_tokens: int = 1_500_000
    """samples per GPU per forward pass [--max-tokens]; see BATCH_HELP."""
    max_sample_size: int = 150_000
    """longest crop in samples [--max-sample-size]."""
    min_sample_size: int = 0
    """skip utterances shorter than this many samples [--min-sample-size]; the model's own minimum
    (receptive field + offset + prediction_steps - 1 frames) always applies."""
    num_workers: int = 2
    """DataLoader worker processes decoding and cropping audio [--num-workers]; 0 = in the main process."""


@dataclass
class PretrainOptimConfig:
    """Adam, the learning-rate schedule and the update count (the ``optim`` section)."""

    lr: float = 5e-3
    """peak learning rate [--lr]."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """[--adam-betas]."""
    adam_eps: float = 1e-8
    """[--adam-eps]."""
    weight_decay: float = 0.0
    """[--weight-decay]."""
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    """shape after the warm-up [--lr-scheduler]."""
    warmup_updates: int = 500
    """linear warm-up length [--warmup-updates]."""
    warmup_init_lr: float = 1e-7
    """lr at update 0 [--warmup-init-lr]."""
    min_lr: float = 1e-6
    """lr reached at max_update [--min-lr]."""
    max_update: int = 400_000
    """number of optimiser updates [--max-update]."""
    clip_norm: float = 25.0
    """clip the global gradient norm (after normalisation per positive); 0 = off [--clip-norm]."""
    update_freq: int = 1
    """micro-batches accumulated per update on each process [--update-freq]."""


@dataclass
class PretrainCheckpointConfig:
    """Validation and checkpoint cadence (the ``checkpoint`` section)."""

    valid_every: int = 1000
    """validate every N updates (and at the end) [--validate-interval-updates]."""
    validate_at_start: bool = True
    """also validate before the first update of a fresh run (the chance-level baseline)."""
    save_every: int = 1000
    """write checkpoint_last.pt and checkpoint_<update>.pt every N updates [--save-interval-updates]."""
    keep_last: int = 5
    """numbered checkpoints kept (-1 = all, 0 = none) [--keep-interval-updates]."""


_SECTION_KEYS = {
    "data": ("max_tokens", "max_sample_size", "min_sample_size", "num_workers"),
    "optim": ("lr", "adam_betas", "adam_eps", "weight_decay", "lr_scheduler", "warmup_updates",
              "warmup_init_lr", "min_lr", "max_update", "clip_norm", "update_freq"),
    "checkpoint": ("valid_every", "validate_at_start", "save_every", "keep_last"),
}


@dataclass
class PretrainConfig:
    """Everything ``w2vtk pretrain`` needs besides the data paths; fairseq names in brackets.

    Sections: ``model`` (the network and objective), ``data``, ``optim``, ``checkpoint``; the run
    settings below stay at the top. Before w2vtk 0.2 the data / optim / checkpoint keys were flat
    (``lr``, ``max_update``, ...): those names still load, with a note naming the new key."""

    RENAMED: ClassVar[dict[str, str]] = {k: f"{sec}.{k}" for sec, keys in _SECTION_KEYS.items() for k in keys}

    model: Wav2VecConfig = field(default_factory=Wav2VecConfig)
    """the wav2vec model (fairseq --arch wav2vec options); may start with ``preset: base|large``."""
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    optim: PretrainOptimConfig = field(default_factory=PretrainOptimConfig)
    checkpoint: PretrainCheckpointConfig = field(default_factory=PretrainCheckpointConfig)

    # ---- run
    seed: int = 1
    """model init, epoch order, crop offsets and negatives [--seed]."""
    amp: Literal["bf16", "fp16", "none"] = "bf16"
    """mixed precision on CUDA (fp16 uses a loss scaler) [--fp16 / --bf16]; always fp32 on CPU."""
    fp16_init_scale: float = 128.0
    """initial loss scale for amp=fp16 [--fp16-init-scale]."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto = CUDA when available."""
    threads: int = 0
    """intra-op CPU threads per process; 0 = torch's default."""
    log_every: int = 100
    """progress line and metrics.jsonl record every N updates [--log-interval]."""
    max_nonfinite: int = 10
    """stop after this many consecutive non-finite losses / gradients (each is skipped)."""

    def validate(self) -> None:
        d, o, c = self.data, self.optim, self.checkpoint
        positive = (("data.max_tokens", d.max_tokens), ("data.max_sample_size", d.max_sample_size),
                    ("optim.max_update", o.max_update), ("optim.update_freq", o.update_freq),
                    ("checkpoint.valid_every", c.valid_every), ("checkpoint.save_every", c.save_every),
                    ("log_every", self.log_every))
        for name, value in positive:
            if value < 1:
                raise W2vtkError(f"{name}: must be >= 1, got {value}")
        for name, value in (("data.min_sample_size", d.min_sample_size), ("data.num_workers", d.num_workers),
                            ("optim.warmup_updates", o.warmup_updates), ("threads", self.threads),
                            ("max_nonfinite", self.max_nonfinite)):
            if value < 0:
                raise W2vtkError(f"{name}: must be >= 0, got {value}")
        for name, value in (("optim.lr", o.lr), ("optim.adam_eps", o.adam_eps)):
            if not value > 0:
                raise W2vtkError(f"{name}: must be > 0, got {value}")
        if o.clip_norm < 0 or o.weight_decay < 0 or o.min_lr < 0 or o.warmup_init_lr < 0:
            raise W2vtkError("optim.clip_norm, weight_decay, min_lr and warmup_init_lr must be >= 0")
        if not all(0.0 <= b < 1.0 for b in o.adam_betas):
            raise W2vtkError(f"optim.adam_betas: each must be in [0, 1), got {list(o.adam_betas)}")
        self.model.validate()


def _expand_preset(data: dict, where: str) -> dict:
    model = data.get("model")
    if model is None:
        return data
    if not isinstance(model, dict):
        raise W2vtkError(f"{where}: model: expected a mapping, got {model!r}")
    model = dict(model)
    name = model.pop("preset", None)
    if name is not None:
        if not isinstance(name, str):
            raise W2vtkError(f"{where}: model.preset: expected base or large, got {name!r}")
        try:
            base = to_dict(preset(name))
        except W2vtkError as err:
            raise W2vtkError(f"{where}: model.preset: {err}") from None
        model = merge_dicts(base, model)
    return {**data, "model": model}


def load_pretrain_config(path: str | Path | None = None, overrides: list[str] | None = None,
                         notes: list[str] | None = None) -> PretrainConfig:
    """Defaults <- YAML ``path`` <- ``key=value`` overrides (``model.norm=channel``, ``optim.lr=1e-3``),
    checked strictly (unknown key / wrong type -> one-line W2vtkError naming the key and the file
    or the override). Pre-0.2 flat keys (``lr``) load with a deprecation line (to ``notes`` when
    given, else stderr)."""
    where = str(path) if path is not None else "config"
    own: list[str] = [] if notes is None else notes
    data = apply_renames(read_yaml(path), PretrainConfig.RENAMED, where, own) if path is not None else {}
    extra = apply_renames(parse_overrides(overrides), PretrainConfig.RENAMED, "override", own)
    model_extra = extra.get("model")
    checked = extra
    if isinstance(model_extra, dict) and "preset" in model_extra:
        checked = {**extra, "model": {k: v for k, v in model_extra.items() if k != "preset"}}
    check_override_keys(PretrainConfig, checked, list(overrides or []))
    # An overriding preset replaces the file's preset before the other model keys are applied.
    if isinstance(model_extra, dict) and "preset" in model_extra and isinstance(data.get("model"), dict):
        data = {**data, "model": {k: v for k, v in data["model"].items() if k != "preset"}}
        data["model"] = {"preset": model_extra["preset"], **data["model"]}
    data = merge_dicts(data, extra)
    data = _expand_preset(data, where)
    return build_config(PretrainConfig, data, where if path is not None else None, own if notes is None else None)


def config_from_dict(data: dict, where: str = "checkpoint") -> PretrainConfig:
    """A saved config (config.yaml or a checkpoint's ``train_config``), old flat layout included."""
    data = apply_renames(dict(data), PretrainConfig.RENAMED, where)
    return from_dict(PretrainConfig, _expand_preset(data, where), where=where)
