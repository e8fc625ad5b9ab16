"""Typed config of ``w2vtk train-am`` (``conf/am/*.yaml``).

The paper trained its acoustic models with wav2letter++ and the ASG criterion. w2vtk trains either:
``model.criterion: ctc`` (the default; ``conf/am/timit.yaml``, ``wsj.yaml`` hold CTC-adapted
optimiser values, the paper's are kept, for the record, in their ``paper:`` mapping, saved with the
resolved config but never read by the trainer) or ``asg`` (``conf/am/timit_asg.yaml``,
``wsj_asg.yaml``: the paper's / wav2letter's own values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Optional

from w2vtk.errors import W2vtkError
from w2vtk.models.am import AMConfig


@dataclass
class OptimConfig:
    """Optimiser. ``name`` sgd (``momentum`` 0 = wav2letter's plain SGD) or adam (``betas``, ``eps``)."""

    name: Literal["sgd", "adam"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    weight_decay: float = 0.0
    clip_norm: float = 10.0  # 0 disables gradient clipping
    transitions_lr: float = 0.0  # ASG: lr of the transitions (wav2letter's --lrcrit); 0: optim.lr
    max_update: int = 0  # 0: no limit; stops (and saves) after this many updates (pretrain's optim.max_update)

    def validate(self) -> None:
        if self.max_update < 0:
            raise W2vtkError(f"optim.max_update: must be >= 0, got {self.max_update}")
        if self.lr <= 0:
            raise W2vtkError(f"optim.lr: must be > 0, got {self.lr}")
        if self.transitions_lr < 0:
            raise W2vtkError(f"optim.transitions_lr: must be >= 0, got {self.transitions_lr}")
        if self.clip_norm < 0:
            raise W2vtkError(f"optim.clip_norm: must be >= 0, got {self.clip_norm}")


@dataclass
class ScheduleConfig:
    """Learning rate: linear warm-up from ``warmup_init_lr`` over ``warmup_updates`` updates, then
    ``decay``: constant, cosine or linear down to ``final_lr`` at the last update."""

    warmup_updates: int = 0
    warmup_init_lr: float = 0.0
    decay: Literal["constant", "cosine", "linear"] = "constant"
    final_lr: float = 0.0


@dataclass
class BatchConfig:
    """Length-bucketed batches: utterances sorted by frames, cut into batches of at most
    ``max_frames`` padded input frames and ``max_utts`` utterances; batch order shuffled each
    epoch (seeded). ``accum`` micro-batches make one update (gradient accumulation)."""

    max_frames: int = 20000
    max_utts: int = 64
    accum: int = 1
    valid_max_frames: int = 40000

    def validate(self) -> None:
        if self.max_frames < 1 or self.max_utts < 1 or self.accum < 1 or self.valid_max_frames < 1:
            raise W2vtkError("batch: max_frames, max_utts, accum and valid_max_frames must be >= 1")


@dataclass
class TrainAMConfig:
    """Everything ``w2vtk train-am`` needs besides the data and lang directories."""

    model: AMConfig = field(default_factory=AMConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    RENAMED: ClassVar[dict[str, str]] = {"max_updates": "optim.max_update"}  # old name -> new (w2vtk 0.2)

    max_epochs: int = 100
    valid_every: int = 1  # validate on the dev set every N epochs and after the last (--validate-interval)
    normalisation: Literal["utterance", "utterance-mean", "global", "none"] = "utterance"
    amp: Literal["none", "bf16", "fp16"] = "bf16"  # mixed precision, CUDA only (ignored on CPU)
    seed: int = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    save_interval_updates: int = 0  # 0: checkpoint_last.pt at epoch ends only
    average_last: int = 5  # checkpoint_avg.pt = mean of the last N epoch-end weights (0: none)
    keep_epoch_checkpoints: int = 0  # extra checkpoint_epochN.pt files kept (0: none)
    best_metric: Literal["error", "loss"] = "error"
    # epochs that take the batches shortest first before shuffling (SortaGrad; -1: all, 0: none)
    sortagrad: int = 0
    # ASG only (model.criterion: asg): wav2letter's loss scaling, -log p(target) per utterance divided by
    # its output frames (input), their square root (input-sqrt), its target length (target) or its
    # square root (target-sqrt: wav2letter's --onorm target --sqnorm); none keeps CTC's per-token scale
    asg_scaling: Literal["none", "input", "input-sqrt", "target", "target-sqrt"] = "none"
    asg_surround: bool = False  # ASG: '|' before and after every target (wav2letter's --surround=|)
    # ASG: the first N epochs train on the linear segmentation (w2vtk.am.asg.linseg_loss), wav2letter's
    # --linseg warm start (wav2letter++ counts --linseg in updates, the wav2vec paper's recipe used 1)
    asg_linseg: int = 0
    paper: dict[str, Any] = field(default_factory=dict)
    note: Optional[str] = None

    def validate(self) -> None:
        if self.max_epochs < 1:
            raise W2vtkError(f"max_epochs: must be >= 1, got {self.max_epochs}")
        if self.valid_every < 1:
            raise W2vtkError(f"valid_every: must be >= 1, got {self.valid_every}")
        if self.asg_scaling not in ("none", "input", "input-sqrt", "target", "target-sqrt"):
            raise W2vtkError(f"asg_scaling: none, input, input-sqrt, target or target-sqrt, got {self.asg_scaling!r}")
        if self.asg_linseg < 0:
            raise W2vtkError(f"asg_linseg: must be >= 0 epochs, got {self.asg_linseg}")
        if self.asg_linseg and self.model.criterion != "asg":
            raise W2vtkError("asg_linseg: the linear-segmentation warm start is ASG's (model.criterion: asg)")
        if self.sortagrad < -1:
            raise W2vtkError(f"sortagrad: must be -1 (every epoch), 0 (off) or a number of epochs, got {self.sortagrad}")
        if self.save_interval_updates < 0 or self.average_last < 0:
            raise W2vtkError("save_interval_updates and average_last must be >= 0")
